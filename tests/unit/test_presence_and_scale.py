"""The presence channel's way through training and inference (SplitPresence, PresenceLoss), the
common film scale (LimitLongSide in training, WholeFilmInferer's max_side at inference) and the
sampler of whole-film epochs."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.losses import DiceFocalLoss
from monai.transforms import Resize

from monaifrac.inferers import WholeFilmInferer
from monaifrac.losses import PresenceLoss
from monaifrac.samplers import FracturedAndNormalsSampler
from monaifrac.transforms import LimitLongSide, LimitLongSided, SplitPresence, SplitPresenced


def _with_presence(seg: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) + (B,) → (B, 4, H, W), the presence network's layout."""
    return torch.cat([seg, logit.view(-1, 1, 1, 1).expand(-1, 1, *seg.shape[2:])], dim=1)


def test_split_presence_of_a_batch_and_of_a_film():
    seg = torch.randn(2, 3, 5, 7)
    pred = _with_presence(seg, torch.tensor([0.0, 2.0]))
    out, presence = SplitPresence(dim=1)(pred)
    assert torch.equal(out, seg)
    torch.testing.assert_close(presence, torch.sigmoid(torch.tensor([0.0, 2.0])))
    film, p = SplitPresence()(MetaTensor(pred[1], meta={"filename_or_obj": "a.jpg"}))
    assert isinstance(film, MetaTensor) and film.meta["filename_or_obj"] == "a.jpg"
    assert torch.equal(film.as_tensor(), seg[1]) and p == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))


def test_split_presence_leaves_a_three_channel_output_alone():
    pred = torch.randn(3, 5, 7)
    out, presence = SplitPresence()(pred)
    assert out is pred and presence is None
    d = SplitPresenced("pred")({"pred": pred})
    assert d["pred"] is pred and "presence_score" not in d


def test_presence_loss_adds_the_weighted_bce_of_the_label_s_fracture():
    torch.manual_seed(0)
    seg_loss = DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    seg = torch.randn(2, 3, 8, 8)
    label = torch.zeros(2, 1, 8, 8, dtype=torch.int64)
    label[0, 0, 2:4, 2:4] = 2  # film 0 fractured, film 1 not
    label[1, 0, 5:, 5:] = 1
    logits = torch.tensor([1.5, -0.5])
    loss = PresenceLoss(seg_loss, presence_weight=0.5)
    want_bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0]))
    got = loss(_with_presence(seg, logits), label)
    torch.testing.assert_close(got, seg_loss(seg, label) + 0.5 * want_bce)
    assert set(loss.last_terms) == {"seg", "presence"}
    torch.testing.assert_close(loss(seg, label), seg_loss(seg, label))  # no presence channel: the segmentation loss


def test_limit_long_side_shrinks_only_large_films():
    small = torch.rand(1, 454, 373)
    assert LimitLongSide(480, 454)(small) is small
    big = torch.rand(1, 2304, 1800)
    out = LimitLongSide(480, 454)(big)
    assert tuple(out.shape) == (1, 454, round(1800 * 454 / 2304))
    label = torch.zeros(1, 2304, 1800)
    label[0, 1000:1100, 800:900] = 2
    d = LimitLongSided(["image", "label"], 480, 454, mode=["area", "nearest"])({"image": big, "label": label})
    assert set(torch.unique(d["label"]).tolist()) == {0.0, 2.0}  # nearest: no new values
    with pytest.raises(ValueError, match="must not exceed"):
        LimitLongSide(400, 454)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.uint16])
def test_limit_long_side_keeps_an_integer_film_at_its_own_bit_depth(dtype):
    """A film cached at its own bit depth stays there when a scan is resampled: the float resampling, rounded."""
    top = 255 if dtype == torch.uint8 else 4095
    big = torch.randint(0, top + 1, (1, 1200, 900), dtype=torch.int32).to(dtype)
    out = LimitLongSide(480, 454)(big)
    reference = LimitLongSide(480, 454)(big.float())
    assert out.dtype == dtype and tuple(out.shape) == tuple(reference.shape)
    assert torch.equal(out.float(), reference.round())
    label = torch.zeros(1, 1200, 900, dtype=torch.uint8)
    label[0, 500:600, 400:500] = 2
    resampled = LimitLongSided("label", 480, 454, mode="nearest")({"label": label})["label"]
    assert resampled.dtype == torch.uint8 and set(torch.unique(resampled).tolist()) == {0, 2}


class Probe(torch.nn.Module):
    """Records the input shape; returns 3 channels: zeros, the input, a ramp over the first dim."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[2:]))
        ramp = torch.linspace(0, 1, x.shape[2]).view(1, 1, -1, 1).expand_as(x)
        return torch.cat([torch.zeros_like(x), x, ramp], dim=1)


def test_whole_film_inferer_sees_large_films_at_the_training_scale():
    inferer = WholeFilmInferer(divisor=32, max_side=480, side=454)
    net = Probe()
    small = torch.rand(1, 1, 454, 373)
    out = inferer(small, net)
    assert net.seen[-1] == (480, 384) and out.shape == (1, 3, 454, 373)
    torch.testing.assert_close(out[:, 1:2], small)  # within max_side: untouched
    big = MetaTensor(torch.rand(1, 1, 2304, 1800), meta={"filename_or_obj": "scan.jpg"})
    out = inferer(big, net)
    scaled = tuple(Resize(454, size_mode="longest")(torch.rand(1, 2304, 1800)).shape[1:])
    assert inferer.scaled_shape((2304, 1800)) == list(scaled)
    assert net.seen[-1] == (480, 384)  # the scaled film, padded to /32
    assert out.shape == (1, 3, 2304, 1800) and out.meta["filename_or_obj"] == "scan.jpg"
    assert float(out[0, 2, 0].mean()) < float(out[0, 2, -1].mean())  # the ramp, scaled back up
    with pytest.raises(ValueError, match="must not exceed"):
        WholeFilmInferer(max_side=400, side=454)


def _datalist(n_frac, n_norm):
    return [{"id": f"f{i}", "fractured": True} for i in range(n_frac)] + \
        [{"id": f"n{i}", "fractured": False} for i in range(n_norm)]


def test_sampler_takes_every_fractured_film_and_a_fresh_draw_of_normals():
    data = _datalist(5, 40)
    sampler = FracturedAndNormalsSampler(data, normals_per_fractured=2.0)
    assert len(sampler) == 15
    torch.manual_seed(0)
    epochs = [list(sampler) for _ in range(8)]
    for e in epochs:
        assert len(e) == len(set(e)) == 15
        assert set(range(5)) <= set(e)  # every fractured film
    normals_seen = set().union(*[set(e) - set(range(5)) for e in epochs])
    assert len(normals_seen) > 30  # draws differ between epochs
    torch.manual_seed(0)
    assert [list(sampler) for _ in range(8)] == epochs  # the global seed decides (exact resume)
    assert len(FracturedAndNormalsSampler(data, normals_per_fractured=100)) == 45  # at most all normals
    with pytest.raises(ValueError):
        FracturedAndNormalsSampler(data, normals_per_fractured=-1)


def test_sampler_visits_every_film_of_a_datalist_that_does_not_say_which_are_fractured():
    data = [{"image": f"{i}.png", "label": f"{i}_label.png"} for i in range(7)]  # MONAI Label's datastore items
    sampler = FracturedAndNormalsSampler(data)
    torch.manual_seed(0)
    assert len(sampler) == 7 and sorted(sampler) == list(range(7))


def test_averaging_inferer_averages_the_presence_channel_as_a_logit():
    from monai.inferers import SimpleInferer

    from monaifrac.inferers import AveragingInferer

    class WithPresence(torch.nn.Module):
        def forward(self, x):
            seg = torch.cat([x, 2 * x, torch.flip(x, [2])], dim=1)
            logit = x.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:]) + 1.0
            return torch.cat([seg, logit], dim=1)

    torch.manual_seed(0)
    x = torch.rand(2, 1, 6, 5)
    net = WithPresence()
    out = AveragingInferer(SimpleInferer(), flip_axes=[[2], [3]])(x, net)
    assert out.shape == (2, 4, 6, 5)
    plain = net(x)
    torch.testing.assert_close(out[:, 3], plain[:, 3])  # flips do not change a per-image logit
    probs = [torch.softmax(torch.flip(net(torch.flip(x, a)), a)[:, :3], 1) if a else torch.softmax(plain[:, :3], 1)
             for a in (None, [2], [3])]
    torch.testing.assert_close(torch.softmax(out[:, :3], 1), sum(probs) / 3)
