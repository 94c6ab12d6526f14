"""faceforge.io.splits.write_split: the files on disk against the folder they came from."""
from pathlib import Path

from faceforge.io.splits import write_split


def _dataset(root: Path, sizes: list[int]) -> set[str]:
    images = set()
    for i, n in enumerate(sizes):
        (root / f"id{i:02d}").mkdir(parents=True)
        for j in range(n):
            (root / f"id{i:02d}" / f"{j}.jpg").write_bytes(b"x")
            images.add(f"id{i:02d}/{j}.jpg")
    (root / "notes.txt").write_text("not an identity")
    return images


def test_lists_cover_every_kept_image_once_and_share_no_identity(tmp_path):
    images = _dataset(tmp_path / "data", [3] * 8 + [1, 1])
    res = write_split(tmp_path / "data", tmp_path / "out", val=0.25, test=0.25, seed=5, min_images=2, max_same=2)
    lists = {k: (tmp_path / "out" / f"{k}.txt").read_text().split() for k in ("val", "test", "train")}
    assert sorted(sum(lists.values(), [])) == sorted(p for p in images if not p.startswith(("id08", "id09")))
    ids = {k: {p.split("/")[0] for p in v} for k, v in lists.items()}
    assert not (ids["val"] & ids["test"] or ids["val"] & ids["train"] or ids["test"] & ids["train"])
    assert {k: (v["images"], v["identities"]) for k, v in res.items()} == {
        k: (len(lists[k]), len(ids[k])) for k in lists} and [len(ids[k]) for k in ("val", "test", "train")] == [2, 2, 4]
    for k in ("val", "test"):
        rows = [line.split() for line in (tmp_path / "out" / f"{k}_pairs.txt").read_text().splitlines()]
        assert len(rows) == res[k]["pairs"] == 2 * 2 * 2  # two capped same pairs per identity, as many different
        assert all({a, b} <= set(lists[k]) and (a.split("/")[0] == b.split("/")[0]) == (s == "1") for a, b, s in rows)
    assert "pairs" not in res["train"] and not (tmp_path / "out" / "train_pairs.txt").exists()
    again = write_split(tmp_path / "data", tmp_path / "again", val=0.25, test=0.25, seed=5, min_images=2, max_same=2)
    assert again == res and (tmp_path / "again" / "val_pairs.txt").read_text() == \
        (tmp_path / "out" / "val_pairs.txt").read_text()


def test_a_split_of_one_identity_gets_no_pair_file(tmp_path):
    _dataset(tmp_path / "data", [2] * 10)
    res = write_split(tmp_path / "data", tmp_path / "out", val=0.1, test=0.2)
    assert (res["val"]["identities"], res["test"]["identities"], res["train"]["identities"]) == (1, 2, 7)
    assert "pairs" not in res["val"] and not (tmp_path / "out" / "val_pairs.txt").exists()
    assert res["test"]["pairs"] == 2 * 2 and (tmp_path / "out" / "test_pairs.txt").is_file()
