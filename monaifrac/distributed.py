"""DDP helpers for ``torchrun`` jobs, called by ``multi_gpu_train.json`` and ``multi_gpu_inference.json``:
the rank's device and process group, logs from rank 0 only, wrapping networks, and a clean shutdown."""

from __future__ import annotations

import gc
import logging
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from monaifrac.compat.pytorch import remove_ddp_autograd_hooks


def local_device() -> torch.device:
    """This rank's device: ``cuda:<LOCAL_RANK>`` (set by ``torchrun``) where CUDA is, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
    return torch.device("cpu")


def init_process_group(device: torch.device | str) -> None:
    """Join the ``torchrun`` job's process group (NCCL on CUDA, gloo on the CPU) unless already in one,
    and make ``device`` the rank's current CUDA device.

    It comes first in a multi-GPU config's ``initialize``: the ids that ask for the rank (``is_main``)
    and the distributed samplers are evaluated after it.
    """
    device = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def log_on_rank_zero(*engines) -> None:
    """Keep the engines' INFO lines (an epoch's metrics, progress) to rank 0; other ranks log warnings only."""
    level = logging.INFO if not dist.is_initialized() or dist.get_rank() == 0 else logging.WARNING
    for engine in engines:
        engine.logger.setLevel(level)


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
