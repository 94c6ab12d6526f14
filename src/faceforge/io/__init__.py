"""Reading inputs: images, folders of identities, embeddings files."""
from faceforge.io.images import IMAGE_EXTENSIONS, list_images, load_image

__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_image"]
