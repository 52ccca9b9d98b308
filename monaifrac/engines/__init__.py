"""Ignite engines MONAI lacks: :class:`AdversarialTrainer`, conditional adversarial segmentation."""

from monaifrac.engines.adversarial import ADVERSARIAL_LOG_KEYS, AdversarialTrainer

__all__ = ["AdversarialTrainer", "ADVERSARIAL_LOG_KEYS"]
