"""lofi: temporal action localization in untrimmed videos, with LoFi low-fidelity end-to-end encoder training."""

from typing import Any

from lofi.version import __version__

__all__ = ["Detector", "__version__", "create_model", "load_config"]


def __getattr__(name: str) -> Any:
    # ``lofi.create_model`` without importing torch at ``import lofi`` (the CLI starts faster)
    if name == "create_model":
        from lofi.models import create_model

        return create_model
    if name == "Detector":  # an exported model file run on raw videos (lofi.infer.detector)
        from lofi.infer.detector import Detector

        return Detector
    if name == "load_config":  # every check, the model registry's included (lofi.runtime.configs)
        from lofi.runtime.configs import load_run_config

        return load_run_config
    raise AttributeError(f"module 'lofi' has no attribute {name!r}")
