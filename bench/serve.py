"""The REST service under load, as deployed: `faceforge serve` in its own process on loopback,
a bounded closed-loop load from this process (each client sends its next request when the
previous answer arrives), POST /identify with real LFW photos against a gallery of LFW people.

The services are measured in the same run on the same requests: the pool of model workers
that batches concurrent requests (with 1 and with 2 workers; 2 is the default) and the
baseline, the same service with `--serial` (one request at a time, decoding included).
Reported per number of clients: requests/s, p50/p90/p99 latency, errors, the CPU cores the
server and the load generator kept busy, and the throughput ratio over serial.

    python bench/serve.py [--clients 1 4 8 16] [--seconds 15] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from faceforge.core.data import lfw_dir  # noqa: E402
from faceforge.core.files import atomic_write_json  # noqa: E402

TOKEN = "bench-token"
RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos(n_gallery: int, n_probe: int) -> tuple[Path, list[bytes]]:
    """A gallery folder (first photo of each of n_gallery people with ≥ 2 photos, as links) and
    the probe uploads (their second photos, then other people's first photos)."""
    people = sorted(p for p in (lfw_dir() / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)
    folder = Path(tempfile.mkdtemp(prefix="faceforge-serve-bench-")) / "gallery"
    for p in people[:n_gallery]:
        (folder / p.name).mkdir(parents=True)
        first = sorted(p.iterdir())[0]
        (folder / p.name / first.name).symlink_to(first)
    probes = [sorted(p.iterdir())[1].read_bytes() for p in people[:n_gallery]]
    probes += [sorted(p.iterdir())[0].read_bytes() for p in people[n_gallery:n_gallery + n_probe - len(probes)]]
    return folder, probes[:n_probe]


def start(gallery: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "faceforge.cli.main", "serve", "-g", gallery, "--port", str(port),
           "--device", "cpu", "--max-queue", "256", *extra]
    proc = subprocess.Popen(cmd, env={**os.environ, "FACEFORGE_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"faceforge serve exited with {proc.returncode}")
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("faceforge serve did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, uploads: list[bytes], clients: int, seconds: float, server_pid: int | None = None) -> dict:
    """`clients` threads, each with its own connection, in a closed loop for `seconds`; with
    `server_pid`, also the cores the server and this load generator kept busy."""
    url = f"http://127.0.0.1:{port}/identify"
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
            i = c
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = http.post(url, files={"image": ("p.jpg", uploads[i % len(uploads)], "image/jpeg")})
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                dt = time.perf_counter() - t0
                with lock:
                    if status in ("200", "422"):  # 422: an LFW photo where no face was found
                        latencies.append(dt)
                    if status != "200":
                        errors[status] = errors.get(status, 0) + 1
                i += clients

    t0 = time.perf_counter()
    cpu0 = (cpu_seconds(server_pid) if server_pid else 0.0, sum(os.times()[:2]))
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cores = {"server_cores_busy": round((cpu_seconds(server_pid) - cpu0[0]) / wall, 2) if server_pid else None,
             "load_generator_cores_busy": round((sum(os.times()[:2]) - cpu0[1]) / wall, 2)}
    lat = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(lat), "seconds": round(wall, 2),
            "requests_per_s": round(len(lat) / wall, 2),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 1) if len(lat) else None for q in (50, 90, 99)},
            "not_200": errors, **cores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes to measure")
    ap.add_argument("--gallery-people", type=int, default=200)
    args = ap.parse_args()

    folder, uploads = photos(args.gallery_people, 400)
    gallery = str(folder.parent / "g.faiss")
    subprocess.run([sys.executable, "-m", "faceforge.cli.main", "gallery", "enrol", str(folder), "-g", gallery,
                    "--device", "cpu", "--json"], check=True, capture_output=True)
    services = {"serial": ["--serial"], **{f"pool_{w}": ["--workers", str(w)] for w in args.workers}}
    rows: dict[str, list[dict]] = {name: [] for name in services}
    for clients in args.clients:  # both services at each load level, one after the other
        for name, extra in services.items():
            port = free_port()
            proc = start(gallery, port, extra)
            try:
                load(port, uploads[:8], 1, 2.0)  # warm-up
                row = load(port, uploads, clients, args.seconds, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            rows[name].append(row)
            print(f"{name:7s} {clients:2d} clients: {row['requests_per_s']:6.2f} req/s  p50 {row['p50_ms']} ms  "
                  f"p90 {row['p90_ms']} ms  p99 {row['p99_ms']} ms  not 200: {row['not_200']}  cores busy: server "
                  f"{row['server_cores_busy']}, load {row['load_generator_cores_busy']}", flush=True)
    ratios = {name: {str(p["clients"]): round(p["requests_per_s"] / s["requests_per_s"], 2)
                     for p, s in zip(rows[name], rows["serial"])} for name in rows if name != "serial"}
    print("throughput / serial by clients:", ratios)
    atomic_write_json(RESULTS, {
        "what": "POST /identify on LFW photos (250x250 JPEG) against a FAISS gallery of LFW people, "
                "faceforge serve (yunet + sface) on loopback, closed-loop clients in another process",
        "baseline": "the same service with --serial (one request at a time)",
        "gallery_people": args.gallery_people, "seconds_per_point": args.seconds, "machine": machine(),
        "results": rows, "throughput_ratio_over_serial": ratios})
    print(f"→ {RESULTS}")


if __name__ == "__main__":
    main()
