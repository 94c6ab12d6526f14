"""One harness for the multi-process tests: run a function in N processes joined in a gloo
process group, as torchrun would start them, and collect what each rank returns."""
from __future__ import annotations

import os
import socket
from typing import Any, Callable

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = fn(rank, world, *args)
    finally:
        torch.distributed.destroy_process_group()


def run_gloo(fn: Callable[..., Any], *args: Any, world: int = 2) -> dict[int, Any]:
    """{rank: fn(rank, world, *args)}; fn must be a module-level function (it is pickled)."""
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(world, _free_port(), fn, args, out), nprocs=world, join=True)
    return dict(out)
