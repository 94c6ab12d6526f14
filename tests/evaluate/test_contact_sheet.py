"""The contact sheet: one block per group, with no band of blank paper above the title however
many groups it holds (the margins are fixed in inches, not shares of the height)."""
import numpy as np
from PIL import Image

from faceforge.evaluate.plots import plot_contact_sheet


def _first_ink_row(path) -> int:
    grey = np.asarray(Image.open(path).convert("L"))
    return int(np.argmax((grey < 200).any(axis=1)))


def test_the_title_stays_at_the_top_of_a_tall_sheet(tmp_path):
    rng = np.random.default_rng(0)
    heights, tops = [], []
    for n_groups in (1, 8):
        groups = {f"ID_{i}": [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(20)]
                  for i in range(n_groups)}
        path = tmp_path / f"sheet{n_groups}.png"
        plot_contact_sheet(groups, path, title="collected identities", totals={"ID_0": 56})
        heights.append(Image.open(path).height)
        tops.append(_first_ink_row(path))
    assert heights[1] > 4 * heights[0]  # 16 rows of faces against 2
    assert max(tops) < 40  # pixels of paper above the title, at 120 dpi
