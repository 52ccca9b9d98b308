"""Ignite engines and engine parts MONAI lacks: :class:`AdversarialTrainer` (conditional adversarial
segmentation) and :class:`EvalOnceEvaluator` (eval mode once per run)."""

from monaifrac.engines.adversarial import ADVERSARIAL_LOG_KEYS, AdversarialTrainer
from monaifrac.engines.evaluator import EvalOnceEvaluator

__all__ = ["AdversarialTrainer", "ADVERSARIAL_LOG_KEYS", "EvalOnceEvaluator"]
