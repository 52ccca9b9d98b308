"""Activation checkpointing of the EfficientNet-Lite encoder: the plain network's step, far less kept for backward."""

from __future__ import annotations

import pytest
import torch

from monaifrac.networks import PresenceFlexibleUNet


def _step(checkpointing: bool, saved: list[int] | None = None):
    """One training forward/backward from fixed weights and input; what it leaves behind."""
    torch.manual_seed(0)
    net = PresenceFlexibleUNet(1, 3, "efficientnet-lite0", pretrained=False, decoder_channels=[64, 32, 24, 16, 8],
                               activation_checkpointing=checkpointing).train()
    torch.manual_seed(1)
    x = torch.rand(2, 1, 96, 128)

    def pack(t):
        if saved is not None:
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        features = net.encoder(x)
    out = net.segmentation_head(net.decoder(features, net.skip_connect))
    out.square().mean().backward()
    after = torch.rand(4)  # where the random stream stands after the step (stochastic depth draws from it)
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads, net.state_dict(), after


def test_checkpointed_encoder_gives_the_plain_networks_gradients_and_batch_norm_statistics():
    plain, checkpointed = _step(False), _step(True)
    assert torch.equal(plain[0], checkpointed[0])
    assert plain[1].keys() == checkpointed[1].keys() and any(k.startswith("encoder.") for k in plain[1])
    for k in plain[1]:
        assert torch.equal(plain[1][k], checkpointed[1][k]), k
    # running mean/var and the batch count of every batch norm advanced once, not twice
    for k in plain[2]:
        assert torch.equal(plain[2][k], checkpointed[2][k]), k
    assert torch.equal(plain[3], checkpointed[3])


def test_checkpointed_encoder_keeps_a_fraction_of_the_activations():
    plain, checkpointed = [], []
    _step(False, plain)
    _step(True, checkpointed)
    # only each block's input stays for backward; the expanded activations inside are recomputed
    assert sum(checkpointed) < 0.25 * sum(plain), (sum(checkpointed), sum(plain))


def test_checkpointing_is_off_outside_training_and_refused_where_the_backbone_has_none():
    net = PresenceFlexibleUNet(1, 3, "efficientnet-lite0", pretrained=False, activation_checkpointing=True).eval()
    reference = PresenceFlexibleUNet(1, 3, "efficientnet-lite0", pretrained=False).eval()
    reference.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(net(x), reference(x), rtol=0, atol=0)
    scripted = torch.jit.script(net)  # TorchScript export (ckpt_export) still compiles the encoder
    torch.testing.assert_close(scripted(x), reference(x))
    with pytest.raises(ValueError, match="no activation checkpointing"):
        PresenceFlexibleUNet(1, 3, "resnet18", pretrained=False, activation_checkpointing=True)
