"""`monaifrac average`: one network with the mean weights of several checkpoints of a run."""

from __future__ import annotations

import pytest
import torch

from monaifrac.checkpoints import average_weights
from monaifrac.cli import main
from monaifrac.io import InputError


def small_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    net.train()
    for _ in range(seed + 1):  # distinct running statistics and num_batches_tracked per network
        net(torch.randn(2, 1, 8, 8))
    return net


def test_average_is_the_elementwise_mean_of_training_checkpoints_and_model_files(tmp_path):
    nets = [small_net(s) for s in range(3)]
    # a training checkpoint (the "model" entry beside the optimiser), and two plain model.pt files
    torch.save({"model": nets[0].state_dict(), "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "a.pt")
    torch.save(nets[1].state_dict(), tmp_path / "b.pt")
    torch.save(nets[2].state_dict(), tmp_path / "c.pt")
    mean = average_weights([tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"])
    states = [n.state_dict() for n in nets]
    assert set(mean) == set(states[0])
    for name, value in mean.items():
        if value.is_floating_point():  # weights and the running mean / variance
            expected = sum(s[name].double() for s in states) / 3
            assert value.dtype == states[0][name].dtype
            assert torch.allclose(value.double(), expected, atol=1e-7), name
        else:  # num_batches_tracked: the last network's
            assert torch.equal(value, states[2][name]), name
    averaged = small_net(9)
    averaged.load_state_dict(mean)  # strict: the result is a complete state dict of the network


def test_cli_writes_the_average_and_leaves_no_temporary_file(tmp_path, capsys):
    for s in range(2):
        torch.save(small_net(s).state_dict(), tmp_path / f"checkpoint_epoch={s + 1}.pt")
    out = tmp_path / "avg" / "model.pt"
    assert main(["average", str(tmp_path / "checkpoint_epoch=1.pt"), str(tmp_path / "checkpoint_epoch=2.pt"),
                 "--out", str(out)]) == 0
    assert "the mean of 2 networks' weights" in capsys.readouterr().out
    assert torch.equal(torch.load(out, weights_only=True)["0.weight"],
                       (small_net(0).state_dict()["0.weight"] + small_net(1).state_dict()["0.weight"]) / 2)
    assert [p.name for p in out.parent.iterdir()] == ["model.pt"]


def test_checkpoints_of_other_networks_are_refused_naming_the_file(tmp_path):
    torch.save(small_net(0).state_dict(), tmp_path / "a.pt")
    wider = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 1))
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    torch.save({"epoch": 3}, tmp_path / "no_weights.pt")
    with pytest.raises(InputError, match=r"wider\.pt: '0\.weight' is \(8, 1, 3, 3\), \(4, 1, 3, 3\) in"):
        average_weights([tmp_path / "a.pt", tmp_path / "wider.pt"])
    with pytest.raises(InputError, match=r"other\.pt: other tensors than"):
        average_weights([tmp_path / "a.pt", tmp_path / "other.pt"])
    with pytest.raises(InputError, match=r"no_weights\.pt: holds no network weights"):
        average_weights([tmp_path / "a.pt", tmp_path / "no_weights.pt"])
    with pytest.raises(InputError, match=r"missing\.pt: checkpoint not found"):
        average_weights([tmp_path / "a.pt", tmp_path / "missing.pt"])
    assert main(["average", str(tmp_path / "a.pt"), str(tmp_path / "other.pt"), "--out", str(tmp_path / "x.pt")]) != 0
    assert not (tmp_path / "x.pt").exists()
