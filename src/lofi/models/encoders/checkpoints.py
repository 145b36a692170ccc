"""Load pretrained weights into lofi encoders from the layouts they are published in.

- torchvision ImageNet ResNet (``conv1.weight``, ``layer1.0.conv1.weight``, ..., ``fc.*``) -> :class:`TSMResNet`
- the official TSM release (mit-han-lab/temporal-shift-module: ``{'state_dict': ..., 'epoch': ...}`` with keys
  ``module.base_model.layer1.0.conv1.net.weight``, classifier ``module.new_fc.*``) -> :class:`TSMResNet`
- torchvision's ``r2plus1d_18`` Kinetics weights (``stem.0.weight``, ..., ``fc.*``) -> :class:`R2Plus1D`

Each loader takes a state dict or a file path (read with ``torch.load(..., weights_only=True)``, so that no code
in a checkpoint runs; a missing path, a folder, a file that is not a weights file or one that holds Python objects
is an error naming the file), prints nothing and returns a :class:`LoadReport`. The classifier is ignored on
purpose; other unknown keys are ``unexpected``; model tensors the checkpoint lacks are ``missing`` (BatchNorm
``num_batches_tracked`` counters, absent from old checkpoints, are left as they are and not reported). Any shape
mismatch raises ``ValueError`` naming every mismatched tensor (and the file); ``strict=True`` also raises on
missing or unexpected keys. Nothing is loaded when it raises.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn

StateSource = Union[str, os.PathLike, Mapping[str, Any]]


@dataclass(frozen=True)
class LoadReport:
    """What a loader did: model keys ``loaded`` and ``missing``; checkpoint keys ``unexpected`` (not understood)
    and ``ignored`` (understood and dropped on purpose, e.g. the classifier)."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    ignored: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every model tensor was loaded and every checkpoint key understood."""
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors, ignored {len(self.ignored)} checkpoint keys"]
        if self.ignored:
            lines.append(f"ignored: {', '.join(self.ignored)}")
        if self.missing:
            lines.append(f"missing from the checkpoint ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected in the checkpoint ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        return "\n".join(lines)


def load_torchvision_resnet(encoder: nn.Module, state_dict: StateSource, *, strict: bool = False) -> LoadReport:
    """Load a torchvision ``resnet18/34/50`` state dict (e.g. ImageNet weights) into a :class:`TSMResNet` of the
    same depth; ``fc.*`` is ignored. A ``module.`` prefix (DataParallel) is stripped."""
    return _load(encoder, _unwrap(state_dict), _torchvision_key, strict=strict, where=_where(state_dict))


def load_torchvision_r2plus1d(encoder: nn.Module, state_dict: StateSource, *, strict: bool = False) -> LoadReport:
    """Load a ``torchvision.models.video.r2plus1d_18`` state dict (e.g. Kinetics-400 weights) into an
    :class:`R2Plus1D`; ``fc.*`` is ignored."""
    return _load(encoder, _unwrap(state_dict), _torchvision_key, strict=strict, where=_where(state_dict))


def load_tsm_checkpoint(encoder: nn.Module, path_or_state_dict: StateSource, *, strict: bool = False) -> LoadReport:
    """Load a checkpoint of the official TSM release into a :class:`TSMResNet` of the same depth.

    Accepts the saved file (``{'state_dict': ..., 'epoch': ..., 'best_prec1': ...}``) or its state dict.
    ``module.`` and ``base_model.`` prefixes are stripped, the shift wrapper's ``.net.`` is dropped
    (``layer1.0.conv1.net.weight`` -> ``layer1.0.conv1.weight``), and the classifier (``new_fc.*``, or
    ``base_model.fc.*`` when trained without dropout) is ignored. The release's default "blockres" placement,
    one shift per block in front of ``conv1``, is the placement of :class:`TSMResNet`.
    """
    return _load(encoder, _unwrap(path_or_state_dict), _tsm_key, strict=strict,
                 where=_where(path_or_state_dict))


def load_encoder_weights(encoder: nn.Module, source: StateSource, *, strict: bool = False) -> LoadReport:
    """Load weights in whichever published layout ``source`` has: the official TSM release (keys under
    ``base_model.``, possibly ``module.``-prefixed), else torchvision's (which is also lofi's own encoder layout:
    ``encoder.state_dict()`` round-trips). A state dict saved from a whole lofi :class:`~lofi.models.Detector`
    (keys ``encoder.*``) gives its encoder part."""
    state = _unwrap(source)
    keys = [_strip(k, "module.") for k in state]
    if any(k.startswith("base_model.") for k in keys):
        return _load(encoder, state, _tsm_key, strict=strict, where=_where(source))
    if any(k.startswith("encoder.") for k in keys):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return _load(encoder, state, _torchvision_key, strict=strict, where=_where(source))


# -- key mapping: checkpoint key -> model key, "" (ignored on purpose) or None (not understood) ------------------
def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _torchvision_key(key: str) -> str | None:
    key = _strip(key, "module.")
    return "" if key.startswith("fc.") else key


def _tsm_key(key: str) -> str | None:
    key = _strip(key, "module.")
    if key.startswith("new_fc."):
        return ""
    if not key.startswith("base_model."):
        return None
    key = key[len("base_model."):]
    if key.startswith("fc."):
        return ""
    return key.replace(".net.", ".")


# -- the shared loader ------------------------------------------------------------------------------------------
_SAVE_HINT = "save the encoder's state dict with torch.save(encoder.state_dict(), path)"


def read_weights_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; every failure is an error naming ``path`` and what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: weights file not found; check the path")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a weights file; give the .pt file in it "
                                f"(a lofi stage writes encoder.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(f"{path}: holds Python objects besides tensors (it needs {found.group(1)}), which lofi "
                             f"does not load, so that no code in a checkpoint runs; {_SAVE_HINT}, from a copy you "
                             f"trust") from None
        why = str(exc).partition("WeightsUnpickler error:")[2].strip() or str(exc)
        raise ValueError(f"{path}: not a weights file torch can read (UnpicklingError: {_first_sentence(why)}); "
                         f"{_SAVE_HINT}") from None
    except (EOFError, KeyError, RuntimeError, ValueError) as exc:
        why = f"{type(exc).__name__}: {_first_sentence(str(exc)) or 'ends too soon'}"
        raise ValueError(f"{path}: not a weights file torch can read ({why}); {_SAVE_HINT}") from None


def _first_sentence(text: str) -> str:
    """The first line of ``text``, cut after its first full sentence (torch appends paragraphs of advice)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    end = re.search(r"\w\. ", line)
    return line[:end.start() + 1] if end else line


def _where(source: StateSource) -> str:
    """``"PATH: "`` for a file source (errors then name the file), else ``""``."""
    return f"{source}: " if isinstance(source, (str, os.PathLike)) else ""


def _unwrap(source: StateSource) -> Mapping[str, Any]:
    where = _where(source)
    if isinstance(source, (str, os.PathLike)):
        source = read_weights_file(source)
    if not isinstance(source, Mapping):
        raise ValueError(f"{where}expected a state dict (a mapping of names to tensors), got {type(source).__name__};"
                         f" {_SAVE_HINT}")
    if "state_dict" in source and isinstance(source["state_dict"], Mapping):
        source = source["state_dict"]
    return source


def _load(encoder: nn.Module, source: Mapping[str, Any], map_key: Callable[[str], str | None], *,
          strict: bool, where: str = "") -> LoadReport:
    target = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for key, value in source.items():
        name = map_key(key)
        if name == "":
            ignored.append(key)
        elif name is None or name not in target or not isinstance(value, torch.Tensor):
            unexpected.append(key)
        elif name in mapped:
            raise ValueError(f"{where}checkpoint keys {origin[name]!r} and {key!r} both map to model tensor {name!r}")
        else:
            mapped[name] = value
            origin[name] = key
    mismatched = [f"{name} (checkpoint {origin[name]}): checkpoint {tuple(value.shape)} vs model "
                  f"{tuple(target[name].shape)}" for name, value in mapped.items() if value.shape != target[name].shape]
    if mismatched:
        raise ValueError(f"{where}{type(encoder).__name__}: {len(mismatched)} tensor shape mismatch(es), nothing loaded "
                         f"(wrong architecture or depth?):\n  " + "\n  ".join(mismatched))
    missing = [name for name in target if name not in mapped and not name.endswith("num_batches_tracked")]
    report = LoadReport(loaded=tuple(mapped), missing=tuple(missing), unexpected=tuple(unexpected),
                        ignored=tuple(ignored))
    if strict and not report.complete:
        raise ValueError(f"{where}{type(encoder).__name__}: strict load failed, nothing loaded (weights of another "
                         f"encoder? check model.encoder):\n{report}")
    encoder.load_state_dict(mapped, strict=False)
    return report
