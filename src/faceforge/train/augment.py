"""Augmentations on RGB uint8 arrays (numpy/OpenCV, no torchvision), including the
degradations that make recognisers robust: blur, motion blur, JPEG, noise, grayscale,
small rotations, flips, gamma/contrast, saturation, crops.

Each transform takes (image, rng); the Trainer builds rng from (seed, epoch, index), so a
sample's augmentation does not depend on worker scheduling and a resumed run repeats it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def hflip(img, rng):
    return np.ascontiguousarray(img[:, ::-1])


def gamma(lo: float = 0.75, hi: float = 1.25) -> Transform:
    def f(img, rng):
        g = rng.uniform(lo, hi)
        lut = (255.0 * (np.arange(256) / 255.0) ** g).round().astype(np.uint8)
        return lut[img]
    return f


def contrast(lo: float = 0.7, hi: float = 1.3) -> Transform:
    def f(img, rng):
        a = rng.uniform(lo, hi)
        m = img.mean()
        return np.clip((img.astype(np.float32) - m) * a + m, 0, 255).astype(np.uint8)
    return f


def saturation(delta: int = 20) -> Transform:
    def f(img, rng):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 1] = np.clip(hsv[..., 1] + rng.integers(-delta, delta + 1), 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return f


def crop(lo: float = 0.03, hi: float = 0.065) -> Transform:
    """Cut a random 3-6.5 % margin and resize back."""
    def f(img, rng):
        h, w = img.shape[:2]
        fr = rng.uniform(lo, hi)
        dy, dx = int(round(h * fr)), int(round(w * fr))
        y0, x0 = rng.integers(0, dy + 1), rng.integers(0, dx + 1)
        return cv2.resize(img[y0:h - dy + y0, x0:w - dx + x0], (w, h), interpolation=cv2.INTER_LINEAR)
    return f


def gaussian_blur(sigma_lo: float = 3.0, sigma_hi: float = 5.0) -> Transform:
    def f(img, rng):
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(sigma_lo, sigma_hi))
    return f


def motion_blur(max_len: int = 9) -> Transform:
    def f(img, rng):
        n = int(rng.integers(3, max_len + 1))
        k = np.zeros((n, n), np.float32)
        k[n // 2] = 1.0 / n
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (n, n))
        return cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    return f


def jpeg(q_lo: int = 20, q_hi: int = 70) -> Transform:
    def f(img, rng):
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(q_lo, q_hi + 1))])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return f


def gaussian_noise(std_lo: float = 3.0, std_hi: float = 12.0) -> Transform:
    def f(img, rng):
        noise = rng.normal(0, rng.uniform(std_lo, std_hi), img.shape)
        return np.clip(img + noise, 0, 255).astype(np.uint8)
    return f


def grayscale(img, rng):
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.repeat(g[:, :, None], 3, axis=2)


def rotate(max_deg: float = 10.0) -> Transform:
    def f(img, rng):
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_deg, max_deg), 1.0)
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return f


def pad_crop(pad: int = 10) -> Transform:
    """Pad every side by `pad` pixels (reflected) and cut a random window of the original size:
    a shift of up to ±pad that keeps the whole frame filled."""
    def f(img, rng):
        h, w = img.shape[:2]
        big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        y, x = int(rng.integers(0, 2 * pad + 1)), int(rng.integers(0, 2 * pad + 1))
        return np.ascontiguousarray(big[y:y + h, x:x + w])
    return f


def random_erasing(area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 3.3)) -> Transform:
    """Replace one random rectangle (2-40 % of the image, aspect 0.3-3.3) by random pixels
    (Zhong et al., 2020): the network cannot rely on any one part of a person being visible."""
    def f(img, rng):
        h, w = img.shape[:2]
        for _ in range(10):  # a rectangle that fits; give up after ten draws
            a = rng.uniform(*area) * h * w
            r = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
            eh, ew = int(round(np.sqrt(a * r))), int(round(np.sqrt(a / r)))
            if 0 < eh < h and 0 < ew < w:
                y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                out = img.copy()
                out[y:y + eh, x:x + ew] = rng.integers(0, 256, (eh, ew, img.shape[2]), dtype=np.uint8)
                return out
        return img
    return f


@dataclass
class RandomApply:
    transform: Transform
    p: float

    def __call__(self, img, rng):
        return self.transform(img, rng) if rng.random() < self.p else img


@dataclass
class Compose:
    transforms: Sequence[Transform]

    def __call__(self, img, rng):
        for t in self.transforms:
            img = t(img, rng)
        return img


def balance_augment() -> Compose:
    """The class-balancing reference's augmentation of upsampled copies."""
    return Compose([RandomApply(hflip, 0.5), gamma(0.75, 1.25), saturation(20), crop(0.03, 0.065)])


def reid_train_augment(pad: int = 10, erase: float = 0.5, colour: float = 0.5) -> Compose:
    """The strong re-id baselines' augmentation of body crops: flip, padding + random crop,
    colour changes, random erasing (last, so that the erased block is not blurred or shifted)."""
    return Compose([RandomApply(hflip, 0.5), pad_crop(pad), RandomApply(gamma(), colour),
                    RandomApply(contrast(), colour), RandomApply(saturation(), colour),
                    RandomApply(random_erasing(), erase)])


def face_train_augment(strength: str = "light") -> Compose:
    """'light': flip only (arcface_torch's default); 'degrade': the robustness set."""
    if strength == "light":
        return Compose([RandomApply(hflip, 0.5)])
    if strength == "degrade":
        return Compose([RandomApply(hflip, 0.5), RandomApply(rotate(10), 0.2), RandomApply(gamma(), 0.3),
                        RandomApply(contrast(), 0.3), RandomApply(saturation(), 0.2), RandomApply(grayscale, 0.1),
                        RandomApply(gaussian_blur(1.0, 3.0), 0.1), RandomApply(motion_blur(), 0.1),
                        RandomApply(gaussian_noise(), 0.1), RandomApply(jpeg(), 0.2)])
    raise ValueError(f"unknown augmentation strength {strength!r}")
