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
