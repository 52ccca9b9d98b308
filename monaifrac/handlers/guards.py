"""Stopping a training run whose loss is no longer a number: :class:`StopOnNonFiniteLoss` raises
:class:`TrainingDiverged` at the first NaN or infinite loss.

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
