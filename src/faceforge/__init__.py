"""FaceForge: face recognition you can train, evaluate and deploy without a lab's compute."""
from faceforge.api import Representation, VerifyResult, find, represent, verify
from faceforge.core.errors import FaceForgeError, ImageReadError, ModelLoadError, NoFaceError
from faceforge.io.images import load_image
from faceforge.models.embedders import Embedder, create_embedder, list_embedders
from faceforge.pipeline import FacePipeline, FaceRecord, Skip
from faceforge.vision.detectors import Detector, create_detector, list_detectors
from faceforge.vision.face import Face

__version__ = "0.1.0"

__all__ = [
    "Detector", "Embedder", "Face", "FaceForgeError", "FacePipeline", "FaceRecord", "ImageReadError",
    "ModelLoadError", "NoFaceError", "Skip", "create_detector", "create_embedder", "list_detectors",
    "list_embedders", "load_image", "Representation", "VerifyResult", "find", "represent", "verify",
]
