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


def test_update_batch_norm_sets_the_statistics_of_the_network_s_own_activations_and_nothing_else(tmp_path):
    """The running mean / variance become the equal-weight mean over the loader's batches of each batch's
    statistics (what `monaifrac average --bn-data` runs on the averaged network); the weights are untouched."""
    from monaifrac.checkpoints import update_batch_norm

    source = small_net(1)
    torch.save({"model": source.state_dict()}, tmp_path / "mean.pt")  # a training checkpoint's layout
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.randn(3, 1, 10, 10, generator=g) * 2 + 1, "label": torch.zeros(3)} for _ in range(4)]

    net = small_net(5)  # other weights and statistics: the file's must be the ones loaded
    counts = update_batch_norm(net, batches, tmp_path / "mean.pt", tmp_path / "bn.pt")
    assert counts == {"batches": 4, "films": 12, "layers": 1}

    with torch.no_grad():
        conv = [source[0](b["image"]) for b in batches]  # the batch-norm layer's inputs, batch by batch
    mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv]).mean(0)
    var = torch.stack([c.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True) for c in conv]).mean(0)
    saved = torch.load(tmp_path / "bn.pt", weights_only=True)
    assert torch.allclose(saved["1.running_mean"], mean, atol=1e-5)
    assert torch.allclose(saved["1.running_var"], var, atol=1e-5)
    assert not torch.allclose(saved["1.running_mean"], source.state_dict()["1.running_mean"], atol=1e-3)
    for name, value in source.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(saved[name], value), name


def test_update_batch_norm_refuses_a_network_without_batch_norm(tmp_path):
    from monaifrac.checkpoints import update_batch_norm

    net = torch.nn.Conv2d(1, 2, 3)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    with pytest.raises(InputError, match="no batch-norm layer"):
        update_batch_norm(net, [], tmp_path / "m.pt", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
