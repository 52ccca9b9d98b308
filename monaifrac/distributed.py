"""Clean shutdown of a ``torchrun`` job, called from ``multi_gpu_train.json``'s ``finalize``."""

from __future__ import annotations

import gc

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def release_ddp(module: torch.nn.Module) -> None:
    """Free the C++ reducer of a ``DistributedDataParallel`` module; its wrapped ``.module`` keeps its weights.

    With torch 2.13 on gloo, a reducer that has run a backward pass and outlives its process
    group makes the process abort at interpreter exit ("terminate called without an active
    exception", SIGABRT) in about one run in ten on a loaded 2-core machine. A config cannot drop
    every reference to the wrapped network (the trainer, the evaluator and the parser hold it),
    so the reducer is dropped instead. Any other module is left alone.
    """
    if not isinstance(module, DistributedDataParallel):
        return
    module._remove_autograd_hooks()
    for name in ("logger", "reducer"):  # the logger holds the reducer too
        if hasattr(module, name):
            delattr(module, name)
    gc.collect()


def shutdown(network: torch.nn.Module | None = None) -> None:
    """End a distributed run: wait for every rank, free ``network``'s reducer, destroy the process group.

    The barrier keeps a rank that finishes early (it writes nothing) from tearing down its
    connections while rank 0 is still saving. Without an initialised process group this does nothing.
    """
    if not dist.is_initialized():
        return
    dist.barrier()
    if network is not None:
        release_ddp(network)
    dist.destroy_process_group()
