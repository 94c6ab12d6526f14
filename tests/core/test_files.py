"""Files: atomic writes keep the umask's permissions, only regular files are read (nothing
hangs on a FIFO), names that are not UTF-8 round-trip through their text, outputs are claimed."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from faceforge.core.errors import FileAccessError, OutputExistsError
from faceforge.core.files import (atomic_write_text, claim_output, path_text, read_regular, safe_filename,
                                  text_path)


def test_atomic_write_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # as open() would give
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
    (tmp_path / "a.txt").chmod(0o640)  # the user's choice for a file of face data
    atomic_write_text(tmp_path / "a.txt", "y")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # kept when it is replaced


def test_read_regular_refuses_what_is_not_a_file(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result: list = []
    t = threading.Thread(target=lambda: result.append(pytest.raises(FileAccessError, read_regular, fifo)))
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert "not a regular file (a FIFO)" in str(result[0].value)
    with pytest.raises(FileAccessError, match="is a directory"):
        read_regular(tmp_path)
    with pytest.raises(FileAccessError, match="file not found"):
        read_regular(tmp_path / "absent.jpg")
    with pytest.raises(FileAccessError, match="not a regular file \\(a device\\)"):
        read_regular("/dev/null")
    (tmp_path / "ok").write_bytes(b"abc")
    assert read_regular(tmp_path / "ok") == b"abc"


def test_names_that_are_not_utf8_round_trip(tmp_path):
    raw = os.fsdecode(bytes(tmp_path) + b"/caf\xe9-\xff.jpg")
    with open(raw, "wb") as fh:
        fh.write(b"data")
    text = path_text(raw)
    assert text.endswith("caf\\xe9-\\xff.jpg") and text.encode("utf-8")  # valid Unicode
    assert text_path(text).read_bytes() == b"data"
    plain = tmp_path / "plain-é.jpg"
    assert path_text(plain) == str(plain) and text_path(str(plain)) == plain  # UTF-8 names unchanged


def test_claim_output(tmp_path):
    f = tmp_path / "out.parquet"
    assert claim_output(f) == f  # nothing there yet
    f.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        claim_output(f)
    claim_output(f, overwrite=True)
    assert f.read_bytes() == b"precious"  # nothing is deleted before the command writes
    with pytest.raises(OutputExistsError, match="is a folder"):
        claim_output(tmp_path, overwrite=True)
    d = tmp_path / "results"
    claim_output(d, folder=True)
    d.mkdir()
    claim_output(d, folder=True)  # empty: fine
    (d / "metrics.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="not empty"):
        claim_output(d, folder=True)
    claim_output(d, overwrite=True, folder=True)
    with pytest.raises(OutputExistsError, match="is a file"):
        claim_output(f, overwrite=True, folder=True)


def test_safe_filename_never_leaves_its_folder():
    names = ["..", ".", "", "a/b", "../../etc", "nul\x00byte", "tab\tthere", "x" * 300, "plain", "a_b"]
    out = [safe_filename(n) for n in names]
    assert all("/" not in o and "\x00" not in o and o not in ("", ".", "..") for o in out)
    assert len(set(out)) == len(out)  # different names stay different ("a/b" vs "a_b")
    assert safe_filename("plain") == "plain" and len(safe_filename("x" * 300).encode()) <= 130
