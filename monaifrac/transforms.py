"""The few MONAI-style transforms MONAI lacks, in array form and dictionary form."""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import Compose, MapTransform, Resize, ScaleIntensityRange, Transform
from monai.transforms import ScaleIntensityRangePercentiles as _MonaiPercentiles
from monai.transforms import ScaleIntensityRangePercentilesd as _MonaiPercentilesd
from monai.utils import convert_to_tensor

from monaifrac.io import from_monai_frame, write_png
from monaifrac.visualize import overlay


def _plain(x: torch.Tensor) -> torch.Tensor:
    """The tensor's data without MONAI's metadata: each operation on a MetaTensor also copies its metadata
    (about 40 µs a call under cProfile, ``scripts/bench_infer.py --profile``: ``inference.json`` made 81 such
    calls a film before these transforms used this)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class SaveOverlay(Transform):
    """Write an overlay PNG of a film and its label map, at the film's own width × height.

    Args:
        output_dir: folder of the PNGs.
        postfix: appended to the film's stem: ``<stem><postfix>.png``.

    ``__call__(image, label, stem)``: image (1, W, H) and label (1, W, H) or (W, H) in the
    MONAI frame; returns the path written. Written atomically.
    """

    def __init__(self, output_dir: str | Path, postfix: str = "_overlay"):
        self.output_dir = Path(output_dir)
        self.postfix = postfix

    def __call__(self, image, label, stem: str) -> Path:
        img = _numpy(image)
        lab = _numpy(label)
        img = img[0] if img.ndim == 3 else img
        lab = lab[0] if lab.ndim == 3 else lab
        path = self.output_dir / f"{stem}{self.postfix}.png"
        write_png(path, overlay(from_monai_frame(img), from_monai_frame(lab.astype(np.uint8))))
        return path


class SaveOverlayd(MapTransform):
    """Dictionary form of :class:`SaveOverlay`: reads ``image_key`` and ``keys`` (the label map);
    the stem comes from the image's ``filename_or_obj`` metadata."""

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | Path = "./",
                 postfix: str = "_overlay", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.saver = SaveOverlay(output_dir, postfix)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = d[self.image_key]
        meta = getattr(image, "meta", {}) or {}
        source = meta.get("filename_or_obj", "film")
        stem = film_stem(source)
        for key in self.key_iterator(d):
            self.saver(image, d[key], stem)
        return d


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
    FracAtlas folders fell from 4.14 to 3.51 GiB, ``scripts/bench_train_memory.py``) and scales each
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


class UntrackedCompose(Compose):
    """A ``Compose`` whose transforms run on plain tensors, without MONAI's metadata tracking.

    Training's random transforms need the pixels only. Under tracking every crop, flip, rotation
    and zoom also records its operation, updates the affine and copies the metadata, and on this
    project's CPU that bookkeeping cost more than the pixel work: untracked, the DataLoader workers
    of ``train.json`` used 0.07 cores instead of 0.13 and the trainer waited 4 ms an iteration for
    data instead of 35 (``scripts/bench_train.py``, bf16). The batches it yields are plain
    ``torch.Tensor``s (cheaper to collate and to hand from a worker to the trainer) and cannot be
    inverted.

    MONAI's switch (``monai.data.set_track_meta``) is process-wide: it is off only while this
    ``Compose`` runs and restored after, also on error. ``CacheDataset`` stops caching at the
    first random transform, and a ``Compose`` counts as one, so the cached part before it keeps
    its metadata.
    """

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        finally:
            set_track_meta(tracking)


class ArgMax(Transform):
    """Label map of a network output: the index of the largest channel at each pixel.

    The same result as MONAI's ``AsDiscrete(argmax=True)`` (the first channel on ties), computed
    with ``torch.max(dim=0).indices``: on a CPU torch 2.13's ``argmax`` over the leading
    channel dim of a (3, 454, 373) output takes about 13 ms, ``max`` under 1 ms (cProfile of an
    ``inference.json`` run, where the argmax cost a fifth of a film's time).

    Args:
        dtype: dtype of the label map (``torch.uint8`` for a file, the default int64 for
            ``AsDiscreted(to_onehot=...)``).
        dim: the channel dim: 0 for one film (C, *spatial), 1 for a batch (B, C, *spatial).

    ``__call__(pred)``: pred (C, *spatial) logits or probabilities → (1, *spatial) labels
    ((B, 1, *spatial) with ``dim=1``), a MetaTensor where pred is one.
    """

    def __init__(self, dtype: torch.dtype = torch.int64, dim: int = 0):
        self.dtype = dtype
        self.dim = dim

    def __call__(self, pred):
        x = _plain(torch.as_tensor(pred))
        labels = x.max(dim=self.dim, keepdim=True).indices.to(self.dtype)
        # the metadata is copied once (SaveImaged reads the film's name from it), not once per operation
        return MetaTensor(labels, meta=pred.meta, applied_operations=pred.applied_operations) if isinstance(
            pred, MetaTensor) else labels


class ArgMaxd(MapTransform):
    """Dictionary form of :class:`ArgMax`."""

    def __init__(self, keys: KeysCollection, dtype: torch.dtype = torch.int64, dim: int = 0,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.argmax = ArgMax(dtype, dim)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.argmax(d[key])
        return d


class FractureScore(Transform):
    """How sure the network is that a film shows a fracture: a number in [0, 1].

    The mean of the ``min_area`` highest fracture probabilities of the film: a maximum that
    a single noisy pixel cannot set, since ``min_area`` pixels must agree. Fractures in
    FracAtlas cover 60 px at the smallest (0.03 % of a 373×454 film), so the default of 16
    pixels never asks for more than a real fracture has.

    Args:
        class_index: channel of the fracture class.
        min_area: number of pixels averaged.
        softmax: apply a softmax over channels first (the input is logits).

    ``__call__(pred)``: pred (C, *spatial) logits or probabilities → float.
    """

    def __init__(self, class_index: int = 2, min_area: int = 16, softmax: bool = True):
        if min_area < 1:
            raise ValueError(f"min_area must be at least 1, got {min_area}")
        self.class_index = class_index
        self.min_area = min_area
        self.softmax = softmax

    def __call__(self, pred) -> float:
        x = _plain(torch.as_tensor(pred)).float()
        prob = torch.softmax(x, dim=0)[self.class_index] if self.softmax else x[self.class_index]
        flat = prob.flatten()
        k = min(self.min_area, flat.numel())
        return float(torch.topk(flat, k).values.mean())


_LOGIT_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(max(float(p), _LOGIT_EPS), 1.0 - _LOGIT_EPS)
    return float(np.log(p / (1.0 - p)))


def fuse_presence(head: float, mask: float, fusion: Sequence[float]) -> float:
    """One calibrated probability that a film is fractured from two pieces of evidence.

    ``sigmoid(a * logit(head) + b * logit(mask) + c)`` with ``fusion = (a, b, c)``: a logistic
    regression on the presence output's probability (``head``) and the mask's
    :class:`FractureScore` (``mask``), fitted on validation films by
    :func:`monaifrac.evaluation.stats.fit_presence_fusion`. Logits are clipped at 1e-6 from 0 and 1.
    """
    a, b, c = (float(v) for v in fusion)
    z = a * _logit(head) + b * _logit(mask) + c
    return float(1.0 / (1.0 + np.exp(-z)))


class FractureScored(MapTransform):
    """Dictionary form of :class:`FractureScore`: reads ``keys`` (the network output, before
    ``AsDiscreted``) and stores the score under ``score_key`` as a float.

    Where the item also holds the presence output's probability (``presence_key``, set by
    :class:`SplitPresenced`) and ``fusion`` is given, ``score_key`` gets :func:`fuse_presence` of
    the two, and the mask's own score is kept under ``mask_score_key``.
    """

    def __init__(self, keys: KeysCollection, score_key: str = "fracture_score", class_index: int = 2,
                 min_area: int = 16, softmax: bool = True, presence_key: str = "presence_score",
                 fusion: Sequence[float] | None = None, mask_score_key: str = "mask_score",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if fusion is not None and len(fusion) != 3:
            raise ValueError(f"fusion is (a, b, c) of fuse_presence, got {fusion}")
        self.score_key = score_key
        self.presence_key = presence_key
        self.fusion = None if fusion is None else [float(v) for v in fusion]
        self.mask_score_key = mask_score_key
        self.scorer = FractureScore(class_index, min_area, softmax)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = self.scorer(d[key])
            d[self.mask_score_key] = mask
            head = d.get(self.presence_key)
            d[self.score_key] = mask if head is None or self.fusion is None else \
                fuse_presence(float(head), mask, self.fusion)
        return d


class SplitPresence(Transform):
    """Take a network's presence channel off its output.

    :class:`monaifrac.networks.PresenceFlexibleUNet` returns the segmentation logits followed by
    one channel holding the logit of "this film shows a fracture", constant over the film. This
    returns the segmentation part and the presence probability (sigmoid of the channel's mean:
    after a sliding window or flip averaging the channel is still that logit, averaged). An
    output of exactly ``num_classes`` channels (a network without the head) passes unchanged,
    with presence None.

    Args:
        num_classes: segmentation channels.
        dim: the channel dim: 0 for one film (C, *spatial), 1 for a batch (B, C, *spatial).

    ``__call__(pred)`` → (pred with ``num_classes`` channels, presence): a float for one film,
    a (B,) tensor for a batch, or None.
    """

    def __init__(self, num_classes: int = 3, dim: int = 0):
        self.num_classes = num_classes
        self.dim = dim

    def __call__(self, pred):
        if pred.shape[self.dim] <= self.num_classes:
            return pred, None
        seg = pred.narrow(self.dim, 0, self.num_classes)
        logit = _plain(pred).narrow(self.dim, self.num_classes, 1).float()
        prob = torch.sigmoid(logit.flatten(self.dim).mean(dim=-1))
        return seg, (float(prob) if self.dim == 0 else prob.flatten())


class SplitPresenced(MapTransform):
    """Dictionary form of :class:`SplitPresence`: ``keys`` keep the segmentation channels, the
    presence probability goes to ``presence_key`` (nothing is stored for a network without it)."""

    def __init__(self, keys: KeysCollection, presence_key: str = "presence_score", num_classes: int = 3,
                 dim: int = 0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.presence_key = presence_key
        self.splitter = SplitPresence(num_classes, dim)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], presence = self.splitter(d[key])
            if presence is not None:
                d[self.presence_key] = presence
        return d


class GateFracture(Transform):
    """Remove the fracture class from a film whose presence score is below ``threshold``.

    A film called normal then gets no fracture pixel: its fracture logits are set to the lowest
    value, so each pixel goes to the better of the other classes (a fracture lies on bone, and
    its pixels mostly become bone). Applied to the network output, between
    :class:`FractureScored` and :class:`ArgMaxd`.

    Args:
        threshold: presence threshold (the bundle's ``presence_threshold``).
        class_index: channel of the fracture class.

    ``__call__(pred, score)``: pred (C, *spatial) logits, score a float → pred, changed only
    where ``score < threshold``.
    """

    def __init__(self, threshold: float, class_index: int = 2):
        self.threshold = float(threshold)
        self.class_index = class_index

    def __call__(self, pred, score: float):
        if float(score) >= self.threshold:
            return pred
        out = pred.clone()
        out[self.class_index] = torch.finfo(out.dtype).min if out.is_floating_point() else 0
        return out


class GateFractured(MapTransform):
    """Dictionary form of :class:`GateFracture`: the score comes from ``score_key``."""

    def __init__(self, keys: KeysCollection, threshold: float, score_key: str = "fracture_score",
                 class_index: int = 2, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.score_key = score_key
        self.gate = GateFracture(threshold, class_index)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.gate(d[key], d[self.score_key])
        return d


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


def film_stem(path) -> str:
    """A film's id from its path: the file name less its film suffix (``.nii.gz`` whole)."""
    name = Path(str(path[0] if isinstance(path, (list, tuple)) else path)).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".jpeg", ".jpg", ".png", ".bmp", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


__all__: Sequence[str] = ("ScaleIntensityRangePercentiles", "ScaleIntensityRangePercentilesd", "ArgMax", "ArgMaxd", "SaveOverlay", "SaveOverlayd", "FractureScore", "FractureScored",
                          "fuse_presence", "long_side_shape", "GateFracture", "GateFractured", "SplitPresence", "SplitPresenced", "LimitLongSide", "LimitLongSided")
