"""Galleries: enrolled faces in Milvus (a Milvus Lite folder by default, a server or cluster by
URI) or FAISS in process, one interface (`open_gallery`), and the top-K majority decision."""
from faceforge.search.decision import (UNKNOWN, Decision, decide, gallery_threshold, identify, per_comparison_fpr,
                                       threshold_from_eval)
from faceforge.search.gallery import Gallery, GalleryError, Hit, Records, list_backends, open_gallery

__all__ = ["UNKNOWN", "Decision", "Gallery", "GalleryError", "Hit", "Records", "decide", "gallery_threshold",
           "identify", "list_backends", "open_gallery", "per_comparison_fpr", "threshold_from_eval"]
