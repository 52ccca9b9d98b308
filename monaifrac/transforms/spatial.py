"""Spatial: scans brought to the common scale of FracAtlas films."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, Transform


def long_side_shape(spatial: Sequence[int], side: int) -> list[int]:
    """The shape of a film of ``spatial`` scaled to a long side of ``side`` px: each side rounded, and at
    least 1 px (a 4000 x 1 film stays 1 px wide rather than vanishing)."""
    scale = side / max(int(s) for s in spatial)
    return [max(1, int(round(int(s) * scale))) for s in spatial]


class LimitLongSide(Transform):
    """Scale a film whose long side is over ``max_size`` so that its long side is ``size``.

    FracAtlas films are 454 px on the long side (all but 39 of 3,411 in the shared copy); the
    rest are scans of 1,700-2,900 px of the same anatomy. Brought to the common scale, a scan
    shows its fracture at the size the network learned, and a batch of films fits one padded
    shape. Films within ``max_size`` are returned untouched, not resampled.

    An integer film (or label map) is returned in its own dtype, rounded; a float one as float32.

    Args:
        max_size: longest side left as it is (px).
        size: long side of a film scaled down (px); the short side keeps the aspect ratio.
        mode: interpolation, ``"area"`` for a film, ``"nearest"`` for a label map.

    ``__call__(img)``: img (C, *spatial) → (C, *scaled spatial), a MetaTensor where img is one.
    """

    def __init__(self, max_size: int = 480, size: int = 454, mode: str = "area"):
        if size > max_size:
            raise ValueError(f"size ({size}) must not exceed max_size ({max_size})")
        self.max_size, self.size, self.mode = max_size, size, mode

    def __call__(self, img):
        if max(img.shape[1:]) <= self.max_size:
            return img
        out = Resize(spatial_size=long_side_shape(img.shape[1:], self.size), mode=self.mode)(img)
        if isinstance(img, torch.Tensor) and not img.dtype.is_floating_point and img.dtype != torch.bool:
            # a film cached at its own bit depth (and a label map) stays there
            info = torch.iinfo(img.dtype)
            out = out.round_().clamp_(info.min, info.max).to(img.dtype)
        return out


class LimitLongSided(MapTransform):
    """Dictionary form of :class:`LimitLongSide`, one ``mode`` per key."""

    def __init__(self, keys: KeysCollection, max_size: int = 480, size: int = 454,
                 mode: str | Sequence[str] = "area", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        self.limiters = {k: LimitLongSide(max_size, size, m) for k, m in zip(self.keys, modes)}

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.limiters[key](d[key])
        return d
