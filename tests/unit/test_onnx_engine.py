"""The ONNX Runtime engine (``monaifrac.networks.onnx``): same outputs as PyTorch, an ONNX file per
weights, never a stale one, and a fallback cache where the weights' folder cannot be written."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("onnxruntime")

from monaifrac.networks.onnx import OnnxRuntimeNetwork, weights_hash, with_engine, with_engines  # noqa: E402


class TinyNet(torch.nn.Module):
    """A conv net with batch norm and a stride-2 level, shaped like a segmentation network's output."""

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.head(torch.relu(self.norm(self.down(x))))
        return torch.nn.functional.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def trained_state(seed: int) -> dict:
    torch.manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
        net.norm.running_mean.normal_()
        net.norm.running_var.uniform_(0.5, 2.0)
    return net.state_dict()


def test_outputs_match_pytorch_at_other_sizes_and_batches(tmp_path):
    model = tmp_path / "model.pt"
    torch.save(trained_state(0), model)
    eager = TinyNet().eval()
    eager.load_state_dict(torch.load(model, weights_only=True))
    engine = with_engine(TinyNet(), "onnxruntime", model)
    assert isinstance(engine, OnnxRuntimeNetwork)
    engine.load_state_dict(torch.load(model, weights_only=True))  # a checkpoint loads with the network's own keys
    engine.eval()
    assert engine.state_dict().keys() == eager.state_dict().keys()
    for shape in ((1, 1, 64, 96), (3, 1, 128, 32)):  # the file was traced at 1x1x256x256: the axes are dynamic
        x = torch.rand(shape)
        with torch.no_grad():
            want, got = eager(x), engine(x)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert (got - want).abs().max().item() < 1e-4
    assert engine.onnx_file == tmp_path / f"model.{weights_hash(eager)}.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", engine.onnx_file.name])


def test_new_weights_get_a_new_file_and_the_old_one_goes(tmp_path):
    model = tmp_path / "model.pt"
    torch.save(trained_state(0), model)
    engine = with_engine(TinyNet(), "onnxruntime", model).eval()
    engine.load_state_dict(torch.load(model, weights_only=True))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        first = engine(x)
    old_file = engine.onnx_file

    torch.save(trained_state(1), model)  # retrained (MONAI Label's train replaces model.pt)
    engine.load_state_dict(torch.load(model, weights_only=True))
    retrained = TinyNet().eval()
    retrained.load_state_dict(torch.load(model, weights_only=True))
    with torch.no_grad():
        second, want = engine(x), retrained(x)
    assert engine.onnx_file != old_file and not old_file.exists()
    assert (second - want).abs().max().item() < 1e-4
    assert (second - first).abs().max().item() > 1e-2

    # the same weights again, in another process or a copy: the cached file is used, not exported again
    again = with_engine(TinyNet(), "onnxruntime", model).eval()
    again.load_state_dict(torch.load(model, weights_only=True))
    stamp = engine.onnx_file.stat().st_mtime_ns
    with torch.no_grad():
        assert torch.equal(again(x), second)
    assert again.onnx_file == engine.onnx_file and again.onnx_file.stat().st_mtime_ns == stamp
    copied = copy.deepcopy(again)  # MONAI Label deep-copies networks
    with torch.no_grad():
        assert torch.equal(copied(x), second)


def test_unwritable_weights_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the weights' folder would be")
    engine = OnnxRuntimeNetwork(TinyNet().eval(), cache_dir=blocker / "models", name="model")
    with torch.no_grad():
        engine(torch.rand(1, 1, 32, 32))
    assert engine.onnx_file.parent == tmp_path / "cache" / "monaifrac" / "onnx"


def test_engine_names():
    net = TinyNet()
    assert with_engine(net, "torch") is net
    assert with_engine(net, " ONNXRuntime ").network is net
    assert [type(n).__name__ for n in with_engines([net, TinyNet()], "onnxruntime", ["a/m1.pt"])] == \
        ["OnnxRuntimeNetwork", "OnnxRuntimeNetwork"]
    with pytest.raises(ValueError, match="engine must be one of torch, onnxruntime"):
        with_engine(net, "tensorrt")
