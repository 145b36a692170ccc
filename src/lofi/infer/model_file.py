"""The exported detector: one self-contained ``.lofi`` file that runs on raw videos, and nothing in it runs code.

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: the encoder's tensors under
``encoder.``, the head's under ``head.``, and in the header's metadata one JSON document, :class:`ModelSpec`,
under the key ``"lofi"``: the model names and options, the class names, how a video becomes snippets (frames per
snippet and their stride, frame size, snippets per window, and the snippet rate and stride of sliding windows), the
post-processing settings, the lofi version that wrote it, and where it came from. Reading it never unpickles:
a pickle (``torch.save``) file is refused before anything is parsed, naming the file.

``format_version`` counts changes of the layout. A file of a newer format is refused with the version that wrote
it; a file of this format or an older one that this version still reads is read.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from lofi.version import __version__
from lofi.errors import UserError

#: Identifies a lofi model file (the ``format`` field of its spec).
FORMAT = "lofi.model"
#: The layout this version writes and the newest one it reads.
FORMAT_VERSION = 1
#: The layouts this version reads.
READABLE_VERSIONS = (1,)
SUFFIX = ".lofi"
_METADATA_KEY = "lofi"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class ModelFileError(UserError, ValueError):
    """A model file that cannot be read: not a model file, a pickle, damaged, or of an unknown format version."""


@dataclass(frozen=True)
class WindowSpec:
    """Sliding windows, as the model was trained on them (``data.windows``)."""

    snippets_per_sec: float
    stride_snippets: int
    merge: str = "center"


@dataclass(frozen=True)
class ModelSpec:
    """Everything but the weights: what a detector needs to turn a video into detections."""

    classes: list[str]
    encoder: str
    encoder_options: dict[str, Any]
    head: str
    head_options: dict[str, Any]
    feature_dim: int  # D: channels of the encoder's features, the head's input
    num_snippets: int  # L: snippets per window (a whole video rescaled, or one sliding window)
    frame_size_px: int  # S: square frames of S x S, the short side resized to S then centre-cropped
    frames_per_snippet: int  # F
    frame_stride: int  # source frames between a snippet's frames
    postprocess: dict[str, Any]  # lofi.postprocess.PostprocessConfig fields
    video_top_k: int = 2  # classes per video for class-agnostic proposals
    windows: WindowSpec | None = None  # None: each video rescaled to num_snippets snippets
    normalization: dict[str, list[float]] = field(default_factory=lambda: {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})  # of RGB in [0, 1]
    source: dict[str, Any] = field(default_factory=dict)  # where it came from: run, stage, weights digests
    lofi_version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | os.PathLike) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"{path}: unknown fields {unknown} in the model spec (written by lofi "
                                 f"{data.get('lofi_version', '?')}); upgrade lofi to read it")
        values = dict(data)
        if values.get("windows") is not None:
            values["windows"] = WindowSpec(**values["windows"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelFileError(f"{path}: the model spec is incomplete: {exc}") from None


def write_model_file(path: str | os.PathLike, spec: ModelSpec, *, encoder_state: Mapping[str, torch.Tensor],
                     head_state: Mapping[str, torch.Tensor]) -> Path:
    """Write ``spec`` and the two state dicts to ``path`` (atomically: a temporary file, then a rename)."""
    from safetensors.torch import save_file

    out = Path(path)
    tensors = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in encoder_state.items()}
    tensors.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in head_state.items()})
    tensors = {k: v.clone() if _shares_storage(v, tensors) else v for k, v in tensors.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata={_METADATA_KEY: spec.to_json()})
    os.replace(tmp, out)
    return out


def _shares_storage(tensor: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> bool:
    """safetensors refuses tensors that share memory (tied weights); those are written as copies."""
    ptr = tensor.untyped_storage().data_ptr()
    return sum(1 for t in tensors.values() if t.untyped_storage().data_ptr() == ptr) > 1


def read_model_file(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(spec, encoder_state, head_state)`` of the model file at ``path``; :class:`ModelFileError` for a file that
    is not one (a pickle is refused unread), is damaged, or is of a format this version does not read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path)
    metadata = _read_metadata(file)
    spec = _spec_of(metadata, file)
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{file}: damaged model file: {exc}") from None
    encoder = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    head = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    if not encoder or not head:
        raise ModelFileError(f"{file}: the model file holds no {'encoder' if not encoder else 'head'} weights")
    return spec, encoder, head


def read_model_spec(path: str | os.PathLike) -> ModelSpec:
    """The spec alone (the header; no tensor is read)."""
    file = Path(path)
    return _spec_of(_read_metadata(file), file)


def _read_metadata(file: Path) -> dict[str, str]:
    try:
        with open(file, "rb") as handle:
            head = handle.read(9)
            size = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0
            file_size = os.fstat(handle.fileno()).st_size
            if not (2 <= size <= min(_MAX_HEADER_BYTES, file_size - 8) and head[8:9] == b"{"):
                _refuse_code(file, head)
                raise ModelFileError(f"{file}: not a lofi model file (no safetensors header); export a run with "
                                     f"`lofi export RUN_DIR -o model.lofi`")
            handle.seek(8)
            header = handle.read(size)
    except FileNotFoundError:
        raise ModelFileError(f"{file}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{file}: is a folder, not a model file (export a run with `lofi export RUN_DIR -o "
                             f"model.lofi`)") from None
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{file}: not a lofi model file (its header is not safetensors JSON)") from None
    metadata = parsed.get("__metadata__") if isinstance(parsed, dict) else None
    if not isinstance(metadata, dict) or _METADATA_KEY not in metadata:
        raise ModelFileError(f"{file}: a safetensors file without a lofi model spec; export a run with `lofi export "
                             f"RUN_DIR -o model.lofi`")
    return metadata


def _refuse_code(file: Path, head: bytes) -> None:
    """A pickle (protocol 2 and later start ``0x80 <protocol>``) or a ``torch.save`` zip can run code when
    loaded: refuse it by name, reading nothing more. Called only when the file has no safetensors header."""
    pickled = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if head.startswith(b"PK\x03\x04") or pickled:
        raise ModelFileError(f"{file}: a pickle (torch.save) file, refused: loading it could run code. A lofi "
                             f"model file holds tensors and JSON only (safetensors); make one with `lofi export "
                             f"RUN_DIR -o model.lofi`")


def _spec_of(metadata: Mapping[str, str], file: Path) -> ModelSpec:
    try:
        data = json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError:
        raise ModelFileError(f"{file}: the model spec is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ModelFileError(f"{file}: not a lofi model file (format {found!r}, expected {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{file}: the model spec has no format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{file}: written by lofi {data.get('lofi_version', '?')} in model format {version}; "
                             f"this lofi ({__version__}) reads formats up to {FORMAT_VERSION}: upgrade lofi")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(f"{file}: model format {version} (lofi {data.get('lofi_version', '?')}) is no longer "
                             f"read by lofi {__version__} (it reads {list(READABLE_VERSIONS)}); export the run again")
    return ModelSpec.from_dict(data, path=file)


__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "ModelSpec", "SUFFIX", "WindowSpec", "read_model_file",
           "read_model_spec", "write_model_file"]
