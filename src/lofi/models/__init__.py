"""Models: video encoders (snippets -> features), TAL heads (features -> raw outputs), the registry and factory."""

from lofi.models.registry import REGISTRY, ModelEntry, create_encoder, create_head, list_models

__all__ = ["REGISTRY", "ModelEntry", "create_encoder", "create_head", "list_models"]
