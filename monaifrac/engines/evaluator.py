"""MONAI's ``SupervisedEvaluator`` with the network put in eval mode once per run, not once per batch."""

from __future__ import annotations

import torch
from monai.engines import SupervisedEvaluator
from monai.networks.utils import eval_mode


def _no_grad(*networks):
    return torch.no_grad()


class EvalOnceEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that switches the network to eval mode at the start of ``run`` and back at its end.

    Why: MONAI's evaluator wraps every batch in ``eval_mode(network)``, which calls
    ``Module.eval()`` (a walk over every submodule: 144 in the shipped UNet) and, for a network
    that was training, ``Module.train()`` after it. At batch size 1 on a CPU that cost about
    2.6 ms a film (cProfile of ``monaifrac benchmark infer --profile``), a tenth of a 373 x 454
    film's whole inference. Here each batch runs under ``torch.no_grad`` alone, as MONAI's does
    inside ``eval_mode``; a network that was training (validation inside a training run) is
    training again once ``run`` returns or fails. Built with ``mode="train"`` it is MONAI's
    evaluator unchanged. Arguments: MONAI's ``SupervisedEvaluator``'s.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._eval_once = self.mode is eval_mode
        if self._eval_once:
            self.mode = _no_grad

    def run(self, global_epoch: int = 1) -> None:
        if not self._eval_once:
            return super().run(global_epoch)
        training = self.network.training
        self.network.eval()
        try:
            super().run(global_epoch)
        finally:
            if training:
                self.network.train()
