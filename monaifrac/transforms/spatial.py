"""Spatial: the scale the network sees a film at.

FracAtlas films are 454 px on the long side (all but 39 of 3,411 in the shared copy); the rest are
scans of 1,700-2,900 px of the same anatomy. The network sees every film at one common scale: a
scan is first brought to a 454-px long side, then every film is enlarged by ``scale`` (the bundle's
``film_scale``). Enlarging matters for the small fractures: a 336-px fracture is about 18 x 18 px of
a 373 x 454 film, under one cell of the encoder's stride-32 map; at 1.5x it covers 27 x 27 px.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, Transform


def long_side_shape(spatial: Sequence[int], side: int) -> list[int]:
    """The shape of a film of ``spatial`` scaled to a long side of ``side`` px: each side rounded, and at
    least 1 px (a 4000 x 1 film stays 1 px wide rather than vanishing)."""
    scale = side / max(int(s) for s in spatial)
    return [max(1, int(round(int(s) * scale))) for s in spatial]


def film_shape(spatial: Sequence[int], scale: float = 1.0, max_side: int | None = 480,
               side: int = 454) -> list[int] | None:
    """The shape (px) the network sees a film of ``spatial`` (px) at, or None where it sees it as stored.

    A film whose long side is over ``max_side`` (a scan) is brought to a long side of ``side`` x ``scale``;
    any other film is enlarged (or reduced) by ``scale``. ``max_side=None``: no scan is reduced, every film
    is scaled by ``scale``.
    """
    if scale <= 0:
        raise ValueError(f"film scale must be > 0, got {scale}")
    spatial = [int(s) for s in spatial]
    if max_side is not None and max(spatial) > max_side:
        return long_side_shape(spatial, int(round(side * scale)))
    if scale == 1:
        return None
    return [max(1, int(round(s * scale))) for s in spatial]


def network_side(max_side: int, scale: float = 1.0, divisor: int = 32) -> int:
    """The side (px) of the square a whole training film is padded to at ``scale``: ``max_side`` x ``scale``
    rounded up to a multiple of ``divisor`` (the network's total stride)."""
    return int(math.ceil(max_side * scale / divisor) * divisor)


def scaled_crop(max_side: int, scale: float = 1.0, divisor: int = 32) -> list[int] | None:
    """The training crop (px, square) of a film enlarged by ``scale``: the square a whole film is padded to at
    1x (:func:`network_side` of ``max_side``), so that a training step at ``scale`` costs what a whole film
    costs at 1x; None (whole films, no crop) where ``scale`` <= 1.

    The shipped recipe at 1.5x trains on 480 x 480 crops of 560 x 704 films (train.json's ``film_crop``)."""
    if scale <= 1:
        return None
    side = network_side(max_side, 1.0, divisor)
    return [side, side]


class LimitLongSide(Transform):
    """Bring a film to the scale the network sees it at (:func:`film_shape`).

    A scan whose long side is over ``max_size`` is scaled so that its long side is ``size`` x ``scale``;
    any other film is scaled by ``scale`` (returned untouched, not resampled, at ``scale=1``). Brought to
    the common scale, a scan shows its fracture at the size the network learned, and a batch of films
    fits one padded shape.

    An integer film (or label map) is returned in its own dtype, rounded; a float one as float32.

    Args:
        max_size: longest side of a film that is not a scan (px).
        size: long side a scan is brought to before ``scale`` (px); the short side keeps the aspect ratio.
        mode: interpolation, ``"area"`` for a film, ``"nearest"`` for a label map. ``"area"`` averages
            when reducing and becomes ``"bilinear"`` when enlarging (area would copy pixels into blocks).
        scale: the bundle's ``film_scale``.
        reduce_only: only ever reduce: a film the scale would enlarge is returned as it is. Training's
            cache holds films this way (a scan reduced straight to the film scale, keeping what detail the
            scale allows; a 373 x 454 film at its stored size, not 2.25x its pixels at 1.5x) and the same
            transform without ``reduce_only`` enlarges each film when it is drawn.

    ``__call__(img)``: img (C, *spatial) → (C, *scaled spatial), a MetaTensor where img is one; a film
    already at the shape the network sees it at is returned untouched.
    """

    def __init__(self, max_size: int = 480, size: int = 454, mode: str = "area", scale: float = 1.0,
                 reduce_only: bool = False):
        if size > max_size:
            raise ValueError(f"size ({size}) must not exceed max_size ({max_size})")
        film_shape([1, 1], scale)  # validates the scale
        self.max_size, self.size, self.mode, self.scale = max_size, size, mode, float(scale)
        self.reduce_only = bool(reduce_only)

    def __call__(self, img):
        shape = film_shape(img.shape[1:], self.scale, self.max_size, self.size)
        if shape is None or list(shape) == [int(s) for s in img.shape[1:]]:
            return img
        enlarging = math.prod(shape) > math.prod(img.shape[1:])
        if self.reduce_only and enlarging:
            return img
        mode = "bilinear" if self.mode == "area" and enlarging else self.mode
        out = Resize(spatial_size=shape, mode=mode)(img)
        if isinstance(img, torch.Tensor) and not img.dtype.is_floating_point and img.dtype != torch.bool:
            # a film cached at its own bit depth (and a label map) stays there
            info = torch.iinfo(img.dtype)
            out = out.round_().clamp_(info.min, info.max).to(img.dtype)
        return out


class LimitLongSided(MapTransform):
    """Dictionary form of :class:`LimitLongSide`, one ``mode`` per key."""

    def __init__(self, keys: KeysCollection, max_size: int = 480, size: int = 454,
                 mode: str | Sequence[str] = "area", scale: float = 1.0, reduce_only: bool = False,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        self.limiters = {k: LimitLongSide(max_size, size, m, scale, reduce_only) for k, m in zip(self.keys, modes)}

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.limiters[key](d[key])
        return d
