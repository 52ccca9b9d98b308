"""Intensity: a film's percentile window, and scaling by it (in one step, or two around a cache)."""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor, get_track_meta
from monai.transforms import MapTransform, ScaleIntensityRange
from monai.transforms import ScaleIntensityRangePercentiles as _MonaiPercentiles
from monai.transforms import ScaleIntensityRangePercentilesd as _MonaiPercentilesd
from monai.utils import convert_to_tensor

from monaifrac.transforms.utils import _numpy, _plain


def percentile_window(img, lower: float, upper: float) -> tuple[float, float]:
    """The intensity window of a film: its ``lower`` and ``upper`` percentiles (in %, linear interpolation,
    as MONAI's ``ScaleIntensityRangePercentiles`` computes them), in the film's own units."""
    a_min, a_max = np.percentile(_numpy(img), [lower, upper])
    return float(a_min), float(a_max)


class ScaleIntensityRangePercentiles(_MonaiPercentiles):
    """MONAI's ``ScaleIntensityRangePercentiles`` with both percentiles from one ``np.percentile``.

    Same arguments and result (linear interpolation, as MONAI computes it for images over 1 M
    pixels). MONAI computes each percentile of a smaller tensor with ``torch.quantile``, a full
    sort: two of them took 10.7 ms of a 454 x 373 film's inference (cProfile of an
    ``inference.json`` run), one ``np.percentile`` (a partition) takes about 2 ms.

    ``__call__(img)``: img (C, *spatial) → float32 of the same shape, a MetaTensor where img is one.
    """

    def _normalize(self, img):
        a_min, a_max = percentile_window(img, self.lower, self.upper)
        b_min, b_max = self.b_min, self.b_max
        if self.relative:
            if b_min is None or b_max is None:
                raise ValueError("If it is relative, b_min and b_max should not be None.")
            b_min = (self.b_max - self.b_min) * (self.lower / 100.0) + self.b_min
            b_max = (self.b_max - self.b_min) * (self.upper / 100.0) + self.b_min
        scale = ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=self.clip,
                                    dtype=self.dtype)
        # on the plain tensor: MONAI's base class puts the metadata back once, not once per operation
        return convert_to_tensor(scale(_plain(img)), track_meta=False)


class ScaleIntensityRangePercentilesd(_MonaiPercentilesd):
    """Dictionary form of :class:`ScaleIntensityRangePercentiles` (MONAI's, with the faster percentiles)."""

    def __init__(self, keys: KeysCollection, lower: float, upper: float, b_min: float | None, b_max: float | None,
                 clip: bool = False, relative: bool = False, channel_wise: bool = False, dtype=np.float32,
                 allow_missing_keys: bool = False):
        super().__init__(keys, lower, upper, b_min, b_max, clip, relative, channel_wise, dtype, allow_missing_keys)
        self.scaler = ScaleIntensityRangePercentiles(lower, upper, b_min, b_max, clip, relative, channel_wise,
                                                     dtype)


class PercentileWindowd(MapTransform):
    """Record each image's intensity window (:func:`percentile_window`) under ``key + window_postfix``.

    With :class:`ScaleIntensityWindowd` it is :class:`ScaleIntensityRangePercentilesd` in two steps, so
    that a cache can sit between them: training caches its films at their own bit depth (a JPEG's
    uint8, one byte a pixel, where the scaled float16 film took two: training's peak memory on both
    FracAtlas folders fell from 4.14 to 3.51 GiB, ``monaifrac benchmark memory``) and scales each
    when it is drawn. The window is taken from the film as read, before
    :class:`LimitLongSided` resamples a scan, which is where inference takes it.

    ``__call__(data)``: adds ``(a_min, a_max)``, a pair of floats in the image's units, per key.
    """

    def __init__(self, keys: KeysCollection, lower: float, upper: float, window_postfix: str = "_window",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= lower <= upper <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= lower <= upper <= 100, got {lower}, {upper}")
        self.lower, self.upper, self.window_postfix = lower, upper, window_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}{self.window_postfix}"] = percentile_window(d[key], self.lower, self.upper)
        return d


class ScaleIntensityWindowd(MapTransform):
    """Scale each image linearly from the window :class:`PercentileWindowd` recorded to ``[b_min, b_max]``
    (clipped where ``clip``), as float32 (or ``dtype``), and drop the window from the dictionary.

    The result equals :class:`ScaleIntensityRangePercentilesd` with the same arguments applied where the
    window was recorded. Metadata is kept where the image is a MetaTensor and tracking is on.

    ``__call__(data)``: image (C, *spatial), any real dtype → the same shape in ``dtype``.
    """

    def __init__(self, keys: KeysCollection, b_min: float, b_max: float, clip: bool = False,
                 window_postfix: str = "_window", dtype=np.float32, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.b_min, self.b_max, self.clip, self.dtype = b_min, b_max, clip, dtype
        self.window_postfix = window_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            window_key = f"{key}{self.window_postfix}"
            if window_key not in d:
                raise KeyError(f"{window_key!r} missing: PercentileWindowd must run before ScaleIntensityWindowd")
            a_min, a_max = (float(v) for v in d.pop(window_key))
            scale = ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=self.b_min, b_max=self.b_max,
                                        clip=self.clip, dtype=self.dtype)
            img = d[key]
            scaled = convert_to_tensor(scale(_plain(img)), track_meta=False)
            if isinstance(img, MetaTensor) and get_track_meta():
                scaled = MetaTensor(scaled, meta=img.meta, applied_operations=img.applied_operations)
            d[key] = scaled
        return d
