"""Composition: a Compose that runs without MONAI's metadata tracking."""

from __future__ import annotations

from monai.data import get_track_meta, set_track_meta
from monai.transforms import Compose


class UntrackedCompose(Compose):
    """A ``Compose`` whose transforms run on plain tensors, without MONAI's metadata tracking.

    Training's random transforms need the pixels only. Under tracking every crop, flip, rotation
    and zoom also records its operation, updates the affine and copies the metadata, and on this
    project's CPU that bookkeeping cost more than the pixel work: untracked, the DataLoader workers
    of ``train.json`` used 0.07 cores instead of 0.13 and the trainer waited 4 ms an iteration for
    data instead of 35 (``monaifrac benchmark train``, bf16). The batches it yields are plain
    ``torch.Tensor``s (cheaper to collate and to hand from a worker to the trainer) and cannot be
    inverted.

    MONAI's switch (``monai.data.set_track_meta``) is process-wide: it is off only while this
    ``Compose`` runs and restored after, also on error. ``CacheDataset`` stops caching at the
    first random transform, and a ``Compose`` counts as one, so the cached part before it keeps
    its metadata.
    """

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        finally:
            set_track_meta(tracking)
