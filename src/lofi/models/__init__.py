"""Models: video encoders (snippets -> features), TAL heads (features -> raw outputs), the registry and factory."""

from lofi.models.detector import Detector, count_parameters, create_model
from lofi.models.registry import REGISTRY, ModelEntry, create_encoder, create_head, list_models

__all__ = ["REGISTRY", "Detector", "ModelEntry", "count_parameters", "create_encoder", "create_head",
           "create_model", "list_models"]
