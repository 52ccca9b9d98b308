"""Ignite handlers MONAI lacks: overlays and learning rate in TensorBoard, metrics as JSON, atomic
checkpoints, and training state that resumes exactly (:class:`TrainingRunState`).

Each handler is attached by a bundle config (``train#handlers`` / ``validate#handlers``)
and does one thing.

One module per concern; every handler is importable from here, under the name the bundle
configs use (``monaifrac.handlers.TrainingRunState``):

* :mod:`.tensorboard`: :class:`OverlayImageHandler`, :class:`LearningRateLogger`, and
  :func:`output_scalars` (an iteration's losses for MONAI's Stats/TensorBoard handlers).
* :mod:`.presence`: :class:`PresenceMetrics` (presence AUC and PR curve, Dice per body part).
* :mod:`.outputs`: :class:`MetricsJSONWriter` (``metrics.json``) and :class:`PredictionsCSVWriter`
  (``predictions.csv``, columns :data:`PREDICTIONS_COLUMNS`).
* :mod:`.checkpoints`: :class:`AtomicCheckpointSaver` and :class:`WeightsLoader`.
* :mod:`.run_state`: :class:`TrainingRunState`, :func:`epoch_seed`, :class:`TrainingStateSaver` and
  :class:`TrainingStateLoader`, for resuming a run exactly.
* :mod:`.guards`: :class:`StopOnNonFiniteLoss` and its :class:`TrainingDiverged`; :class:`StopAtEpoch`.
* :mod:`.memory`: :class:`TrimHeapBeforeWorkers` (no freed memory shared with forked workers).

Imports between them run one way (``run_state`` → ``checkpoints`` → ``guards``; the others
import none of them), and none imports this package.
"""

from monaifrac.handlers.checkpoints import AtomicCheckpointSaver, WeightsLoader
from monaifrac.handlers.guards import StopAtEpoch, StopOnNonFiniteLoss, TrainingDiverged
from monaifrac.handlers.memory import TrimHeapBeforeWorkers
from monaifrac.handlers.outputs import PREDICTIONS_COLUMNS, MetricsJSONWriter, PredictionsCSVWriter
from monaifrac.handlers.presence import PresenceMetrics
from monaifrac.handlers.run_state import TrainingRunState, TrainingStateLoader, TrainingStateSaver, epoch_seed
from monaifrac.handlers.tensorboard import LearningRateLogger, OverlayImageHandler, output_scalars

__all__ = [
    "OverlayImageHandler", "LearningRateLogger", "output_scalars",
    "PresenceMetrics",
    "MetricsJSONWriter", "PredictionsCSVWriter", "PREDICTIONS_COLUMNS",
    "AtomicCheckpointSaver", "WeightsLoader",
    "epoch_seed", "TrainingRunState", "TrainingStateSaver", "TrainingStateLoader",
    "TrainingDiverged", "StopOnNonFiniteLoss", "StopAtEpoch",
    "TrimHeapBeforeWorkers",
]
