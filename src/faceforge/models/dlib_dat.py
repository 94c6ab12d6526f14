"""Reader for dlib's binary model serialisation (`.dat` files), no dlib needed.

dlib writes integers as one control byte (low nibble: byte count, high bit: sign) followed
by little-endian bytes; floats as two integers (mantissa, exponent: m·2^e); strings as a
length then bytes; bools as the characters '0'/'1'; tensors (version 2) as four integer
dimensions then raw little-endian float32. A network is written loss first, then the
version numbers of every nested layer wrapper (outermost first), then the input layer,
then each layer's details from the input upwards, each followed by its wrapper's state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforge.core.errors import ModelLoadError


class _Stream:
    def __init__(self, data: bytes, path: str) -> None:
        self.b, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"not a dlib network file or corrupt at byte {self.pos}: {what}", self.path)

    def int(self) -> int:
        if self.pos >= len(self.b):
            raise self.fail("unexpected end of file")
        ctrl = self.b[self.pos]
        n = ctrl & 0x0F
        if n > 8 or self.pos + 1 + n > len(self.b):
            raise self.fail("bad integer")
        v = int.from_bytes(self.b[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if ctrl & 0x80 else v

    def float(self) -> float:
        m = self.int()
        e = self.int()
        return float(m) * 2.0**e

    def str(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 16 or self.pos + n > len(self.b):
            raise self.fail("bad string length")
        s = self.b[self.pos:self.pos + n]
        self.pos += n
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-text string") from None

    def bools(self, n: int) -> None:
        chunk = self.b[self.pos:self.pos + n]
        if len(chunk) != n or any(c not in b"01" for c in chunk):
            raise self.fail("bad boolean flags")
        self.pos += n

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise self.fail("unsupported tensor version")
        shape = [self.int() for _ in range(4)]
        if any(s < 0 for s in shape):
            raise self.fail("negative tensor dimension")
        n = int(np.prod(shape))
        if self.pos + 4 * n > len(self.b):
            raise self.fail("tensor data truncated")
        arr = np.frombuffer(self.b, dtype="<f4", count=n, offset=self.pos).astype(np.float32)
        self.pos += 4 * n
        return arr.reshape(shape)

    def alias(self) -> tuple[int, ...]:
        if self.int() != 1:
            raise self.fail("unsupported alias_tensor version")
        return tuple(self.int() for _ in range(4))


@dataclass
class DlibLayer:
    kind: str                      # con, affine, relu, max_pool, avg_pool, add_prev, fc
    params: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    loss: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse a dlib DNN `.dat` made of con/affine/relu/pooling/add_prev/fc layers."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read: {exc}", path) from exc
    s = _Stream(data, str(path))
    s.int()  # loss wrapper version
    loss = s.str()
    if not loss.startswith("loss_"):
        raise s.fail(f"expected a loss layer, found {loss!r}")
    if loss == "loss_metric_2":
        s.float(), s.float()  # margin, distance threshold
    else:
        raise s.fail(f"unsupported loss {loss!r}")
    while True:  # wrapper versions until the input layer's (3)
        v = s.int()
        if v == 3:
            break
        if v not in (1, 2):
            raise s.fail(f"unexpected wrapper version {v}")
    inp = s.str()
    if inp != "input_rgb_image_sized":
        raise s.fail(f"unsupported input layer {inp!r}")
    mean = (s.float(), s.float(), s.float())
    size = (s.int(), s.int())
    layers: list[DlibLayer] = []
    while s.pos < len(data):
        name = s.str()
        if name == "con_4":
            prm = s.tensor().ravel()
            nf, nr, nc, sy, sx, py, px = (s.int() for _ in range(7))
            fshape, _ = s.alias(), s.alias()
            for _ in range(4):
                s.float()
            nw = int(np.prod(fshape))
            if prm.size != nw + nf:
                raise s.fail("convolution parameter count mismatch")
            layers.append(DlibLayer("con", {
                "weight": prm[:nw].reshape(fshape), "bias": prm[nw:nw + nf],
                "stride": (sy, sx), "padding": (py, px)}))
        elif name == "affine_":
            prm = s.tensor().ravel()
            g, _ = s.alias(), s.alias()
            s.int()  # mode
            c = int(np.prod(g))
            layers.append(DlibLayer("affine", {"gamma": prm[:c], "beta": prm[c:2 * c]}))
        elif name in ("relu_", "add_prev_"):
            layers.append(DlibLayer(name.rstrip("_")))
        elif name in ("max_pool_2", "avg_pool_2"):
            nr, nc, sy, sx, py, px = (s.int() for _ in range(6))
            layers.append(DlibLayer(name[:-2].rstrip("_"), {
                "kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)}))
        elif name == "fc_2":
            n_out, n_in = s.int(), s.int()
            prm = s.tensor().ravel()
            s.alias(), s.alias()
            s.int()  # bias mode
            for _ in range(4):
                s.float()
            layers.append(DlibLayer("fc", {"weight": prm[:n_in * n_out].reshape(n_in, n_out)}))
        else:
            raise s.fail(f"unsupported layer {name!r}")
        s.bools(3)
        for _ in range(3):
            s.tensor()
        if len(layers) == 1:
            s.int()  # the input wrapper's sample expansion factor
    return DlibNet(loss=loss, input_mean=mean, input_size=size, layers=layers)
