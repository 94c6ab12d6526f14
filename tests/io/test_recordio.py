import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.io.datasets import ImageFolderDataset, RecordIODataset
from faceforge.io.images import load_image
from faceforge.io.recordio import MAGIC, RecordReader, pack, write_recordio

from ..conftest import LFW, need


@pytest.fixture(scope="module")
def lfw_items():
    people = sorted(p for p in need(LFW / "images").iterdir() if p.is_dir())
    files = [f for p in people for f in sorted(p.iterdir())][:1000]
    names = sorted({f.parent.name for f in files})
    index = {n: i for i, n in enumerate(names)}
    return [(f.read_bytes(), index[f.parent.name]) for f in files], files, len(names)


def test_round_trip_1000_lfw_images_byte_exact(tmp_path, lfw_items):
    items, files, n_classes = lfw_items
    rec = tmp_path / "train.rec"
    assert write_recordio(rec, items) == 1000
    with RecordReader(rec) as r:
        head = r.read(0)
        assert list(head.label) == [1001, 1001 + n_classes]
        for key in (1, 500, 1000):
            got = r.read(key)
            assert got.payload == items[key - 1][0] and int(got.label) == items[key - 1][1]
        # identity records give each class's [start, end) of image keys
        first = r.read(1001)
        assert list(first.label) == [1, 1 + sum(c == 0 for _, c in items)]
    ds = RecordIODataset(rec)
    assert len(ds) == 1000 and ds.num_classes == n_classes
    for i in range(1000):
        img, label = ds[i]
        assert label == items[i][1]
    assert np.array_equal(ds[999][0], load_image(files[999]))


def test_multipart_record_is_reassembled(tmp_path):
    payload = pack(3.0, b"x" * 10)
    a, b = payload[:7], payload[7:]
    rec, idx = tmp_path / "m.rec", tmp_path / "m.idx"
    with open(rec, "wb") as fh:
        for cflag, part in ((1, a), (3, b)):
            fh.write(np.array([MAGIC, (cflag << 29) | len(part)], "<u4").tobytes())
            fh.write(part + b"\0" * ((4 - len(part) % 4) % 4))
    idx.write_text("0\t0\n")
    with RecordReader(rec) as r:
        got = r.read(0)
    assert got.label == 3.0 and got.payload == b"x" * 10


def test_errors_are_clear(tmp_path, lfw_items):
    items = lfw_items[0][:20]
    rec = tmp_path / "t.rec"
    write_recordio(rec, items)
    (tmp_path / "t.idx").rename(tmp_path / "moved.idx")
    with pytest.raises(FaceForgeError, match="index file missing"):
        RecordReader(rec)
    (tmp_path / "moved.idx").rename(tmp_path / "t.idx")
    # corrupt: overwrite the 5th record's magic
    off = int((tmp_path / "t.idx").read_text().splitlines()[5].split("\t")[1])
    intact = rec.read_bytes()
    data = bytearray(intact)
    data[off:off + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    with RecordReader(rec) as r:
        with pytest.raises(FaceForgeError, match="record 5: bad magic"):
            r.read(5)
    # truncated file
    rec.write_bytes(intact[: off + 100])
    with RecordReader(rec) as r:
        with pytest.raises(FaceForgeError, match="truncated"):
            r.read(5)
        with pytest.raises(FaceForgeError, match="not in the index"):
            r.read(12345)
    # labels out of range: refused when writing, caught when reading
    with pytest.raises(FaceForgeError, match="out of range"):
        write_recordio(tmp_path / "bad.rec", [(items[0][0], 5)], num_classes=3)
    write_recordio(tmp_path / "ok.rec", [(items[0][0], 2)], num_classes=3)
    with pytest.raises(FaceForgeError, match="label 2 out of range for 2"):
        RecordIODataset(tmp_path / "ok.rec", num_classes=2)[0]
    # an undecodable image names the record
    write_recordio(tmp_path / "junk.rec", [(b"not an image", 0)])
    with pytest.raises(FaceForgeError, match="junk.rec record 1"):
        RecordIODataset(tmp_path / "junk.rec")[0]


def test_image_folder_dataset(tmp_path, face_jpg):
    for who in ("bob", "alice"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "1.jpg").write_bytes(face_jpg.read_bytes())
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["alice", "bob"] and list(ds.targets) == [0, 1]
    img, label = ds[1]
    assert img.shape == (250, 250, 3) and label == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceForgeError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
