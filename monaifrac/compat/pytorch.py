"""PyTorch internals, each behind one function. Checked against torch 2.13.0 (CPU)."""

from __future__ import annotations

from typing import Sequence

import torch

CHECKED_AGAINST = "2.13.0"  # the version each function below was read against (tests/unit/test_compat.py)


def set_last_lr(scheduler: torch.optim.lr_scheduler.LRScheduler, rates: Sequence[float]) -> None:
    """Make ``scheduler.get_last_lr()`` report ``rates`` (one per parameter group), after the rates of the
    optimiser's groups were set by hand. torch 2.13 keeps them in the private ``_last_lr``.
    """
    scheduler._last_lr = [float(r) for r in rates]


def remove_ddp_autograd_hooks(module: torch.nn.parallel.DistributedDataParallel) -> None:
    """Take DDP's gradient hooks off the wrapped parameters (they hold the C++ reducer).

    ``DistributedDataParallel._remove_autograd_hooks()``, private in torch 2.13.
    """
    module._remove_autograd_hooks()


def is_batch_norm(module: torch.nn.Module) -> bool:
    """A batch-norm layer of any dimension (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, the lazy ones).

    ``torch.nn.modules.batchnorm._BatchNorm`` is their private base class in torch 2.13.
    """
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def is_running_stats_norm(module: torch.nn.Module) -> bool:
    """A normalisation layer that keeps running statistics (batch norm, and instance norm with
    ``track_running_stats=True``). ``torch.nn.modules.batchnorm._NormBase`` is their private base class
    in torch 2.13.
    """
    return isinstance(module, torch.nn.modules.batchnorm._NormBase) and bool(module.track_running_stats)
