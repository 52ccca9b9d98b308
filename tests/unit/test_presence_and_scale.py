"""The presence channel's way through training and inference (SplitPresence, PresenceLoss), the
common film scale (LimitLongSide in training, WholeFilmInferer's max_side at inference) and the
sampler of whole-film epochs."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.losses import DiceFocalLoss
from monai.transforms import Resize

from monaifrac.inferers import AveragingInferer, WholeFilmInferer, at_scale
from monaifrac.losses import PresenceLoss
from monaifrac.samplers import FracturedAndNormalsSampler
from monaifrac.transforms import (LimitLongSide, LimitLongSided, SplitPresence, SplitPresenced, film_shape,
                                  network_side, scaled_crop)


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


def test_limit_long_side_reduce_only_leaves_the_enlarging_to_a_second_pass():
    """``reduce_only`` (training's cache) reduces a scan straight to the film scale and keeps a film the scale
    would enlarge as stored; the second pass enlarges that film and leaves the scan, already at its shape."""
    film, scan = torch.rand(1, 454, 373), torch.rand(1, 2304, 1800)
    cache, draw = LimitLongSide(480, 454, scale=1.5, reduce_only=True), LimitLongSide(480, 454, scale=1.5)
    assert cache(film) is film
    cached_scan = cache(scan)
    assert tuple(cached_scan.shape) == (1, 681, round(1800 * 681 / 2304))
    assert draw(cached_scan) is cached_scan  # already at the shape the network sees
    assert torch.equal(draw(cache(film)), draw(film)) and tuple(draw(film).shape) == (1, 681, 560)


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



def test_film_scale_enlarges_films_and_brings_scans_to_the_scaled_common_side():
    assert film_shape((454, 373), 1.0) is None  # 1x: a film as stored
    assert film_shape((454, 373), 1.5) == [681, 560]
    assert film_shape((2880, 2304), 1.5) == [681, 545]  # a scan: 454 px long side, then x1.5
    assert film_shape((2880, 2304), 1.0) == [454, 363]
    assert film_shape((454, 373), 2.0, max_side=None) == [908, 746]
    assert network_side(480, 1.0) == 480 and network_side(480, 1.5) == 736  # 720 up to /32
    # training at 1.5x: crops of the side a whole film has at 1x (a step costs what a 1x film does); at 1x the film
    assert scaled_crop(480, 1.5) == [480, 480] and scaled_crop(192, 2.0) == [192, 192]
    assert scaled_crop(200, 1.5) == [224, 224]  # 200 up to /32
    assert scaled_crop(480, 1.0) is None and scaled_crop(480, 0.75) is None
    with pytest.raises(ValueError, match="scale"):
        LimitLongSide(480, 454, scale=0)


def test_limit_long_side_at_film_scale_enlarges_film_and_label_alike():
    film = torch.zeros(1, 40, 30, dtype=torch.uint8)
    film[:, 10:20, 10:20] = 200
    label = (film > 0).to(torch.uint8) * 2
    d = LimitLongSided(["image", "label"], 480, 454, mode=["area", "nearest"], scale=1.5)(
        {"image": film, "label": label})
    assert d["image"].shape == (1, 60, 45) and d["image"].dtype == torch.uint8
    assert set(torch.unique(d["label"]).tolist()) == {0, 2}  # nearest: no new label value
    assert int((d["label"] == 2).sum()) == 15 * 15  # the 10 x 10 square, 1.5x on each side
    inside = d["image"][0][d["label"][0] == 2]
    assert int(inside.min()) > 100  # bilinear, not a block average bleeding the edge into the square


def test_whole_film_inferer_at_film_scale_runs_the_network_on_the_enlarged_film():
    inferer = WholeFilmInferer(divisor=32, max_side=480, side=454, scale=1.5)
    net = Probe()
    film = torch.linspace(0, 1, 454).view(1, 1, -1, 1) * torch.linspace(0.5, 1, 373).view(1, 1, 1, -1)
    out = inferer(film, net)
    assert net.seen[-1] == (704, 576)  # 681 x 560, padded to /32
    assert out.shape == (1, 3, 454, 373)  # the label map comes back at the film's own size
    torch.testing.assert_close(out[:, 1:2], film, atol=0.01, rtol=0)  # enlarged and reduced again
    scan = torch.rand(1, 1, 2880, 2304)
    assert inferer(scan, net).shape == (1, 3, 2880, 2304) and net.seen[-1] == (704, 576)


def test_multi_scale_tta_averages_the_film_seen_at_each_scale():
    base = WholeFilmInferer(divisor=32, max_side=480, side=454)
    extra = at_scale(base, [1.0, 1.5])
    assert [i.scale for i in extra] == [1.5] and base.scale == 1.0  # the main scale is not run twice
    net = Probe()
    film = torch.rand(1, 1, 454, 373)
    out = AveragingInferer(base, scale_inferers=extra)(film, net)
    assert net.seen == [(480, 384), (704, 576)] and out.shape == (1, 3, 454, 373)
    # the mean of the two passes' probabilities, each pass at the film's own size
    passes = [base(film, Probe()), extra[0](film, Probe())]
    mean = sum(torch.softmax(p[:, :3], dim=1) for p in passes) / 2
    torch.testing.assert_close(torch.softmax(out[:, :3], dim=1), mean, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="whole-film inferer"):
        at_scale(object(), [1.5])

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


def test_sampler_draws_films_with_small_fractures_more_often():
    data = [{"id": f"f{i}", "fractured": True, "fracture_fraction": 0.001 * (i + 1)} for i in range(6)] + \
        [{"id": f"n{i}", "fractured": False, "fracture_fraction": 0.0} for i in range(20)]
    sampler = FracturedAndNormalsSampler(data, 1.0, torch.Generator().manual_seed(0), small_fraction=0.0035,
                                         small_repeats=3)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 6 + 3 * 2 + 6  # the three films under 0.35 % twice more; 6 normals
    counts = {i: drawn.count(i) for i in range(6)}
    assert counts == {0: 3, 1: 3, 2: 3, 3: 1, 4: 1, 5: 1}
    assert len(list(FracturedAndNormalsSampler(data, 1.0))) == 12  # off by default
    with pytest.raises(ValueError, match="prepare the dataset again"):
        FracturedAndNormalsSampler([{"id": "f", "fractured": True}], small_fraction=0.01)

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
