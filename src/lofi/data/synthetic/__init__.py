"""A procedural untrimmed-video dataset for temporal action localization (rules in ``docs/synthetic.md``)."""

from lofi.data.synthetic.config import SyntheticConfig
from lofi.data.synthetic.generate import SyntheticDataset, generate_dataset, plan_dataset
from lofi.data.synthetic.motions import MOTION_PATTERNS

__all__ = ["MOTION_PATTERNS", "SyntheticConfig", "SyntheticDataset", "generate_dataset", "plan_dataset"]
