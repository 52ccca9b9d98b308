"""Losses MONAI lacks: a segmentation loss plus the presence output's own term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PresenceLoss"]


class PresenceLoss(nn.Module):
    """``seg_loss`` on the segmentation channels plus ``presence_weight`` x binary cross-entropy
    of the presence channel (:class:`monaifrac.networks.PresenceFlexibleUNet`).

    The presence target of an image is whether its label holds ``class_index`` anywhere: a
    fractured film seen whole, or a crop that shows part of a fracture. It comes from the label
    the segmentation is trained with, so no other annotation is needed.

    Args:
        seg_loss: the segmentation loss (e.g. MONAI's ``DiceFocalLoss``), called on the first
            ``num_classes`` channels.
        num_classes: segmentation channels.
        class_index: the label value whose presence is predicted (2, the fracture).
        presence_weight: weight of the presence term.

    ``forward(input, target)``: input (B, num_classes [+ 1], *spatial) logits, target
    (B, 1, *spatial) label indices → scalar. A network without the presence channel is
    trained by ``seg_loss`` alone. ``last_terms`` holds the two terms of the last call
    (detached), for logging.
    """

    def __init__(self, seg_loss: nn.Module, num_classes: int = 3, class_index: int = 2,
                 presence_weight: float = 0.5):
        super().__init__()
        self.seg_loss = seg_loss
        self.num_classes = num_classes
        self.class_index = class_index
        self.presence_weight = presence_weight
        self.last_terms: dict[str, float] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seg = self.seg_loss(input[:, : self.num_classes], target)
        if input.shape[1] <= self.num_classes:
            self.last_terms = {"seg": float(seg.detach())}
            return seg
        logit = input[:, self.num_classes].float().flatten(1).mean(dim=1)
        present = (target == self.class_index).flatten(1).any(dim=1).to(logit.dtype)
        presence = F.binary_cross_entropy_with_logits(logit, present)
        self.last_terms = {"seg": float(seg.detach()), "presence": float(presence.detach())}
        return seg + self.presence_weight * presence
