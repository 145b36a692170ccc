"""lofi: temporal action localization in untrimmed videos, with LoFi low-fidelity end-to-end encoder training."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
