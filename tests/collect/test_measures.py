"""Sharpness and head pose on constructed and real cases."""
import cv2
import numpy as np
import pytest

from faceforge.collect.measures import blur_score, head_pose, rotated_model_points
from faceforge.io import load_image
from faceforge.vision.align import align_face
from faceforge.vision.detectors import create_detector


def _aligned(path):
    img = load_image(path)
    face = create_detector("yunet").detect(img)[0]
    return img, face, align_face(img, face.landmarks, "arcface", 112)


def test_blur_score_drops_on_a_blurred_crop(face_jpg):
    _, _, crop = _aligned(face_jpg)
    sharp = blur_score(crop)
    soft = blur_score(cv2.GaussianBlur(crop, (0, 0), 2.0))
    assert sharp > 30 and soft < 0.2 * sharp  # LFW's JPEGs are soft already: 67 here
    flat = np.full((112, 112, 3), 90, np.uint8)
    assert blur_score(flat) == 0.0  # no edge at all: a Laplacian of zeros


@pytest.mark.parametrize("yaw,pitch", [(0, 0), (30, 0), (-30, 0), (45, 10), (-20, -15)])
def test_pose_of_the_model_seen_at_a_known_rotation(yaw, pitch):
    got = head_pose(rotated_model_points(yaw, pitch))
    assert got == pytest.approx((yaw, pitch), abs=1e-4)


def test_pose_of_a_real_face_and_its_mirror(face_jpg):
    img, face, _ = _aligned(face_jpg)
    yaw, pitch = head_pose(face.landmarks)
    assert abs(yaw) < 20 and abs(pitch) < 20  # an LFW portrait, roughly frontal
    w = img.shape[1]
    mirrored = face.landmarks[[1, 0, 2, 4, 3]].copy()  # mirror, then left/right renamed
    mirrored[:, 0] = w - 1 - mirrored[:, 0]
    my, mp = head_pose(mirrored)
    assert my == pytest.approx(-yaw, abs=1e-6) and mp == pytest.approx(pitch, abs=1e-6)
    # a face turned towards the image's right (small_ids/obama1.jpg, by eye: about three-quarter)
    from ..conftest import DATA, need
    obama = load_image(need(DATA / "small_ids" / "test" / "obama1.jpg"))
    turned, _ = head_pose(create_detector("yunet").detect(obama)[0].landmarks)
    assert -50 < turned < -20
