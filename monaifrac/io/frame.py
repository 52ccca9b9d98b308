"""The two array layouts of a film and the only conversions between them (see :mod:`monaifrac.io`)."""

from __future__ import annotations

import numpy as np


def to_monai_frame(array_hw: np.ndarray) -> np.ndarray:
    """(H, W) row-major → (W, H), the x-first layout MONAI's 2D readers return."""
    return np.ascontiguousarray(np.swapaxes(array_hw, 0, 1))


def from_monai_frame(array_wh: np.ndarray) -> np.ndarray:
    """(W, H) → (H, W) row-major; the inverse of :func:`to_monai_frame`."""
    return np.ascontiguousarray(np.swapaxes(array_wh, 0, 1))
