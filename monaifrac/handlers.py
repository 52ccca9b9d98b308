"""Ignite handlers MONAI lacks: overlays and learning rate in TensorBoard, metrics as JSON.

Each handler is attached by a bundle config (``train#handlers`` / ``validate#handlers``)
and does one thing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monaifrac.io import from_monai_frame, write_text
from monaifrac.visualize import overlay

logger = logging.getLogger(__name__)


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


class MetricsJSONWriter:
    """Write the engine's metrics (and how many films they cover) to a JSON file when it completes.

    The file is replaced atomically; values are plain floats.
    """

    def __init__(self, filepath: str | Path, extra: dict | None = None):
        self.filepath = Path(filepath)
        self.extra = extra or {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = {k: _plain(v) for k, v in engine.state.metrics.items()}
        n_films = len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None
        payload = {"metrics": metrics, "films": n_films, **self.extra}
        write_text(self.filepath, json.dumps(payload, indent=2) + "\n")
        logger.info("metrics written to %s", self.filepath)


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


from monai.handlers import CheckpointLoader, CheckpointSaver  # noqa: E402


class TrainingStateSaver(CheckpointSaver):
    """``CheckpointSaver`` that also saves the engine it is attached to, under ``"trainer"``.

    A bundle config cannot put ``@train#trainer`` in the ``save_dict`` of one of the
    trainer's own handlers (a circular reference), yet resuming needs the trainer's state
    (epoch, iteration). The engine is added when the handler is attached.
    """

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        super().attach(engine)


class TrainingStateLoader(CheckpointLoader):
    """``CheckpointLoader`` that also restores the engine it is attached to, from ``"trainer"``.

    Pair of :class:`TrainingStateSaver`: resumes model, optimiser, scheduler and the
    trainer's epoch/iteration counters.
    """

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        # ignite has already logged "resuming from iteration 0, epoch 0" before the load; say where it really is
        self.logger.info(f"Resuming training from epoch {engine.state.epoch} (iteration {engine.state.iteration}) "
                         f"saved in {self.load_path}; running to epoch {engine.state.max_epochs}")
