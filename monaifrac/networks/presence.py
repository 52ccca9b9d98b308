"""A FlexibleUNet that also says whether the image shows a fracture at all.

A fracture covers 0.34 % of a fractured film at the median: the segmentation's per-pixel
evidence is thin for the question a reader asks first ("fractured?"). The encoder's deepest
features see the whole film; a small head on them is trained with every film, the normal
ones included, against that question.

The answer travels as one more output channel, constant over the image, so that everything
built for a (B, C, H, W) segmentation output carries it unchanged: MONAI's inferers (whole
film, sliding window, flip averaging), TorchScript and ONNX export, MONAI Label.
:class:`monaifrac.transforms.SplitPresenced` takes it off before the label map is made, and
:class:`monaifrac.losses.PresenceLoss` trains it.
"""

from __future__ import annotations

import torch
from monai.networks.nets import FlexibleUNet
from torch import nn

import monaifrac.networks.efficientnet_lite  # noqa: F401  (registers the Lite backbones)

__all__ = ["PresenceFlexibleUNet"]


class PresenceFlexibleUNet(FlexibleUNet):
    """MONAI's :class:`~monai.networks.nets.FlexibleUNet` plus a presence logit.

    Args:
        num_classes: segmentation classes (background included); FlexibleUNet's ``out_channels``.
        presence_hidden: channels of the head's 1x1 convolution on the deepest features.
        presence_dropout: dropout before the head's last layer.
        activation_checkpointing: recompute the encoder's blocks in the backward pass instead of
            keeping their activations (where the backbone supports it, as the EfficientNet-Lite
            encoders do: :class:`~monaifrac.networks.efficientnet_lite.EfficientNetLiteEncoder`);
            same gradients, less memory, one more encoder forward per training step.
        All others: :class:`~monai.networks.nets.FlexibleUNet`'s.

    ``forward(x)``: x (B, in_channels, H, W) → (B, num_classes + 1, H, W): channels
    ``[0, num_classes)`` are the segmentation logits, the last one the logit of "this image
    shows the last segmentation class" (a fracture), the same at every pixel. The head pools
    the deepest feature map (stride 32) by its mean and by its maximum, since a fracture is local.
    The argument is ``num_classes``, not FlexibleUNet's ``out_channels``: the network has one
    output channel more than it has classes.
    """

    def __init__(self, in_channels: int, num_classes: int, backbone: str, pretrained: bool = False,
                 presence_hidden: int = 128, presence_dropout: float = 0.2, activation_checkpointing: bool = False,
                 **kwargs):
        super().__init__(in_channels, num_classes, backbone, pretrained=pretrained, **kwargs)
        if self.spatial_dims != 2:
            raise ValueError(f"the presence output is built for 2D images, got spatial_dims={self.spatial_dims}")
        if activation_checkpointing:
            if not hasattr(self.encoder, "activation_checkpointing"):
                raise ValueError(f"backbone {backbone!r} has no activation checkpointing (the efficientnet-lite "
                                 "backbones have)")
            self.encoder.activation_checkpointing = True
        channels = self._deepest_channels(backbone)
        self.presence_head = nn.Sequential(
            nn.Conv2d(channels, presence_hidden, kernel_size=1),
            nn.ReLU(inplace=True),
        )
        self.presence_out = nn.Sequential(nn.Dropout(presence_dropout), nn.Linear(2 * presence_hidden, 1))

    @staticmethod
    def _deepest_channels(backbone: str) -> int:
        from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

        return int(FLEXUNET_BACKBONE.register_dict[backbone]["feature_channel"][-1])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(inputs)
        seg = self.segmentation_head(self.decoder(features, self.skip_connect))
        h = self.presence_head(features[-1])
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        presence = self.presence_out(pooled)  # (B, 1)
        plane = presence.view(presence.shape[0], 1, 1, 1).expand(-1, -1, seg.shape[2], seg.shape[3])
        return torch.cat([seg, plane], dim=1)
