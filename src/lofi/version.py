"""The lofi version (kept beside pyproject.toml's): what model files and run identities record."""

__version__ = "0.1.0.dev0"
