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


def test_multipart_record_is_reassembled_with_the_magic_between_parts(tmp_path):
    """As MXNet's writer splits a payload at an aligned magic (leaving the 4 bytes out) and
    its reader puts them back: parts built by hand read back as the original payload."""
    magic = np.array([MAGIC], "<u4").tobytes()
    image = b"abcd" + magic + b"efghijkl" + magic + b"xyz"   # the magic at offsets 4 and 16 of the image
    payload = pack(3.0, image)                              # a 24-byte header keeps them aligned
    first = payload.index(magic)
    second = payload.index(magic, first + 4)
    parts = [(1, payload[:first]), (2, payload[first + 4:second]), (3, payload[second + 4:])]
    rec, idx = tmp_path / "m.rec", tmp_path / "m.idx"
    with open(rec, "wb") as fh:
        for cflag, part in parts:
            fh.write(np.array([MAGIC, (cflag << 29) | len(part)], "<u4").tobytes())
            fh.write(part + b"\0" * ((4 - len(part) % 4) % 4))
    idx.write_text("0\t0\n")
    with RecordReader(rec) as r:
        got = r.read(0)
    assert got.label == 3.0 and got.payload == image
    # our writer splits the same way, so the bytes on disk hold no aligned magic inside a part
    write_recordio(tmp_path / "w.rec", [(image, 0)])
    raw = (tmp_path / "w.rec").read_bytes()
    starts = [i for i in range(0, len(raw) - 3, 4) if raw[i:i + 4] == magic]
    with RecordReader(tmp_path / "w.rec") as r:
        assert r.read(1).payload == image
        assert len(starts) == len(r.offsets) + 2  # one per record, plus the two extra parts


def test_forked_workers_do_not_share_the_parents_file_offset(tmp_path, lfw_items):
    """The parent reads (as the trainer does for the input size), then DataLoader workers fork:
    each must read its own records correctly."""
    import torch
    items, _, _ = lfw_items
    write_recordio(tmp_path / "t.rec", items[:64])
    ds = RecordIODataset(tmp_path / "t.rec")
    ds[0]  # the parent opens its reader first
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=lambda b: [x[1] for x in b],
                                         multiprocessing_context="fork")
    labels = [label for batch in loader for label in batch]
    assert labels == [c for _, c in items[:64]]


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
