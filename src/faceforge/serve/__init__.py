"""The REST service: `create_app(gallery, pipeline, settings)`, run by `faceforge serve`."""
from faceforge.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
