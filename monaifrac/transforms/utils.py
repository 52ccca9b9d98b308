"""Helpers the transforms share: a tensor without its metadata, an array of anything."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor


def _plain(x: torch.Tensor) -> torch.Tensor:
    """The tensor's data without MONAI's metadata: each operation on a MetaTensor also copies its metadata
    (about 40 µs a call under cProfile, ``monaifrac benchmark infer --profile``: ``inference.json`` made 81 such
    calls a film before these transforms used this)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
