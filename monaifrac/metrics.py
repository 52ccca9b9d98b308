"""Per-class segmentation metrics with every empty-mask case scored explicitly.

A fracture covers ~0.25 % of a film and 60 % of films have none, so empty masks are the
common case, not an edge case. MONAI's defaults turn them into NaN and average them away;
here each case has a written-down score instead.

Per film (``dice_mean``, ``iou_mean``, ``dice_pos``, ``hd95``):

========================  ==================  ============  ===================
ground truth / prediction  dice_mean, iou_mean  dice_pos      hd95
========================  ==================  ============  ===================
both non-empty             the overlap         the overlap   95th-percentile
                                                             surface distance
both empty                 1 (correct "none")  not counted   0
empty / non-empty          0 (false alarm)     not counted   miss penalty
non-empty / empty          0 (miss)            0             miss penalty
========================  ==================  ============  ===================

Pooled over films (``dice``, ``iou``, ``precision``, ``recall``): overlaps, predicted and true pixels are summed over
all films first, then ``2·ΣTP / (ΣP + ΣT)`` (Dice), ``ΣTP / Σ(P ∪ T)`` (IoU), ``ΣTP / ΣP``
(precision) or ``ΣTP / ΣT`` (recall). Empty-empty
films add nothing, misses add to ΣT, false alarms to ΣP, so predicting "no fracture" on
every film scores 0, whereas ``dice_mean`` would reward it with the share of fracture-free
films. That is why pooled fracture Dice is the bundle's key metric. With no pixel of the
class anywhere (ΣP + ΣT = 0) it is 1.

* ``dice_pos`` is the mean Dice over films whose ground truth *has* the class: how well a
  present fracture is outlined. Films without the class are excluded by design, and the
  count of films it covers is kept in :attr:`ClassMetric.last_count`; with no such film it
  is 0, never NaN.
* HD95 is in pixels (prepared films have 1 mm nominal pixels; FracAtlas films carry no
  spacing). A miss or false alarm costs the film's diagonal, the largest distance possible
  on it, so an average can never hide them.

Inputs are one-hot (or binarised) tensors of shape (B, C, *spatial), as MONAI metrics take.
"""

from __future__ import annotations

import math
import warnings

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.hausdorff_distance import compute_hausdorff_distance

METRICS = ("dice", "iou", "precision", "recall", "dice_mean", "iou_mean", "dice_pos", "hd95")
POOLED = ("dice", "iou", "precision", "recall")


def _overlap(pred: torch.Tensor, truth: torch.Tensor, kind: str) -> float:
    p, t = pred.bool(), truth.bool()
    inter = (p & t).sum().item()
    if kind == "iou":
        union = (p | t).sum().item()
        return 1.0 if union == 0 else inter / union
    total = p.sum().item() + t.sum().item()
    return 1.0 if total == 0 else 2.0 * inter / total


def counts(pred: torch.Tensor, truth: torch.Tensor, kind: str) -> tuple[float, float]:
    """Numerator and denominator of a pooled metric for one film: (2·TP, P+T) for Dice,
    (TP, |P ∪ T|) for IoU, (TP, P) for precision, (TP, T) for recall."""
    p, t = pred.bool(), truth.bool()
    inter = float((p & t).sum().item())
    if kind == "iou":
        return inter, float((p | t).sum().item())
    if kind == "precision":
        return inter, float(p.sum().item())
    if kind == "recall":
        return inter, float(t.sum().item())
    return 2.0 * inter, float(p.sum().item() + t.sum().item())


def pooled(pairs) -> float:
    """A pooled metric from per-film (numerator, denominator) pairs of :func:`counts`:
    ``Σnum / Σden``, and 1 when the denominator is 0 (no pixel of the class anywhere, or for
    precision no predicted pixel)."""
    num = sum(float(n) for n, _ in pairs)
    den = sum(float(d) for _, d in pairs)
    return num / den if den > 0 else 1.0


def score(pred: torch.Tensor, truth: torch.Tensor, kind: str) -> float:
    """One film, one class, a per-film metric: ``pred`` and ``truth`` are binary masks (*spatial)."""
    if kind not in METRICS or kind in POOLED:
        raise ValueError(f"unknown per-film metric {kind!r}; choose from {[m for m in METRICS if m not in POOLED]}")
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if kind == "dice_pos":
        return float("nan") if not has_t else _overlap(pred, truth, "dice")
    if kind in ("dice_mean", "iou_mean"):
        return _overlap(pred, truth, kind[:3])
    if not has_p and not has_t:
        return 0.0
    if has_p != has_t:
        return miss_penalty(truth.shape)
    with warnings.catch_warnings():
        # monai 1.6 warns about its own internal use of a deprecated get_mask_edges argument, once per call
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        hd = compute_hausdorff_distance(pred[None, None].float(), truth[None, None].float(), include_background=True,
                                        percentile=95)
    return float(hd.item())


def miss_penalty(spatial_shape) -> float:
    """The diagonal of the film in pixels: the HD95 charged for a miss or a false alarm."""
    return float(math.sqrt(sum(int(s) ** 2 for s in spatial_shape)))


class ClassMetric(CumulativeIterationMetric):
    """One metric for one class; aggregates with no NaN.

    Args:
        metric: one of :data:`METRICS` (see the module docstring).
        class_index: channel of the one-hot tensors (1 bone, 2 fracture).

    Use it through ``monai.handlers.IgniteMetricHandler(metric_fn=ClassMetric(...))`` so it
    is logged like any MONAI metric; per-film values (the buffer) go to ``MetricsSaver``.
    For ``dice_pos`` the buffer holds NaN for films without the class, which ``aggregate``
    excludes on purpose and counts in :attr:`last_count`. For the pooled metrics the buffer
    holds each film's (numerator, denominator).
    """

    def __init__(self, metric: str = "dice", class_index: int = 2):
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
        self.metric = metric
        self.class_index = class_index
        self.last_count = 0

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None):  # type: ignore[override]
        if y is None:
            raise ValueError("ClassMetric needs ground truth")
        if y_pred.shape != y.shape:
            raise ValueError(f"prediction {tuple(y_pred.shape)} and label {tuple(y.shape)} differ in shape")
        pred, truth = y_pred[:, self.class_index] > 0.5, y[:, self.class_index] > 0.5
        if self.metric in POOLED:
            pairs = [counts(pred[b], truth[b], self.metric) for b in range(pred.shape[0])]
            return torch.tensor(pairs, dtype=torch.float64).reshape(-1, 2)
        values = [score(pred[b], truth[b], self.metric) for b in range(pred.shape[0])]
        return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)

    def aggregate(self):  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            self.last_count = 0
            return torch.tensor(0.0)
        if self.metric in POOLED:
            self.last_count = int(data.shape[0])
            return torch.tensor(pooled(data.tolist()), dtype=torch.float32)
        values = data.flatten()
        counted = values[~torch.isnan(values)]
        self.last_count = int(counted.numel())
        return counted.mean() if counted.numel() else torch.tensor(0.0)


CLASS_INDEX = {"bone": 1, "fracture": 2}


def metric_handlers(prefix: str, names, save_details: bool = True) -> dict:
    """Ignite metric handlers by name, for a bundle's ``key_metric`` / ``additional_metrics``.

    Args:
        prefix: ``val`` or ``train``; the handler names become ``<prefix>_<name>``.
        names: ``<class>_<metric>`` strings, e.g. ``["fracture_dice", "bone_hd95"]``; class
            is ``bone`` or ``fracture``, metric one of :data:`METRICS`.
        save_details: keep per-film values for ``MetricsSaver``.

    Returns:
        ``{"<prefix>_<name>": IgniteMetricHandler(ClassMetric(...))}``, reading ``pred`` and
        ``label`` (one-hot) from the engine output.
    """
    from monai.handlers import IgniteMetricHandler, from_engine

    handlers = {}
    for name in [names] if isinstance(names, str) else names:
        cls, _, kind = name.partition("_")
        if cls not in CLASS_INDEX or kind not in METRICS:
            raise ValueError(f"metric name {name!r} is not <class>_<metric> with class in {sorted(CLASS_INDEX)} "
                             f"and metric in {METRICS}")
        handlers[f"{prefix}_{name}"] = IgniteMetricHandler(
            metric_fn=ClassMetric(kind, CLASS_INDEX[cls]),
            output_transform=from_engine(["pred", "label"]),
            save_details=save_details,
        )
    return handlers
