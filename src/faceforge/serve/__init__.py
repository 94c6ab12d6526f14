"""The REST service: `create_app(gallery, pipeline, settings)`, run by `faceforge serve`."""
from faceforge.core.extras import require

# Checked before app.py's FastAPI imports, which run for any import of faceforge.serve.app:
# a missing `serve` extra is then a MissingDependencyError, not an ImportError from deep inside.
require("fastapi", "serve", "the REST service (faceforge serve)")
require("python_multipart", "serve", "the REST service's form uploads")  # FastAPI's check is a RuntimeError

from faceforge.serve.app import ServeSettings, create_app  # noqa: E402

__all__ = ["ServeSettings", "create_app"]
