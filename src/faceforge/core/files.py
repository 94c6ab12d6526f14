"""Files: atomic writes (a reader or a crash never sees a half-written file), reading only
regular files (a FIFO or a device named `.jpg` must not hang a batch), file names as text
(names that are not valid UTF-8 still get a row), and refusing to clobber outputs."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from faceforge.core.errors import FileAccessError, OutputExistsError


def _umask() -> int:
    try:  # Linux states it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file beside `path`, fsync, then rename over it. A file that is
    replaced keeps its permissions; a new one gets those a plain open() would give (0666
    less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        perms = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        perms = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


_ACCESS_REASONS = {errno.ENOENT: "file not found", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied", errno.EISDIR: "is a directory, not a file",
                   errno.ENOTDIR: "file not found (a parent is not a folder)",
                   errno.ELOOP: "too many levels of symbolic links", errno.ENAMETOOLONG: "file name too long"}


def _access_error(exc: OSError, path: str | Path) -> FileAccessError:
    reason = _ACCESS_REASONS.get(exc.errno or -1, f"cannot read: {exc.strerror or exc}")
    return FileAccessError(reason, path)


def open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for reading, or raise FileAccessError naming it. The file is
    opened without blocking first, so a FIFO or a device is refused instead of waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _access_error(exc, path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileAccessError("is a directory, not a file", path)
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
                else "a socket" if stat.S_ISSOCK(mode) else "special"
            raise FileAccessError(f"not a regular file ({kind})", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path) -> bytes:
    """The bytes of a regular file (see open_regular)."""
    return b"".join(iter_regular(path))


def iter_regular(path: str | Path, block: int = 1 << 20) -> Iterator[bytes]:
    """A regular file's bytes in blocks; a read error is a FileAccessError too."""
    with open_regular(path) as fh:
        while True:
            try:
                data = fh.read(block)
            except OSError as exc:
                raise _access_error(exc, path) from None
            if not data:
                return
            yield data


def content_hash(path: str | Path) -> str:
    """sha256 of a regular file's bytes (a FIFO or device is refused, never waited on)."""
    h = hashlib.sha256()
    for block in iter_regular(path):
        h.update(block)
    return h.hexdigest()


def path_text(path: str | Path) -> str:
    """A file name as valid Unicode text, for Parquet, JSON, galleries and messages. Bytes
    that are not UTF-8 (an old Latin-1 folder, say) become `\\xNN`; text_path undoes it."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


_ESCAPED = re.compile(rb"\\x([0-9a-fA-F]{2})")


def text_path(text: str | Path) -> Path:
    """The file that path_text named: as written when it exists, else with `\\xNN` read back
    as the raw bytes of the name."""
    path = Path(text)
    if isinstance(text, Path) or "\\x" not in text or path.exists():
        return path
    return Path(os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m[1], 16)]), os.fsencode(text))))


def safe_filename(name: str, limit: int = 120) -> str:
    """`name` as one file-name component: separators, NUL and control characters become `_`,
    `.`/`..`/empty are prefixed, long names are cut; whenever anything changed, a short hash of
    the original keeps two different names apart. Names are data: they never choose a folder."""
    clean = re.sub(r"[\x00-\x1f\x7f/\\]", "_", name)
    if clean in ("", ".", ".."):
        clean = "_" + clean
    if len(clean.encode("utf-8", "surrogateescape")) > limit:
        clean = clean.encode("utf-8", "surrogateescape")[:limit].decode("utf-8", "ignore")
    if clean != name:
        clean += "-" + hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return clean


def claim_output(path: str | Path, overwrite: bool = False, folder: bool = False,
                 ignore: tuple[str, ...] = ()) -> Path:
    """Make sure writing `path` destroys nothing the user did not ask to replace: an existing
    file (or, with `folder=True`, a folder holding anything but names matching `ignore`) is
    refused unless `overwrite`; a folder where a file is wanted, or a file where a folder is
    wanted, is always refused. Nothing is deleted here: with `overwrite` the command's own
    atomic writes replace what they write."""
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise OutputExistsError("is a file; the output must be a folder", path)
        held = [p for p in path.iterdir() if not any(p.match(g) for g in ignore)] if path.is_dir() else []
        if held and not overwrite:
            raise OutputExistsError("the output folder exists and is not empty: choose another output "
                                    "or pass --overwrite to write into it", path)
        return path
    if path.is_dir():
        raise OutputExistsError("is a folder; the output must be a file path", path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError("the output file exists: choose another output or pass --overwrite to "
                                "replace it", path)
    return path
