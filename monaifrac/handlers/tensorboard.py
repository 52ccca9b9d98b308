"""What a training run shows in TensorBoard beyond MONAI's metric curves: overlays of a validation
film (:class:`OverlayImageHandler`), the learning rate (:class:`LearningRateLogger`), and
:func:`output_scalars`, which hands an iteration's scalars (losses) to MONAI's Stats/TensorBoard
handlers.
"""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events

from monaifrac.io import from_monai_frame
from monaifrac.visualize import overlay


def _first_item(engine: Engine, key: str):
    """``key`` of the first film of the engine's last batch, as a numpy array (C, W, H)."""
    output = engine.state.output
    item = output[0] if isinstance(output, (list, tuple)) else output
    value = item.get(key) if isinstance(item, dict) else None
    if value is None:
        return None
    value = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return value[0] if value.ndim == 4 else value  # batched (not decollated) output


class OverlayImageHandler:
    """Log image+label and image+prediction overlays of one validation film to TensorBoard.

    After each evaluator run, the first film of its first batch (the first validation film,
    the same one every epoch) is drawn twice, ground truth and prediction, side by side, with
    :func:`monaifrac.visualize.overlay` (bone blue, fracture red). The step is the
    evaluator's epoch, which MONAI's ``ValidationHandler`` sets to the trainer's.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter``.
        tag: image tag.
    """

    def __init__(self, summary_writer, tag: str = "val_overlay"):
        self.writer = summary_writer
        self.tag = tag
        self._first: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._capture)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._first = None

    def _capture(self, engine: Engine) -> None:
        """Keep the first film of the run's first batch (the engine's output moves on)."""
        if self._first is None:
            items = {k: _first_item(engine, k) for k in ("image", "label", "pred")}
            self._first = {k: None if v is None else v.clone() for k, v in items.items()}

    def __call__(self, engine: Engine) -> None:
        if self._first is None:
            return
        image, label, pred = self._first["image"], self._first["label"], self._first["pred"]
        if image is None or pred is None or self.writer is None:
            return
        grey = from_monai_frame(image[0].numpy())
        pred_map = from_monai_frame(_to_index(pred))
        panels = [overlay(grey, pred_map)]
        if label is not None:
            panels.insert(0, overlay(grey, from_monai_frame(_to_index(label))))
        picture = np.concatenate(panels, axis=1)
        self.writer.add_image(self.tag, picture, global_step=engine.state.epoch, dataformats="HWC")
        self.writer.flush()


def _to_index(t: torch.Tensor) -> np.ndarray:
    """(C, W, H) one-hot/probabilities or (1, W, H) indices → (W, H) uint8 class indices."""
    arr = t.numpy()
    return (arr.argmax(0) if arr.shape[0] > 1 else arr[0]).astype(np.uint8)


class LearningRateLogger:
    """Write the optimiser's learning rate to TensorBoard at every epoch end (tag ``lr``)."""

    def __init__(self, summary_writer, optimizer: torch.optim.Optimizer, tag: str = "lr"):
        self.writer = summary_writer
        self.optimizer = optimizer
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar(self.tag, self.optimizer.param_groups[0]["lr"], engine.state.epoch)


def output_scalars(keys, prefix: str = "train_"):
    """An ``output_transform`` for Stats/TensorBoard handlers reading several scalars of an iteration.

    One key gives that value alone (logged under the handler's ``tag_name``); several give
    ``{prefix + key: value}``, which MONAI's ``TensorBoardStatsHandler`` logs as one curve each.
    Reads the output dict itself where the trainer does not decollate (``train.json``: the batch is
    post-processed whole), or the first item of a decollated output, where MONAI repeats per-batch scalars.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)

    def transform(output):
        item = output[0] if isinstance(output, (list, tuple)) else output
        values = {k: float(torch.as_tensor(item[k]).detach().float()) for k in keys}
        return values[keys[0]] if len(keys) == 1 else {prefix + k: v for k, v in values.items()}

    return transform
