"""Post-processing of a network's output: presence channel, fracture score, gating, fracture threshold, label map."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from monaifrac.transforms.utils import _plain


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


class ThresholdFracture(Transform):
    """Label a pixel fracture where its fracture probability reaches ``threshold``.

    The label map is otherwise the argmax of the classes, where a fracture pixel needs the largest
    probability of the three; a threshold below that trades false fracture pixels for found ones.
    The fracture logit is set to the highest value where ``softmax(pred)[class_index] >=
    threshold`` and to the lowest elsewhere, so that :class:`ArgMaxd` after it gives fracture there
    and the better of the other classes everywhere else. Applied to the network output, after
    :class:`GateFractured` (a gated film stays without fracture pixels) and before :class:`ArgMaxd`.

    Args:
        threshold: fracture probability in (0, 1].
        class_index: channel of the fracture class.

    ``__call__(pred)``: pred (C, *spatial) logits (or the log-probabilities of
    :class:`monaifrac.inferers.AveragingInferer`) → pred with its fracture channel replaced.
    """

    def __init__(self, threshold: float, class_index: int = 2):
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"fracture threshold must lie in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.class_index = class_index

    def __call__(self, pred):
        x = _plain(torch.as_tensor(pred))
        prob = torch.softmax(x.float(), dim=0)[self.class_index]
        info = torch.finfo(x.dtype)
        out = pred.clone()
        out[self.class_index] = torch.where(prob >= self.threshold, info.max, info.min).to(x.dtype)
        return out


class ThresholdFractured(MapTransform):
    """Dictionary form of :class:`ThresholdFracture`."""

    def __init__(self, keys: KeysCollection, threshold: float, class_index: int = 2,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.thresholder = ThresholdFracture(threshold, class_index)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.thresholder(d[key])
        return d
