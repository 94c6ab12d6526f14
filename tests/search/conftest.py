"""Every gallery test runs against the three ways a gallery is reached: a Milvus Lite folder,
a real Milvus server process on loopback (milvus-lite's own server mode, started and stopped
here), and FAISS in process."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

MILVUS_SERVER = Path(sys.executable).with_name("milvus-lite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with {proc.returncode}: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("milvus-lite server did not start listening")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A Milvus server on 127.0.0.1 for the whole session; each test uses its own collection."""
    if not MILVUS_SERVER.exists():
        pytest.skip(f"milvus-lite server entry point not found at {MILVUS_SERVER}")
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    proc = subprocess.Popen([str(MILVUS_SERVER), "server", "--data-dir", str(data / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


_collections = iter(range(10**6))


@pytest.fixture(params=["milvus-lite", "milvus-server", "faiss"])
def gallery_spec(request, tmp_path) -> dict:
    """Keyword arguments of open_gallery for a fresh, empty gallery of each backend."""
    if request.param == "milvus-lite":
        return {"uri": str(tmp_path / "gallery.db")}
    if request.param == "milvus-server":
        return {"uri": request.getfixturevalue("milvus_server"), "collection": f"t{os.getpid()}_{next(_collections)}"}
    return {"uri": f"faiss:{tmp_path / 'gallery'}"}
