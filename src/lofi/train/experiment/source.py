"""The synthetic source dataset of the ACP encoder (``experiment.acp: {synthetic: true}``): the target's generator
settings (its ``synthetic.json``) with the next motion patterns as classes (``class_offset`` = the target's
``num_classes``) and another seed, generated once into the experiment folder and reused while its
``synthetic.json`` records the same settings and generator version (as ``lofi demo`` does)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.data.synthetic.generate import GENERATOR_VERSION, METADATA_FILE, generated_with
from lofi.errors import UserError


def source_settings(target_annotations: str | Path, *, seed: int | None) -> SyntheticConfig:
    """The source dataset's settings: the target's (``synthetic.json`` beside its annotations) with
    ``class_offset`` = its ``num_classes`` and generator seed ``seed`` (None: the target's + 1)."""
    metadata = Path(target_annotations).parent / METADATA_FILE
    made_with = generated_with(metadata.parent)
    if made_with is None:
        raise UserError(f"{metadata}: not found or unreadable, so the target is not a lofi synthetic dataset: "
                        f"experiment.acp.synthetic needs one; give a source dataset instead (experiment.acp: "
                        f"{{annotations: ..., videos: ...}})")
    target = SyntheticConfig.from_dict(made_with[1])
    try:
        return dataclasses.replace(target, class_offset=target.class_offset + target.num_classes,
                                   seed=target.seed + 1 if seed is None else seed)
    except ValueError as exc:
        raise UserError(f"{metadata}: experiment.acp.synthetic: the source's classes must be other motion patterns "
                        f"than the target's {target.num_classes}, and there are too few: {exc}") from None


def source_ready(folder: Path, settings: SyntheticConfig) -> bool:
    """Whether ``folder`` holds the finished source dataset of ``settings``; a dataset of other settings there is
    refused (:class:`~lofi.errors.UserError`), never mixed."""
    if not (folder / METADATA_FILE).is_file():
        return False  # synthetic.json is written last: without it nothing there is finished
    if generated_with(folder) != (GENERATOR_VERSION, settings.to_dict()):
        raise UserError(f"{folder}: holds a synthetic dataset of other settings or another generator version than "
                        f"this experiment's source dataset (see its {METADATA_FILE}); remove the folder, or run the "
                        f"experiment in another folder (-o name=NEW)")
    return True


def make_source_dataset(folder: Path, settings: SyntheticConfig, *, workers: int) -> Path:
    """Generate the source dataset into ``folder`` unless it is there already; its annotation file."""
    if not source_ready(folder, settings):
        generate_dataset(folder, settings, workers=workers, progress=False)
    return folder / "annotations.json"
