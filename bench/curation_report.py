"""Screenshots of the curation review page on real photos, as a user makes it.

The CelebA subset (identities with several looks, labels believed clean) is embedded with
`faceforge embed` (yunet + sface), then `faceforge curate filter --report` runs with the
reference rule (only the main community is kept) and with the community rule (a group whose
template matches the main one is kept as "different look"). Headless Chromium photographs the
top of each report/index.html. Writes bench/results/curation_report_{reference,community}.png
and their counts to bench/results/curation_report.json.

    python bench/curation_report.py
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from common import REPO, run_cli  # bench/common.py
from faceforge.core.data import shared_data_dir
from faceforge.core.files import atomic_write_json

HERE = Path(__file__).resolve().parent
RUNS = HERE / "results" / "runs_curation_report"
CHROMIUM = Path("/usr/bin/chromium")


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1500) -> None:
    """The top of a local page as a PNG, off the network."""
    if not CHROMIUM.exists():
        raise SystemExit(f"headless screenshots need Chromium at {CHROMIUM}")
    subprocess.run([str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)


def _relative(value):
    """Paths inside the repository as relative ones (the JSON is committed)."""
    if isinstance(value, str) and value.startswith(str(REPO) + "/"):
        return value[len(str(REPO)) + 1:]
    return value


def main() -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    emb = RUNS / "celeba_sface.parquet"
    if not emb.exists():
        run_cli("embed", str(shared_data_dir() / "celeba_subset"), "-o", str(emb), "-m", "sface",
                "--detector", "yunet", "--device", "cpu")
    res = {"data": "CelebA subset, yunet + sface", "rules": {}}
    for rule in ("reference", "community"):
        out = RUNS / rule
        summary = run_cli("curate", "filter", str(emb), "-o", str(out), "--rule", rule, "--report", "--overwrite")
        png = HERE / "results" / f"curation_report_{rule}.png"
        screenshot(out / "report" / "index.html", png)
        res["rules"][rule] = {k: _relative(v) for k, v in summary.items() if isinstance(v, (int, float, str))}
        res["rules"][rule]["screenshot"] = str(png.relative_to(REPO))
        print(f"{rule}: {json.dumps(res['rules'][rule])}")
    atomic_write_json(HERE / "results" / "curation_report.json", res)


if __name__ == "__main__":
    main()
