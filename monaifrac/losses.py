"""Losses MONAI lacks: a segmentation loss plus the presence output's own term; a loss plus the Dice of each
fracture region on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PresenceLoss", "WithRegionDice", "region_dice_loss"]


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


def region_dice_loss(probs: torch.Tensor, target: torch.Tensor, class_index: int = 2,
                     smooth: float = 1e-5) -> torch.Tensor | None:
    """1 - Dice of each connected region of ``class_index`` in ``target``, averaged over the regions of the batch
    (the "blob loss" of Kofler et al., 2022): a 300-pixel fracture weighs as much as a 3,000-pixel one, where a
    Dice pooled over pixels lets the large one dominate.

    Region ``k`` is scored against the predicted probability everywhere except on the batch item's other regions
    of the class, so that predicting one region does not count as a false positive of another, and predicting
    the class on background does.

    Args:
        probs: (B, C, *spatial) class probabilities (softmax of the segmentation logits).
        target: (B, 1, *spatial) label indices.
        class_index: the label whose regions are scored (2, the fracture).
        smooth: added to numerator and denominator.

    Returns:
        The mean over every region of the batch (a 0-dim tensor), or None where the batch holds no region.
    """
    from skimage.measure import label as connected

    region_labels = target[:, 0] == class_index
    losses = []
    for b in range(target.shape[0]):
        if not bool(region_labels[b].any()):
            continue
        regions, n = connected(region_labels[b].cpu().numpy(), connectivity=region_labels.ndim - 1, return_num=True)
        regions = torch.as_tensor(regions, device=probs.device)
        ids = torch.arange(1, n + 1, device=probs.device).view(-1, *([1] * regions.ndim))
        own = (regions.unsqueeze(0) == ids).to(probs.dtype)  # (n, *spatial): region k
        others = region_labels[b].unsqueeze(0).to(probs.dtype) - own  # the item's other regions of the class
        p = probs[b, class_index].unsqueeze(0) * (1 - others)
        dims = tuple(range(1, own.ndim))
        dice = (2 * (p * own).sum(dims) + smooth) / (p.sum(dims) + own.sum(dims) + smooth)
        losses.append(1 - dice)
    return torch.cat(losses).mean() if losses else None


class WithRegionDice(nn.Module):
    """``loss`` plus ``weight`` x :func:`region_dice_loss` of the softmax of the logits (each fracture region's own
    Dice, so that small fractures weigh as much as large ones). ``weight`` 0 is ``loss`` alone, computed as before.

    ``forward(input, target)``: input (B, C, *spatial) segmentation logits, target (B, 1, *spatial) label
    indices → scalar.
    """

    def __init__(self, loss: nn.Module, weight: float = 0.0, class_index: int = 2):
        super().__init__()
        self.loss = loss
        self.weight = float(weight)
        self.class_index = class_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = self.loss(input, target)
        if self.weight:
            region = region_dice_loss(torch.softmax(input.float(), dim=1), target, self.class_index)
            if region is not None:
                out = out + self.weight * region
        return out
