"""monaifrac.engines.EvalOnceEvaluator: MONAI's evaluator, eval mode switched once per run."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator

from monaifrac.engines import EvalOnceEvaluator


class Net(torch.nn.Module):
    """Conv + BatchNorm + Dropout (both differ between train and eval mode); counts its mode switches."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                                        torch.nn.Dropout(0.5))
        self.switches = 0
        self.training_seen: list[bool] = []
        self.grad_seen: list[bool] = []

    def train(self, mode: bool = True):
        self.switches += 1
        return super().train(mode)

    def forward(self, x):
        self.training_seen.append(self.training)
        self.grad_seen.append(torch.is_grad_enabled())
        return self.body(x)


def batches(n: int = 5) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(1, 1, 8, 8, generator=g), "label": torch.zeros(1, 1, 8, 8)} for _ in range(n)]


def outputs(evaluator_cls, net: Net, **kwargs) -> list[torch.Tensor]:
    preds: list[torch.Tensor] = []
    evaluator = evaluator_cls(device=torch.device("cpu"), val_data_loader=batches(), network=net, decollate=False,
                              **kwargs)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: preds.append(e.state.output["pred"].clone()))
    evaluator.run()
    return preds


@pytest.mark.parametrize("was_training", [True, False])
def test_switches_once_per_run_and_gives_monai_s_outputs(was_training):
    ours, monais = Net().train(was_training), Net().train(was_training)
    ours.switches = monais.switches = 0
    mine, reference = outputs(EvalOnceEvaluator, ours), outputs(SupervisedEvaluator, monais)
    assert all(torch.equal(a, b) for a, b in zip(mine, reference)) and len(mine) == 5
    assert ours.training_seen == [False] * 5 and ours.grad_seen == [False] * 5 and ours.training is was_training
    # MONAI's: eval() (and train() back) around each of the 5 batches; ours: once around the run
    assert monais.switches == 5 * (2 if was_training else 1)
    assert ours.switches == (2 if was_training else 1)


def test_a_failing_run_leaves_a_training_network_training():
    net = Net().train()

    def fail(engine):
        raise RuntimeError("disk full")

    evaluator = EvalOnceEvaluator(device=torch.device("cpu"), val_data_loader=batches(), network=net)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, fail)
    with pytest.raises(RuntimeError, match="disk full"):
        evaluator.run()
    assert net.training


def test_mode_train_is_monai_s_behaviour():
    net = Net().eval()
    evaluator = EvalOnceEvaluator(device=torch.device("cpu"), val_data_loader=batches(2), network=net, mode="train")
    net.switches = 0
    evaluator.run()
    assert net.training_seen == [True, True] and not net.training
    assert net.switches == 4  # train() and eval() back around each batch, as MONAI does
