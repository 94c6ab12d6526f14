"""Recognition models: the embedder registry and the networks behind it."""
from faceforge.models.embedders import Embedder, InputSpec, create_embedder, list_embedders, register_embedder

__all__ = ["Embedder", "InputSpec", "create_embedder", "list_embedders", "register_embedder"]
