"""Batches from the loader to the network: MONAI's default preparation, with the films in float32."""

from __future__ import annotations

from monai.engines import PrepareBatchDefault


class PrepareBatchFloat(PrepareBatchDefault):
    """MONAI's ``PrepareBatchDefault`` (image and label moved to the engine's device), image cast to float32 there.

    Why: validation caches its films as float16 (``train.json``'s ``cache_dtype``: half the
    memory of 473 validation films on both FracAtlas folders), and a float32 network cannot take
    them as they are. The cast happens after the move, so a GPU also receives half the bytes.
    A float32 batch passes through unchanged (``Tensor.float`` returns the same tensor).

    ``__call__(batchdata, device, non_blocking, **kwargs)`` → ``(image, label)``: image (B, C, *spatial)
    float32 (a MetaTensor where the loader gave one), label as MONAI's default gives it (None if absent).
    """

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        image, label = super().__call__(batchdata, device, non_blocking, **kwargs)
        return image.float(), label
