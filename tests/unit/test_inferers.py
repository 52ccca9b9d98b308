"""monaifrac.inferers (bf16 autocast, ensemble and flip TTA) and the presence score transform."""

from __future__ import annotations

import pickle

import pytest
import torch
from monai.inferers import SimpleInferer

from monaifrac.io import InputError
from monaifrac.inferers import AutocastInferer, AveragingInferer, load_members
from monaifrac.transforms import FractureScore, FractureScored


class Ramp(torch.nn.Module):
    """Not flip-equivariant: adds a left-to-right ramp to class 2, so flips change the output."""

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1)
        self.gain = gain

    def forward(self, x):
        ramp = torch.linspace(-2, 2, x.shape[2]).view(1, 1, -1, 1)
        out = self.conv(x)
        return torch.cat([out[:, :2], out[:, 2:] + self.gain * ramp], dim=1)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.rand(2, 1, 12, 10)


def test_passthrough_without_members_or_flips(x):
    net = Ramp()
    assert torch.equal(AveragingInferer(SimpleInferer())(x, net), net(x))


def test_flip_tta_averages_the_flipped_probabilities(x):
    net = Ramp()
    out = AveragingInferer(SimpleInferer(), flip_axes=[[2], [3]])(x, net)
    expected = (torch.softmax(net(x), 1) + torch.flip(torch.softmax(net(torch.flip(x, [2])), 1), [2])
                + torch.flip(torch.softmax(net(torch.flip(x, [3])), 1), [3])) / 3
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert not torch.allclose(out.exp(), torch.softmax(net(x), 1), atol=1e-3)  # the flips mattered
    # read as logits downstream: softmax gives the averaged probabilities back, argmax agrees
    assert torch.allclose(torch.softmax(out, 1), expected, atol=1e-6)


def test_ensemble_averages_members(x):
    torch.manual_seed(1)
    a, b = Ramp(), Ramp(gain=-1.0)
    out = AveragingInferer(SimpleInferer(), members=[b])(x, a)
    assert torch.allclose(out.exp(), (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2, atol=1e-6)


def test_flip_axes_must_be_spatial():
    with pytest.raises(ValueError, match="spatial"):
        AveragingInferer(SimpleInferer(), flip_axes=[[1]])


def test_load_members_reads_weights_only(tmp_path, x):
    net = Ramp()
    torch.save(net.state_dict(), tmp_path / "a.pt")
    torch.save({"model": net.state_dict()}, tmp_path / "full.pt")
    fresh = Ramp()
    members = load_members(fresh, [tmp_path / "a.pt", tmp_path / "full.pt"])
    assert len(members) == 2 and all(not m.training for m in members)
    for m in members:
        assert m is not fresh and torch.allclose(m(x), net(x))
    with pytest.raises(InputError, match="missing.pt"):
        load_members(fresh, [tmp_path / "missing.pt"])

    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("code ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(InputError, match="evil.pt"):
        load_members(fresh, [tmp_path / "evil.pt"])
    assert ran == []  # refused before anything ran
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt.*do not fit"):
        load_members(fresh, [tmp_path / "wrong.pt"])


def test_autocast_inferer(x, monkeypatch):
    net = Ramp()
    fp32 = net(x)
    on = AutocastInferer(SimpleInferer(), enabled=True)(x, net)
    assert on.dtype == torch.float32
    assert torch.allclose(on, fp32, atol=0.05) and not torch.equal(on, fp32)  # bf16 arithmetic, float32 out
    assert torch.equal(AutocastInferer(SimpleInferer(), enabled=False)(x, net), fp32)
    import monaifrac.inferers as inferers

    monkeypatch.setattr(inferers, "cpu_bf16_supported", lambda: False)
    assert torch.equal(AutocastInferer(SimpleInferer(), enabled="auto")(x, net), fp32)
    monkeypatch.setattr(inferers, "cpu_bf16_supported", lambda: True)
    assert not torch.equal(AutocastInferer(SimpleInferer(), enabled="auto")(x, net), fp32)
    # as the command line passes it: `--cpu_bf16 false`
    assert AutocastInferer(SimpleInferer(), enabled="false").enabled is False
    assert AutocastInferer(SimpleInferer(), enabled="True").enabled is True
    with pytest.raises(ValueError):
        AutocastInferer(SimpleInferer(), enabled="yes")


def test_fracture_score():
    prob = torch.zeros(3, 20, 20)
    prob[0] = 1.0
    prob[0, :4, :4], prob[2, :4, :4] = 0.1, 0.9  # 16 pixels at 0.9
    assert FractureScore(softmax=False)(prob) == pytest.approx(0.9)
    one = torch.zeros(3, 20, 20)
    one[2, 5, 5] = 1.0  # one confident pixel is not enough
    assert FractureScore(softmax=False)(one) == pytest.approx(1 / 16)
    assert FractureScore(softmax=False, min_area=1)(one) == pytest.approx(1.0)
    logits = torch.zeros(3, 4, 4)  # uniform: every probability 1/3
    assert FractureScored(keys="pred")({"pred": logits})["fracture_score"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        FractureScore(min_area=0)


class Identity3(torch.nn.Module):
    """(B, 1, H, W) -> (B, 3, H, W): the input in every channel; records the shapes it was run on."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x.repeat(1, 3, 1, 1)


@pytest.mark.parametrize("h,w", [(37, 45), (32, 48), (1, 17)])
def test_whole_film_pads_once_and_crops_back_exactly(h, w):
    from monaifrac.inferers import WholeFilmInferer

    x = torch.rand(2, 1, h, w)
    net = Identity3()
    out = WholeFilmInferer(divisor=16)(x, net)
    assert net.shapes == [(2, 1, -(-h // 16) * 16, -(-w // 16) * 16)]  # one pass, sides multiples of 16
    assert torch.equal(out, x.repeat(1, 3, 1, 1))  # cropped back to the film, not shifted


def test_whole_film_equals_the_network_on_the_centred_padded_film():
    from monaifrac.inferers import WholeFilmInferer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(3, 3, 3, padding=1))
    x = torch.rand(1, 1, 20, 30)  # padded to 32 x 32: 6 + 6 rows, 1 + 1 columns
    expected = net(torch.nn.functional.pad(x, (1, 1, 6, 6)))[:, :, 6:26, 1:31]
    assert torch.allclose(WholeFilmInferer()(x, net), expected, atol=1e-6)


def test_whole_film_keeps_metadata():
    from monai.data import MetaTensor

    from monaifrac.inferers import WholeFilmInferer

    x = MetaTensor(torch.rand(1, 1, 20, 30), meta={"filename_or_obj": "film.jpg"})
    out = WholeFilmInferer()(x, Identity3())
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "film.jpg" and out.shape == (1, 3, 20, 30)


def test_whole_film_hands_films_above_max_pixels_to_the_fallback():
    from monai.inferers import SlidingWindowInferer

    from monaifrac.inferers import WholeFilmInferer

    inferer = WholeFilmInferer(max_pixels=32 * 32, fallback=SlidingWindowInferer((16, 16), sw_batch_size=1))
    net = Identity3()
    inferer(torch.rand(1, 1, 32, 32), net)
    assert net.shapes == [(1, 1, 32, 32)]  # at the limit: whole
    net.shapes.clear()
    x = torch.rand(1, 1, 33, 32)  # pads to 48 x 32 > 32 x 32: windows of 16 x 16
    out = inferer(x, net)
    assert net.shapes and set(net.shapes) == {(1, 1, 16, 16)}
    assert torch.allclose(out, x.repeat(1, 3, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="fallback"):
        WholeFilmInferer(max_pixels=100)


def test_post_processing_of_a_meta_tensor_gives_monai_s_labels_and_keeps_the_film_s_metadata():
    """ArgMax and FractureScore work on the data under a MetaTensor: same numbers, metadata carried once."""
    from monai.data import MetaTensor
    from monai.transforms import AsDiscrete

    from monaifrac.transforms import ArgMax

    logits = torch.randn(3, 37, 29, generator=torch.Generator().manual_seed(0))
    pred = MetaTensor(logits.clone(), meta={"filename_or_obj": "IMG0000019.jpg"})
    labels = ArgMax(torch.uint8)(pred)
    assert isinstance(labels, MetaTensor) and labels.meta["filename_or_obj"] == "IMG0000019.jpg"
    assert labels.dtype == torch.uint8 and labels.shape == (1, 37, 29)
    assert torch.equal(labels.as_tensor().long(), AsDiscrete(argmax=True)(logits).long())
    assert type(ArgMax()(logits)) is torch.Tensor
    assert FractureScore()(pred) == FractureScore()(logits)


def test_argmax_of_a_batch_equals_the_argmax_of_each_film():
    """Training post-processes its batch whole (dim=1, no decollation): the same labels as film by film."""
    from monaifrac.transforms import ArgMax, ArgMaxd

    batch = torch.randn(4, 3, 16, 12, generator=torch.Generator().manual_seed(1))
    whole = ArgMaxd(keys="pred", dim=1)({"pred": batch})["pred"]
    assert whole.shape == (4, 1, 16, 12)
    assert all(torch.equal(whole[i], ArgMax()(batch[i])) for i in range(4))
