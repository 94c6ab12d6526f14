import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.vision.align import (ARCFACE_TEMPLATE_112, arcface_template, dlib_chip, landmarks_68_to_5,
                                    landmarks_plausible, norm_crop, umeyama_similarity)


def test_arcface_template_coordinates_are_exact():
    # insightface's arcface_dst; a wrong template silently costs IJB-C accuracy.
    expected = [(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                (41.5493, 92.3655), (70.7299, 92.2041)]
    assert np.allclose(ARCFACE_TEMPLATE_112, expected, atol=0)
    assert np.allclose(arcface_template(224), np.array(expected) * 2)
    t128 = arcface_template(128)
    assert np.allclose(t128[:, 0], np.array(expected)[:, 0] + 8.0)
    assert np.allclose(t128[:, 1], np.array(expected)[:, 1])
    t256 = arcface_template(256)
    assert np.allclose(t256, np.array(expected) * 2 + [16.0, 0.0])
    with pytest.raises(FaceForgeError):
        arcface_template(100)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = 0.4, 1.7, np.array([12.0, -5.0])
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ r.T + t
    m = umeyama_similarity(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


def test_umeyama_never_reflects_and_rejects_degenerate_points():
    src = np.array([[0, 0], [1, 0], [0, 1.0]])
    m = umeyama_similarity(src, src * [-1, 1])  # a mirror image: best proper similarity
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(FaceForgeError):
        umeyama_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE_112)


def test_norm_crop_puts_landmarks_on_the_template():
    # Each pixel encodes its own coordinates, so the crop shows where it sampled from.
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([xx, yy, np.zeros_like(xx)], axis=2).astype(np.uint8)
    lm = ARCFACE_TEMPLATE_112 * 1.6 + [50.0, 40.0]
    crop = norm_crop(img, lm, 112)
    assert crop.shape == (112, 112, 3)
    for (tx, ty), (x, y) in zip(ARCFACE_TEMPLATE_112.round().astype(int), lm):
        sampled = crop[ty, tx, :2].astype(float)
        expected = np.array([x, y]) + 1.6 * (np.array([tx, ty]) - ARCFACE_TEMPLATE_112[
            np.argmin(np.abs(ARCFACE_TEMPLATE_112 - [tx, ty]).sum(1))])
        assert np.abs(sampled - expected).max() < 1.5


def test_dlib_chip_shape_and_native_points():
    img = np.random.default_rng(1).integers(0, 255, (250, 250, 3), dtype=np.uint8)
    lm = np.array([[100, 110], [150, 110], [125, 135], [105, 160], [145, 160]], np.float32)
    assert dlib_chip(img, lm).shape == (150, 150, 3)
    native = np.array([[160, 110], [140, 111], [90, 110], [110, 111], [125, 140]], np.float32)
    assert dlib_chip(img, lm, native_landmarks=native).shape == (150, 150, 3)


def test_plausibility_check():
    good = ARCFACE_TEMPLATE_112.copy()
    assert landmarks_plausible(good)
    swapped = good[[1, 0, 2, 3, 4]]
    assert not landmarks_plausible(swapped)
    upside = good.copy()
    upside[:, 1] *= -1
    assert not landmarks_plausible(upside)
    nan = good.copy()
    nan[0, 0] = np.nan
    assert not landmarks_plausible(nan)
    turned = good.copy()
    turned[2, 0] = good[0, 0] - 3  # nose tip beyond the left eye: a face turned ~40°
    assert landmarks_plausible(turned) and not landmarks_plausible(turned, frontal=True)
    assert landmarks_plausible(good, frontal=True)


def test_68_to_5():
    pts = np.zeros((68, 2), np.float32)
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[30] = [20, 30]
    pts[48], pts[54] = [12, 40], [28, 40]
    assert np.allclose(landmarks_68_to_5(pts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    with pytest.raises(FaceForgeError):
        landmarks_68_to_5(np.zeros((5, 2)))


def test_align_face_dispatches_on_the_template_name():
    from faceforge.vision.align import align_face
    img = np.random.default_rng(2).integers(0, 255, (250, 250, 3), dtype=np.uint8)
    lm = np.array([[100, 110], [150, 110], [125, 135], [105, 160], [145, 160]], np.float32)
    assert np.array_equal(align_face(img, lm, "arcface", 112), norm_crop(img, lm, 112))
    assert np.array_equal(align_face(img, lm, "dlib-chip", 150), dlib_chip(img, lm, 150))
    with pytest.raises(FaceForgeError, match="unknown alignment template"):
        align_face(img, lm, "arcfce", 112)
