"""monaifrac.metrics: every row of the empty-mask table, pooled metrics, aggregation without NaN.

All expected values are worked out by hand in the comments, not taken from a run.
"""

from __future__ import annotations

import math

import pytest
import torch

from monaifrac.metrics import METRICS, ClassMetric, counts, metric_handlers, miss_penalty, score

H, W = 6, 8  # diagonal sqrt(36 + 64) = 10


def empty(h: int = H, w: int = W) -> torch.Tensor:
    return torch.zeros(h, w, dtype=torch.bool)


def box(r0: int, r1: int, c0: int, c1: int, h: int = H, w: int = W) -> torch.Tensor:
    m = empty(h, w)
    m[r0:r1, c0:c1] = True
    return m


def one_hot(*masks: torch.Tensor, class_index: int = 2, channels: int = 3) -> torch.Tensor:
    """(B, C, H, W) float one-hot batch whose channel ``class_index`` holds the given masks."""
    out = torch.zeros(len(masks), channels, *masks[0].shape)
    for b, m in enumerate(masks):
        out[b, class_index] = m.float()
        out[b, 0] = (~m).float()
    return out


# ----------------------------------------------------------------------------- per film, the table


def test_both_empty_is_a_correct_none():
    p, t = empty(), empty()
    assert score(p, t, "dice_mean") == 1.0
    assert score(p, t, "iou_mean") == 1.0
    assert score(p, t, "hd95") == 0.0
    assert math.isnan(score(p, t, "dice_pos"))  # not counted (aggregate leaves NaN out)
    assert counts(p, t, "dice") == (0.0, 0.0) and counts(p, t, "iou") == (0.0, 0.0)  # adds nothing when pooled


def test_miss_scores_zero_and_the_diagonal():
    p, t = empty(), box(1, 3, 2, 5)  # 6 true pixels, none predicted
    assert miss_penalty((H, W)) == 10.0
    assert score(p, t, "dice_mean") == 0.0
    assert score(p, t, "iou_mean") == 0.0
    assert score(p, t, "dice_pos") == 0.0  # a present fracture outlined with nothing
    assert score(p, t, "hd95") == 10.0
    assert counts(p, t, "dice") == (0.0, 6.0)  # adds to the true total


def test_false_alarm_scores_zero_and_the_diagonal():
    p, t = box(0, 2, 0, 2), empty()  # 4 predicted pixels on a film without fracture
    assert score(p, t, "dice_mean") == 0.0
    assert score(p, t, "iou_mean") == 0.0
    assert math.isnan(score(p, t, "dice_pos"))  # not counted
    assert score(p, t, "hd95") == 10.0
    assert counts(p, t, "dice") == (0.0, 4.0) and counts(p, t, "iou") == (0.0, 4.0)


def test_overlap_of_two_squares():
    # two 4x4 squares, columns 2-5 and 4-7, rows 4-7 of a 12x12 film: they share a 4x2 block
    p, t = box(4, 8, 2, 6, 12, 12), box(4, 8, 4, 8, 12, 12)
    assert score(p, t, "dice_mean") == 0.5  # 2*8 / (16 + 16)
    assert score(p, t, "dice_pos") == 0.5
    assert score(p, t, "iou_mean") == pytest.approx(1 / 3)  # 8 / 24
    # edge pixels (the square minus its 2x2 core) of one square lie 0, 1 or 2 pixels from the
    # other's: four each; the 95th percentile of (0,0,0,0,1,1,1,1,2,2,2,2) is 2, both ways
    assert score(p, t, "hd95") == pytest.approx(2.0)
    assert counts(p, t, "dice") == (16.0, 32.0) and counts(p, t, "iou") == (8.0, 24.0)


def test_identical_masks():
    m = box(1, 4, 1, 6)
    assert score(m, m, "dice_mean") == score(m, m, "iou_mean") == score(m, m, "dice_pos") == 1.0
    assert score(m, m, "hd95") == 0.0


def test_score_rejects_pooled_and_unknown_metrics():
    for kind in ("dice", "iou", "hd100", ""):
        with pytest.raises(ValueError):
            score(empty(), empty(), kind)


# ----------------------------------------------------------------------------- over films


def batch_of_four():
    """Four films and their fracture masks; by hand:

    film  pred  truth  TP  case
    0     4     4      2   overlap (2x2 boxes sharing a column)  dice 2*2/8 = 0.5, IoU 2/6
    1     0     6      0   miss
    2     3     0      0   false alarm
    3     0     0      0   both empty
    """
    preds = [box(0, 2, 0, 2), empty(), box(0, 1, 0, 3), empty()]
    truths = [box(0, 2, 1, 3), box(2, 4, 0, 3), empty(), empty()]
    return one_hot(*preds), one_hot(*truths)


def aggregate(metric: str, pred: torch.Tensor, truth: torch.Tensor, split: int = 2) -> ClassMetric:
    """Feed the batch in two iterations, as an evaluator does, and aggregate."""
    m = ClassMetric(metric, class_index=2)
    m(pred[:split], truth[:split])
    m(pred[split:], truth[split:])
    m.value = float(m.aggregate())
    return m


def test_pooled_dice_and_iou_over_a_batch():
    pred, truth = batch_of_four()
    # Dice: 2*ΣTP / (ΣP + ΣT) = 2*2 / ((4+0+3+0) + (4+6+0+0)) = 4/17
    assert aggregate("dice", pred, truth).value == pytest.approx(4 / 17)
    # IoU: ΣTP / Σ|P ∪ T| = 2 / (6 + 6 + 3 + 0) = 2/15
    assert aggregate("iou", pred, truth).value == pytest.approx(2 / 15)


def test_per_film_means_over_a_batch():
    pred, truth = batch_of_four()
    assert aggregate("dice_mean", pred, truth).value == pytest.approx((0.5 + 0 + 0 + 1) / 4)
    assert aggregate("iou_mean", pred, truth).value == pytest.approx((1 / 3 + 0 + 0 + 1) / 4)
    # film 0: two 2x2 squares one column apart, every pixel an edge pixel at distance 0 or 1
    # (two each), 95th percentile 1; then miss 10, false alarm 10, both empty 0
    assert aggregate("hd95", pred, truth).value == pytest.approx((1 + 10 + 10 + 0) / 4)


def test_dice_pos_leaves_out_films_without_fracture_and_counts_the_others():
    pred, truth = batch_of_four()
    m = aggregate("dice_pos", pred, truth)
    assert m.value == pytest.approx((0.5 + 0.0) / 2)  # films 0 and 1 have a fracture
    assert m.last_count == 2
    assert aggregate("dice", pred, truth).last_count == 4  # pooled metrics count every film


def test_predicting_nothing_scores_zero_pooled_but_the_empty_share_per_film():
    truths = [box(0, 2, 0, 2), empty(), box(3, 5, 3, 6), empty(), empty()]  # 3 of 5 films without fracture
    truth = one_hot(*truths)
    nothing = one_hot(*[empty()] * 5)
    assert aggregate("dice", nothing, truth).value == 0.0
    assert aggregate("dice_mean", nothing, truth).value == pytest.approx(3 / 5)
    assert aggregate("dice_pos", nothing, truth).value == 0.0


def test_aggregates_are_never_nan():
    no_fracture = one_hot(empty(), empty())
    for metric in METRICS:
        m = aggregate(metric, no_fracture, no_fracture, split=1)
        assert not math.isnan(m.value), metric
    # no pixel of the class anywhere: pooled metrics are 1 (nothing to find, nothing found)
    assert aggregate("dice", no_fracture, no_fracture, split=1).value == 1.0
    # dice_pos with no fractured film is 0 and covers no film
    m = aggregate("dice_pos", no_fracture, no_fracture, split=1)
    assert m.value == 0.0 and m.last_count == 0
    # nothing fed at all
    for metric in METRICS:
        fresh = ClassMetric(metric)
        value = float(fresh.aggregate())
        assert value == 0.0 and fresh.last_count == 0, metric


def test_class_index_selects_the_channel():
    bone = one_hot(box(0, 2, 0, 4), class_index=1)
    fracture = one_hot(box(0, 2, 0, 4), class_index=2)
    m = ClassMetric("dice", class_index=1)
    m(bone, bone)
    assert float(m.aggregate()) == 1.0
    m = ClassMetric("dice", class_index=1)
    m(fracture, bone)  # the prediction has no bone
    assert float(m.aggregate()) == 0.0


def test_class_metric_checks_its_inputs():
    with pytest.raises(ValueError):
        ClassMetric("dice_median")
    m = ClassMetric("dice")
    with pytest.raises(ValueError, match="differ in shape"):
        m(one_hot(empty()), one_hot(empty(4, 4)))


# ----------------------------------------------------------------------------- handlers by name


def test_metric_handlers_by_name():
    from monai.handlers import IgniteMetricHandler

    handlers = metric_handlers("val", ["fracture_dice", "bone_hd95", "fracture_dice_pos"], save_details=False)
    assert list(handlers) == ["val_fracture_dice", "val_bone_hd95", "val_fracture_dice_pos"]
    assert all(isinstance(h, IgniteMetricHandler) for h in handlers.values())
    fn = handlers["val_bone_hd95"].metric_fn
    assert (fn.metric, fn.class_index) == ("hd95", 1)
    fn = handlers["val_fracture_dice_pos"].metric_fn
    assert (fn.metric, fn.class_index) == ("dice_pos", 2)
    assert list(metric_handlers("train", "fracture_dice")) == ["train_fracture_dice"]  # one name as a string


@pytest.mark.parametrize("name", ["lung_dice", "fracture_dcie", "fracturedice", "fracture", "dice", "bone_hd99"])
def test_metric_handlers_rejects_bad_names(name):
    with pytest.raises(ValueError, match="<class>_<metric>"):
        metric_handlers("val", [name])


def test_metric_handler_in_an_ignite_engine():
    """The handler reads ``pred``/``label`` from the engine output and names the metric."""
    from ignite.engine import Engine

    pred, truth = batch_of_four()
    batches = [[{"pred": pred[i], "label": truth[i]} for i in range(b, b + 2)] for b in (0, 2)]
    engine = Engine(lambda e, batch: batch)
    for name, handler in metric_handlers("val", ["fracture_dice", "fracture_dice_mean"]).items():
        handler.attach(engine, name)
    engine.run(batches)
    assert engine.state.metrics["val_fracture_dice"] == pytest.approx(4 / 17)
    assert engine.state.metrics["val_fracture_dice_mean"] == pytest.approx(1.5 / 4)
