"""Write bench/data/lfw_split/allpairs_test.txt: the LFW all-pairs test protocol's images.

They are every image of the identities that neither the training nor the validation split
uses (the 122 test identities plus every identity with fewer than 4 images), so a model
trained on the split has never seen any of them. The protocol scores every unordered pair.
Deterministic: sorted folder listing, no randomness.   python scripts/make_lfw_allpairs_list.py
"""
from pathlib import Path

from faceforge.core.data import lfw_dir
from faceforge.io.splits import images_outside, write_list

SPLIT = Path(__file__).resolve().parents[1] / "bench" / "data" / "lfw_split"


def main() -> None:
    used = [l for name in ("train.txt", "val.txt") for l in (SPLIT / name).read_text().split()]
    images = images_outside(lfw_dir() / "images", used)
    write_list(SPLIT / "allpairs_test.txt", images)
    ids = {p.split("/")[0] for p in images}
    print(f"{len(images)} images of {len(ids)} identities, {len(images) * (len(images) - 1) // 2:,} pairs")


if __name__ == "__main__":
    main()
