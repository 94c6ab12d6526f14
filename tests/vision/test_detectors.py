import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.io import load_image
from faceforge.vision.detectors import DETECTORS as REGISTRY
from faceforge.vision.detectors import create_detector, list_detectors
from faceforge.vision.detectors.mtcnn import nms

# the face detectors (whole-image, for body crops, finds no face: tested on its own below)
DETECTORS = [n for n in list_detectors() if REGISTRY.get(n).has_landmarks]


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request):
    return create_detector(request.param)


def test_registry():
    assert {"yunet", "dlib", "mtcnn"} <= set(DETECTORS)
    assert create_detector("auto").name == "yunet"
    with pytest.raises(FaceForgeError, match="unknown detector"):
        create_detector("nope")


def test_one_face_with_landmarks_in_order(detector, face_jpg):
    faces = detector.detect(load_image(face_jpg))
    assert len(faces) == 1
    f = faces[0]
    le, re, nose, lm, rm = f.landmarks
    assert le[0] < nose[0] < re[0] and lm[0] < rm[0] and le[1] < nose[1] < lm[1]
    # LFW deep-funneled faces sit in the middle of the 250×250 image, eyes ~ 40 px apart
    assert 90 < f.landmarks[:, 0].mean() < 160 and 30 < re[0] - le[0] < 60
    x1, y1, x2, y2 = f.box
    assert x1 < le[0] < x2 and y1 < lm[1] < y2


def test_whole_image_is_one_box_without_landmarks():
    det = create_detector("whole-image")
    (face,) = det.detect(np.zeros((128, 50, 3), np.uint8))
    assert face.box.tolist() == [0, 0, 50, 128] and not det.has_landmarks


def test_detectors_agree_on_eye_positions(face_jpg):
    img = load_image(face_jpg)
    eyes = [create_detector(n).detect(img)[0].landmarks[:2] for n in DETECTORS]
    for e in eyes[1:]:
        assert np.abs(e - eyes[0]).max() < 8.0


def test_two_faces(detector, two_faces_jpg):
    faces = detector.detect(load_image(two_faces_jpg))
    assert len(faces) == 2
    assert faces[0].area >= faces[1].area  # sorted largest first


def test_no_face_and_tiny_image(detector, no_face_rgb):
    assert detector.detect(no_face_rgb) == []
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []


def test_wrong_input_is_a_clear_error(detector):
    with pytest.raises(FaceForgeError, match="H×W×3 uint8"):
        detector.detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(FaceForgeError):
        detector.detect(np.zeros((32, 32, 3), np.float32))


def test_options_largest_and_min_size(two_faces_jpg):
    img = load_image(two_faces_jpg)
    all_faces = create_detector("yunet").detect(img)
    assert len(create_detector("yunet", largest_only=True).detect(img)) == 1
    small = min(min(f.width, f.height) for f in all_faces)
    assert len(create_detector("yunet", min_face_size=small + 1).detect(img)) == 1


def test_mtcnn_batch_equals_single(face_jpg, two_faces_jpg):
    det = create_detector("mtcnn")
    a, b = load_image(face_jpg), load_image(two_faces_jpg)
    batch = det.detect_batch([a, b, a])
    assert [len(x) for x in batch] == [1, 2, 1]
    single = det.detect(a)[0]
    assert np.allclose(batch[2][0].box, single.box, atol=1e-3)


def test_nms_matches_brute_force():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (60, 2))], 1)
    scores = rng.uniform(size=60)
    keep = nms(boxes, scores, 0.4)

    def iou(a, b):
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
        return w * h / (area(a) + area(b) - w * h)

    expect, alive = [], list(np.argsort(-scores))
    while alive:
        i = alive.pop(0)
        expect.append(i)
        alive = [j for j in alive if iou(boxes[i], boxes[j]) <= 0.4]
    assert list(keep) == expect
