"""Ignite engines and engine parts MONAI lacks: :class:`AdversarialTrainer` (conditional adversarial
segmentation), :class:`EvalOnceEvaluator` (eval mode once per run) and :class:`PrepareBatchFloat`
(float16-cached films handed to the network as float32)."""

from monaifrac.engines.adversarial import ADVERSARIAL_LOG_KEYS, AdversarialTrainer
from monaifrac.engines.evaluator import EvalOnceEvaluator
from monaifrac.engines.prepare import PrepareBatchFloat

__all__ = ["AdversarialTrainer", "ADVERSARIAL_LOG_KEYS", "EvalOnceEvaluator", "PrepareBatchFloat"]
