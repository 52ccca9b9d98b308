"""Stopping a training run: :class:`StopOnNonFiniteLoss` raises :class:`TrainingDiverged` at the first
NaN or infinite loss; :class:`StopAtEpoch` ends a run cleanly after a given epoch of its schedule.

The exception is its own type so that the checkpoint savers (:mod:`monaifrac.handlers.checkpoints`)
can leave the last good checkpoints alone and ``monaifrac train`` can print it as one line.
"""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events


class TrainingDiverged(RuntimeError):
    """The training loss stopped being a finite number."""


class StopOnNonFiniteLoss:
    """Stop training at the first iteration whose loss is NaN or infinite.

    Raises :class:`TrainingDiverged` (epoch, iteration and value in the message) from the
    iteration, so no validation runs on the broken weights: ``model.pt`` (the best validated
    weights) and the per-epoch checkpoints stay as they were, and :class:`AtomicCheckpointSaver`
    writes no final checkpoint. ``monaifrac train`` prints the message as one line.
    """

    def __init__(self, output_transform=None):
        from monai.handlers import from_engine

        self.output_transform = output_transform or from_engine(["loss"], first=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        loss = loss[0] if isinstance(loss, (list, tuple)) else loss
        value = float(torch.as_tensor(loss).detach().float().sum())
        if not np.isfinite(value):
            raise TrainingDiverged(f"training loss is {value} at epoch {engine.state.epoch}, iteration "
                                   f"{engine.state.iteration}: stopped; the last validated weights are "
                                   f"untouched (lower learning_rate, or resume from the last checkpoint)")


class StopAtEpoch:
    """End training once epoch ``stop_epoch`` has completed, before ``max_epochs``: a part of the schedule.

    The learning-rate schedule stays that of ``max_epochs`` (a cosine over 30 epochs stopped after 5
    is not a 5-epoch cosine), so two runs stopped at the same epoch have had the same budget and the
    same schedule (the pretrained-vs-scratch comparison of the model card), and a run can be taken on
    in sittings: ``resume_from=.../checkpoint_epoch=N.pt`` with the same ``max_epochs`` continues exactly
    as if never stopped. The epoch's validation and checkpoint happen first (every ``EPOCH_COMPLETED``
    handler still runs after ``Engine.terminate``); then the run ends as a finished one does
    (``checkpoint_final.pt``).

    Args:
        stop_epoch: the last epoch to train (1-based); ``<= 0`` disables the handler (the whole schedule).
    """

    def __init__(self, stop_epoch: int):
        self.stop_epoch = int(stop_epoch)

    def attach(self, engine: Engine) -> None:
        if self.stop_epoch > 0:
            engine.add_event_handler(Events.STARTED, self._check_start)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _check_start(self, engine: Engine) -> None:
        if engine.state.epoch >= self.stop_epoch:  # resumed at or past the stop: train nothing
            engine.logger.info(f"stop_epoch {self.stop_epoch}: the run is at epoch {engine.state.epoch} already")
            engine.terminate()

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch >= self.stop_epoch:
            engine.logger.info(f"stop_epoch {self.stop_epoch} reached (of max_epochs {engine.state.max_epochs}): "
                               f"stopped; resume_from models/checkpoint_epoch={engine.state.epoch}.pt continues")
            engine.terminate()
