"""Int8 ONNX (``monaifrac.networks.quantize`` and the ``onnxruntime-int8`` engine): a quantized file per
weights, calibrated on what the inferer feeds the network, close to float32 but not float32, and a
clear error where it has not been made."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")

from monaifrac.inferers import WholeFilmInferer  # noqa: E402
from monaifrac.networks.onnx import INT8_SUFFIX, EngineError, weights_hash, with_engine  # noqa: E402
from monaifrac.networks.quantize import network_inputs, quantize_weights  # noqa: E402


class SmallNet(torch.nn.Module):
    """Two stride-2 levels and a skip, 4 output channels, as the segmenter's output is shaped."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                                     torch.nn.ReLU6())
        self.b = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), torch.nn.ReLU6())
        self.head = torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        a = self.a(x)
        b = torch.nn.functional.interpolate(self.b(a), size=a.shape[2:], mode="nearest")
        y = self.head(torch.cat([a, b], 1))
        return torch.nn.functional.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def saved(tmp_path, seed: int):
    torch.manual_seed(seed)
    net = SmallNet().eval()
    with torch.no_grad():
        net.a[1].running_mean.normal_(0, 0.1)
        net.a[1].running_var.uniform_(0.5, 2.0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    return net, tmp_path / "model.pt"


def films(n: int, shape=(1, 1, 40, 52), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(*shape, generator=gen)} for _ in range(n)]


def test_calibration_sees_films_as_the_inferer_pads_them():
    arrays = list(network_inputs(films(3), WholeFilmInferer(divisor=16)))
    assert [a.shape for a in arrays] == [(1, 1, 48, 64)] * 3  # 40 x 52 padded to multiples of 16
    assert all(a.dtype.name == "float32" for a in arrays)


def test_int8_file_per_weights_close_to_float32_but_quantized(tmp_path):
    import onnx

    net, model_file = saved(tmp_path / "m", seed=0)
    path = quantize_weights(SmallNet(), model_file, films(8), WholeFilmInferer(divisor=16))
    assert path == model_file.parent / f"model.{weights_hash(net)}{INT8_SUFFIX}" and path.is_file()
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    int8 = with_engine(SmallNet(), "onnxruntime-int8", model_file)
    int8.load_state_dict(net.state_dict())
    fp32 = with_engine(SmallNet(), "onnxruntime", model_file)
    fp32.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(1))  # as the calibration films
    with torch.no_grad():
        want = net(x)
    got_fp32, got_int8 = fp32(x), int8(x)
    spread = (want.max() - want.min()).item()
    assert int8.onnx_file == path and fp32.onnx_file != path
    assert (got_fp32 - want).abs().max().item() < 1e-4
    err = (got_int8 - want).abs().max().item()
    assert 0 < err < 0.05 * spread, (err, spread)  # quantized (not the float file), yet close
    agree = (got_int8.argmax(1) == want.argmax(1)).float().mean().item()
    assert agree > 0.9, agree

    # new weights: a new int8 file, the old one removed; the engine wants the new one
    net2, _ = saved(tmp_path / "m", seed=1)
    path2 = quantize_weights(SmallNet(), model_file, films(4), WholeFilmInferer(divisor=16))
    assert path2 != path and path2.is_file() and not path.exists()
    assert sorted(p.name for p in model_file.parent.glob(f"*{INT8_SUFFIX}")) == [path2.name]


def test_missing_int8_file_says_how_to_make_it(tmp_path):
    net, model_file = saved(tmp_path, seed=0)
    engine = with_engine(net, "onnxruntime-int8", model_file)
    with pytest.raises(EngineError, match=r"no model\.[0-9a-f]{16}\.int8\.onnx .*monaifrac quantize"):
        engine(torch.rand(1, 1, 32, 32))
    assert not list(tmp_path.glob("*.onnx"))  # nothing made on the fly, not even the float32 file


def test_quantizing_without_films_writes_nothing(tmp_path):
    _, model_file = saved(tmp_path, seed=0)
    with pytest.raises(EngineError, match="no calibration film"):
        quantize_weights(SmallNet(), model_file, [], WholeFilmInferer(divisor=16))
    assert not list(tmp_path.glob(f"*{INT8_SUFFIX}"))


def test_shipped_int8_file_belongs_to_the_shipped_weights():
    """``bundle/models`` carries the int8 file of ``model.pt`` (``monaifrac quantize``): weights changed without
    quantizing again would leave ``--engine onnxruntime-int8`` without a file for them."""
    from monai.bundle import ConfigParser

    from monaifrac.bundle import REPO_BUNDLE

    model = REPO_BUNDLE / "models" / "model.pt"
    if not model.is_file():
        pytest.skip("no shipped model in bundle/models")
    parser = ConfigParser()
    parser.read_config(str(REPO_BUNDLE / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    int8_files = sorted(p.name for p in model.parent.glob(f"model.*{INT8_SUFFIX}"))
    assert int8_files == [f"model.{weights_hash(network)}{INT8_SUFFIX}"]
    engine = with_engine(network, "onnxruntime-int8", model)
    x = torch.rand(1, 1, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = engine(x), network(x)
    assert got.shape == want.shape == (1, 4, 96, 128)
    agree = (got[:, :3].argmax(1) == want[:, :3].argmax(1)).float().mean().item()  # channel 3: presence
    assert agree > 0.8, agree  # on uniform noise, far from the calibration films
