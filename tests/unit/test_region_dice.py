"""monaifrac.losses.region_dice_loss / WithRegionDice: each fracture region's own Dice (the small-fracture lever)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.losses import DiceFocalLoss

from monaifrac.losses import WithRegionDice, region_dice_loss

REPO = Path(__file__).resolve().parents[2]


def _target() -> torch.Tensor:
    """(1, 1, 40, 40): a 20 x 20 fracture region and a 3 x 3 one, apart; bone elsewhere in a band."""
    t = torch.zeros(1, 1, 40, 40, dtype=torch.int64)
    t[0, 0, 30:36] = 1
    t[0, 0, 2:22, 2:22] = 2
    t[0, 0, 30:33, 30:33] = 2
    return t


def _probs(fracture: torch.Tensor) -> torch.Tensor:
    """Class probabilities (1, 3, H, W) with ``fracture`` (H, W) as the fracture's, the rest background."""
    p = torch.zeros(1, 3, *fracture.shape)
    p[0, 2] = fracture
    p[0, 0] = 1 - fracture
    return p


def test_a_missed_small_region_weighs_as_much_as_the_large_one_found():
    target = _target()
    large_only = (target[0, 0] == 2).float()
    large_only[30:33, 30:33] = 0  # the small region missed
    got = region_dice_loss(_probs(large_only), target)
    assert float(got) == pytest.approx(0.5, abs=1e-4)  # (0 + 1) / 2 regions
    pooled = 1 - 2 * (large_only * (target[0, 0] == 2)).sum() / (large_only.sum() + (target[0, 0] == 2).sum())
    assert float(pooled) < 0.02  # a Dice pooled over pixels hardly sees the miss


def test_each_region_is_scored_apart_from_the_others_and_against_false_positives():
    target = _target()
    exact = (target[0, 0] == 2).float()
    assert float(region_dice_loss(_probs(exact), target)) == pytest.approx(0.0, abs=1e-4)  # the other region is no FP
    with_fp = exact.clone()
    with_fp[0:2, 30:40] = 1.0  # 20 false fracture pixels on background
    small_dice = 2 * 9 / (9 + 9 + 20)
    large_dice = 2 * 400 / (400 + 400 + 20)
    want = ((1 - small_dice) + (1 - large_dice)) / 2
    assert float(region_dice_loss(_probs(with_fp), target)) == pytest.approx(want, abs=1e-4)


def test_regions_are_pooled_over_the_batch_and_a_batch_without_one_gives_none():
    target = torch.cat([_target(), torch.zeros(1, 1, 40, 40, dtype=torch.int64)])
    probs = torch.cat([_probs((_target()[0, 0] == 2).float()), _probs(torch.full((40, 40), 0.5))])
    assert float(region_dice_loss(probs, target)) == pytest.approx(0.0, abs=1e-4)  # the normal item has no region
    assert region_dice_loss(probs[1:], target[1:]) is None


def test_with_region_dice_is_the_loss_alone_at_weight_0_and_pulls_the_small_region_up():
    torch.manual_seed(0)
    base = DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    target = _target()
    logits = torch.randn(1, 3, 40, 40, requires_grad=True)
    assert torch.equal(WithRegionDice(base, 0.0)(logits, target), base(logits, target))
    logits.grad = None
    WithRegionDice(base, 0.0)(logits, target).backward()
    base_grad = logits.grad[0, 2, 30:33, 30:33].mean().item()
    logits.grad = None
    loss = WithRegionDice(base, 1.0)(logits, target)
    want = base(logits, target) + region_dice_loss(torch.softmax(logits, 1), target)
    torch.testing.assert_close(loss, want)
    loss.backward()
    # descending the gradient raises the small region's fracture logits more with the region term
    assert logits.grad[0, 2, 30:33, 30:33].mean().item() < base_grad < 0


def test_train_json_trains_with_the_term_off_and_one_override_turns_it_on():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(REPO / "bundle" / "configs" / "train.json")
    loss = parser.get_parsed_content("seg_loss")
    assert isinstance(loss, WithRegionDice) and loss.weight == 0.0 and isinstance(loss.loss, DiceFocalLoss)
    parser["region_dice_weight"] = 0.5
    parser.parse()  # values changed after a first parse are resolved again
    assert parser.get_parsed_content("seg_loss", instantiate=True).weight == 0.5
