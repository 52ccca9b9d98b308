"""DDP helpers for ``torchrun`` jobs: wrapping extra networks, and a clean shutdown
(``multi_gpu_train.json``'s ``finalize``)."""

from __future__ import annotations

import gc

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from monaifrac.compat.pytorch import remove_ddp_autograd_hooks


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
    remove_ddp_autograd_hooks(module)
    for name in ("logger", "reducer"):  # the logger holds the reducer too
        if hasattr(module, name):
            delattr(module, name)
    gc.collect()


def ddp_if_distributed(module: torch.nn.Module, device: torch.device | str | None = None) -> torch.nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` inside a ``torchrun`` job, as it is elsewhere.

    For networks besides the bundle's ``network`` (the adversarial discriminator): one config
    then serves single-process and multi-GPU runs.
    """
    if not dist.is_initialized():
        return module
    device = torch.device(device) if device is not None else None
    ids = [device] if device is not None and device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def shutdown(network: torch.nn.Module | None = None) -> None:
    """End a distributed run: wait for every rank, free the DDP reducers, destroy the process group.

    ``network``'s reducer is freed, and that of every other live ``DistributedDataParallel``
    module (a GAN's discriminator, say), found through the garbage collector. The barrier keeps
    a rank that finishes early (it writes nothing) from tearing down its connections while
    rank 0 is still saving. Without an initialised process group this does nothing.
    """
    if not dist.is_initialized():
        return
    dist.barrier()
    if network is not None:
        release_ddp(network)
    for obj in gc.get_objects():
        if isinstance(obj, DistributedDataParallel) and hasattr(obj, "reducer"):
            release_ddp(obj)
    dist.destroy_process_group()
