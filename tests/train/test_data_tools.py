"""Samplers, class balancing, augmentations, dataset preparation, splits and export."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.core.errors import FaceForgeError
from faceforge.io.images import load_image
from faceforge.io.splits import identity_split, verification_pairs
from faceforge.models import create_embedder
from faceforge.models.backbones import create_backbone
from faceforge.models.export import export_onnx, export_safetensors
from faceforge.train import augment as A
from faceforge.train.samplers import balanced_indices, epoch_order, pk_batch_count, pk_batches
from faceforge.vision.detectors import create_detector
from faceforge.vision.prepare import prepare_aligned_dataset

from ..conftest import LFW, need

runner = CliRunner()


def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    assert sorted(epoch_order(50, 1, 2)) == list(range(50))


def test_pk_batches_cover_the_epoch_with_p_identities_of_k_images():
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    targets = np.repeat(np.arange(10), counts)
    # chunks of K=3 per identity: 1+1+1+2+2+2+3+3+3+4 = 22, so 22 // P = 5 batches of 4 chunks
    assert pk_batch_count(targets, p=4, k=3) == 5
    batches = pk_batches(targets, p=4, k=3, seed=0, epoch=0)
    assert len(batches) == 5
    for b in batches:
        ids = targets[b]
        assert len(b) == 12 and len(set(ids)) == 4 and all((ids == c).sum() == 3 for c in set(ids))
    seen = np.unique(np.concatenate(batches))
    assert len(seen) >= 0.8 * len(targets)  # about every image once, not a few identities
    assert all(np.array_equal(a, b) for a, b in zip(batches, pk_batches(targets, 4, 3, seed=0, epoch=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, pk_batches(targets, 4, 3, seed=0, epoch=1)))
    with pytest.raises(FaceForgeError, match="at least P=20"):
        pk_batches(targets, p=20, k=2, seed=0, epoch=0)


def test_class_balancing_by_hand():
    counts = [2, 3, 5, 8, 10, 12, 250, 300]
    targets = np.repeat(np.arange(8), counts)
    idx, rep, dropped = balanced_indices(targets, per_class=10, quantile=0.25, seed=0)
    small = np.array([2, 3, 5, 8])  # identities below T
    cut = np.quantile(small, 0.25)  # 2.75: identity 0 (2 images) is dropped
    assert list(dropped) == [c for c, n in enumerate(counts) if n < cut] == [0]
    got = np.bincount(targets[idx], minlength=8)
    assert list(got) == [0] + [10] * 7
    assert rep.sum() == (10 - 3) + (10 - 5) + (10 - 8)  # upsampled copies are marked for augmentation
    big = idx[targets[idx] == 7]
    assert len(set(big)) == 10  # downsampling picks distinct images


TRANSFORMS = [A.hflip, A.gamma(), A.contrast(), A.saturation(), A.crop(), A.gaussian_blur(), A.motion_blur(),
              A.jpeg(), A.gaussian_noise(), A.grayscale, A.rotate(), A.pad_crop(), A.random_erasing()]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: getattr(t, "__qualname__", str(t)).split(".")[0])
def test_augmentations_keep_shape_and_are_reproducible(t, face_jpg):
    img = load_image(face_jpg)[:112, :112].copy()
    a = t(img, np.random.default_rng(5))
    b = t(img, np.random.default_rng(5))
    assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, img)


def test_augment_presets(face_jpg):
    img = load_image(face_jpg)
    out = A.face_train_augment("degrade")(img, np.random.default_rng(0))
    assert out.shape == img.shape
    with pytest.raises(ValueError):
        A.face_train_augment("nope")


def test_prepare_aligned_dataset(tmp_path, face_jpg):
    src = tmp_path / "raw"
    for person in ("Colin_Powell", "Tony_Blair"):
        (src / person).mkdir(parents=True)
        for f in sorted((need(LFW / "images") / person).iterdir())[:3]:
            (src / person / f.name).write_bytes(f.read_bytes())
    (src / "Tony_Blair" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    from skimage import data
    from PIL import Image
    Image.fromarray(data.coffee()).save(src / "Tony_Blair" / "coffee.png")
    dst = tmp_path / "aligned"
    rep = prepare_aligned_dataset(src, dst, create_detector("yunet"), top=1)
    assert rep.identities == 1 and rep.written == 3 and rep.skipped == 2  # Tony Blair has 5 files, the most
    assert {p.name for p in (dst / "Tony_Blair").iterdir()} == {f.stem + ".jpg" for f in (src / "Tony_Blair").iterdir()
                                                              if f.suffix == ".jpg" and f.stem != "broken"}
    assert load_image(next((dst / "Tony_Blair").iterdir())).shape == (112, 112, 3)
    skips = [json.loads(l) for l in (tmp_path / "aligned.skips.jsonl").read_text().splitlines()]
    assert sorted(s["reason"] for s in skips) == ["no face found", "not an image file (unknown format)"]
    assert (tmp_path / "aligned.debug" / "Tony_Blair.jpg").is_file()
    again = prepare_aligned_dataset(src, dst, create_detector("yunet"))  # resumes: keeps what exists
    assert again.kept == 3 and again.written == 3


def test_identity_split_and_pairs(tmp_path):
    for i in range(10):
        (tmp_path / f"id{i}").mkdir()
        for j in range(3):
            (tmp_path / f"id{i}" / f"{j}.jpg").write_bytes(b"x")
    parts = identity_split(tmp_path, {"val": 0.2, "test": 0.2, "train": 1.0}, seed=3)
    ids = {k: {p.split("/")[0] for p in v} for k, v in parts.items()}
    assert [len(ids[k]) for k in ("val", "test", "train")] == [2, 2, 6]
    assert not (ids["val"] & ids["test"] or ids["val"] & ids["train"] or ids["test"] & ids["train"])
    assert parts == identity_split(tmp_path, {"val": 0.2, "test": 0.2, "train": 1.0}, seed=3)
    pairs = verification_pairs(parts["train"], seed=0)
    same = [(a, b) for a, b, s in pairs if s]
    assert len(same) == 6 * 3 and len(pairs) == 2 * len(same)
    assert all((a.split("/")[0] == b.split("/")[0]) == s for a, b, s in pairs)


def test_export_onnx_loads_back_as_embedder(tmp_path, face_jpg):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_backbone("mbf", num_features=64, scale=1).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    emb = create_embedder(f"onnx:{path}")
    assert (emb.spec.size, emb.spec.mean, emb.spec.std) == (112, 127.5, 127.5) and emb.dim == 64
    img = load_image(face_jpg)
    face = create_detector("yunet").detect(img)[0]
    crops = np.stack([emb.align(img, face)] * 3)
    got = emb.embed_crops(crops)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model((torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 127.5))
    assert np.abs(got - ref.numpy()).max() < 1e-4
    st = export_safetensors(model, tmp_path / "m.safetensors", {"backbone": "mbf"})
    from safetensors.torch import load_file
    again = create_backbone("mbf", num_features=64, scale=1)
    again.load_state_dict(load_file(str(st)))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_export_cli_from_checkpoint(tmp_path):
    from faceforge.train.checkpoint import save_checkpoint
    model = create_backbone("mbf", num_features=32, scale=1)
    save_checkpoint(tmp_path / "best.pt", {"identity": {"backbone": "mbf", "backbone_kwargs": {"num_features": 32, "scale": 1}},
                                          "backbone": model.state_dict()})
    res = runner.invoke(app, ["export", "safetensors", str(tmp_path / "best.pt"), "-o", str(tmp_path / "x.safetensors"), "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.safetensors").stat().st_size > 10_000
    save_checkpoint(tmp_path / "bad.pt", {"identity": {"backbone": "mbf", "backbone_kwargs": {"num_features": 16}},
                                         "backbone": model.state_dict()})
    res = runner.invoke(app, ["export", "onnx", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "x.onnx"), "--json"])
    assert res.exit_code == 2 and "do not fit" in json.loads(res.stdout)["error"]


def test_imprinting_sets_centres_to_normalised_class_means():
    from faceforge.models.heads import ArcFace, FCHead, PartialFC
    from faceforge.train.imprint import class_mean_embeddings, imprint

    class Tiny(torch.nn.Module):  # embedding = the mean colour of the image
        def forward(self, x):
            return x.mean(dim=(2, 3))

    rng = np.random.default_rng(0)
    data = [(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), i % 3) for i in range(9)]
    pre = lambda b: torch.from_numpy(b).permute(0, 3, 1, 2).float()
    means = class_mean_embeddings(Tiny(), data, 3, pre, batch_size=4)
    for c in range(3):
        e = [torch.nn.functional.normalize(torch.tensor(x.reshape(-1, 3).mean(0), dtype=torch.float32), dim=0)
             for x, y in data if y == c]
        assert torch.allclose(means[c], torch.nn.functional.normalize(torch.stack(e).mean(0), dim=0), atol=1e-6)
    head = FCHead(3, 3, ArcFace())
    imprint(head, means)
    assert torch.equal(head.weight.data, means)
    pfc = PartialFC(3, 3, ArcFace(), sample_rate=1.0)
    imprint(pfc, means)
    assert torch.equal(pfc.weight.data, means)
    with pytest.raises(FaceForgeError, match="no images"):
        class_mean_embeddings(Tiny(), data, 4, pre)


def test_committed_lfw_allpairs_list_is_the_complement_of_train_and_val(lfw_root):
    """bench/data/lfw_split/allpairs_test.txt regenerates exactly and shares no identity
    with the training or validation split."""
    from faceforge.io.splits import images_outside
    split = Path(__file__).resolve().parents[2] / "bench" / "data" / "lfw_split"
    used = (split / "train.txt").read_text().split() + (split / "val.txt").read_text().split()
    committed = (split / "allpairs_test.txt").read_text().split()
    assert images_outside(lfw_root / "images", used) == committed
    assert not {p.split("/")[0] for p in used} & {p.split("/")[0] for p in committed}
    assert set((split / "test.txt").read_text().split()) <= set(committed)
