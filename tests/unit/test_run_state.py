"""What a resumed run needs beyond weights (monaifrac.handlers.TrainingRunState): random states kept in
weights-only checkpoints, per-epoch seeding, best-metric and early-stop bookkeeping."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from monaifrac.compat.ignite import kept_files, set_kept_files
from monaifrac.compat.monai import early_stopping, saver_checkpoint
from monaifrac.checkpoints import (randomizables, read_checkpoint, rng_state, set_rng_state, set_transform_rng_states,
                                   transform_rng_states)
from monaifrac.handlers import (AtomicCheckpointSaver, TrainingRunState, TrainingStateLoader, TrainingStateSaver,
                                epoch_seed)


def random_transforms():
    from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandSpatialCropd

    return Compose([RandSpatialCropd("x", roi_size=(4, 4), random_size=False), RandFlipd("x", prob=0.5),
                    RandGaussianNoised("x", prob=0.5)])


def draws(transform=None) -> list:
    out = [torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random(), random.gauss(0, 1)]
    if transform is not None:
        out.append(transform({"x": torch.arange(64.0).reshape(1, 8, 8)})["x"])
    return out


def test_random_states_survive_a_weights_only_checkpoint_and_restore_exactly(tmp_path):
    transform = random_transforms()
    transform.set_random_state(seed=3)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    draws(transform)  # move every generator on; leave a cached Gaussian in NumPy and in random
    np.random.standard_normal(), random.gauss(0, 1)
    torch.save({"rng": rng_state(), "transforms": transform_rng_states(transform)}, tmp_path / "state.pt")
    expected = draws(transform)

    saved = read_checkpoint(tmp_path / "state.pt")  # weights_only=True: no pickled NumPy or random objects
    draws(transform)  # anything at all happens in between
    set_rng_state(saved["rng"])
    assert set_transform_rng_states(transform, saved["transforms"])
    for got, want in zip(draws(transform), expected):
        assert torch.equal(torch.as_tensor(got), torch.as_tensor(want))


def test_every_randomizable_is_found_nested_ones_too():
    transform = random_transforms()
    names = [type(t).__name__ for t in randomizables(transform)]
    # Compose's own generator, then each transform and the random array transform inside it, in order
    assert names == ["Compose", "RandSpatialCropd", "RandSpatialCrop", "RandFlipd", "RandGaussianNoised",
                     "RandGaussianNoise"]
    assert not set_transform_rng_states(transform, transform_rng_states(transform)[:-1])  # a different pipeline


def test_epoch_seed_mixes_seed_epoch_and_rank():
    seeds = {epoch_seed(s, e, r) for s in range(3) for e in range(1, 4) for r in range(2)}
    assert len(seeds) == 18 and all(0 <= s < 2**32 for s in seeds)
    assert epoch_seed(0, 2) == epoch_seed(0, 2, 0)


def loader_of(num_workers: int):
    from monai.data import CacheDataset, DataLoader

    data = [{"x": torch.full((1, 8, 8), float(i)) + torch.arange(64.0).reshape(1, 8, 8) / 64} for i in range(6)]
    dataset = CacheDataset(data, transform=random_transforms(), progress=False)
    return DataLoader(dataset, batch_size=2, shuffle=True, num_workers=num_workers)


def record_epochs(loader, max_epochs: int, resume_at: int = 0) -> dict[int, list[torch.Tensor]]:
    """Run an engine over ``loader`` with a TrainingRunState; ``resume_at``: start as resumed after that epoch."""
    seen: dict[int, list[torch.Tensor]] = {}
    engine = Engine(lambda e, batch: seen.setdefault(e.state.epoch, []).append(batch["x"].clone()))
    engine.data_loader = loader  # as MONAI's trainers have it
    TrainingRunState(seed=7).attach(engine)
    if resume_at:
        engine.load_state_dict({"iteration": resume_at * len(loader), "epoch_length": len(loader),
                                "max_epochs": max_epochs})
    engine.run(loader, max_epochs=max_epochs)
    return seen


@pytest.mark.parametrize("num_workers", [0, 2])
def test_each_epoch_draws_the_same_batches_whatever_came_before(num_workers):
    """Shuffle order, worker seeds and the transforms' crops/flips/noise of epoch k depend on (seed, k) alone."""
    whole = record_epochs(loader_of(num_workers), max_epochs=3)
    assert not torch.equal(torch.cat(whole[2]), torch.cat(whole[3]))  # random, yet...
    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # ...another process, other global states
    resumed = record_epochs(loader_of(num_workers), max_epochs=3, resume_at=2)
    assert list(resumed) == [3]
    assert all(torch.equal(x, y) for x, y in zip(resumed[3], whole[3], strict=True))


# ------------------------------------------------------------------------------------------- bookkeeping
def fake_training(tmp_path, val_scores: list[float], patience: int = 2, resume_from=None):
    """A trainer whose "validation" after epoch k scores ``val_scores[k-1]``, with early stopping, a
    key-metric ``model.pt`` saver and the state checkpoints, wired as train.json wires them."""
    from monai.handlers import EarlyStopHandler

    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine, batch):
        optimizer.zero_grad()
        model(torch.ones(1, 1)).sum().backward()
        optimizer.step()

    trainer = Engine(step)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1, -1
    evaluator.state.key_metric_name = "val_dice"

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(e):
        e.state.metrics["val_dice"] = val_scores[trainer.state.epoch - 1]
        if e.state.metrics["val_dice"] > e.state.best_metric:
            e.state.best_metric, e.state.best_metric_epoch = e.state.metrics["val_dice"], trainer.state.epoch

    early = EarlyStopHandler(patience=patience, score_function=lambda e: e.state.metrics["val_dice"])
    best = AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_key_metric=True, key_metric_name="val_dice",
                                 key_metric_filename="model.pt")
    handlers = [early, best]
    for h in handlers:
        h.attach(evaluator)
    early.set_trainer(trainer)
    run_state = TrainingRunState(seed=0, evaluator=evaluator, evaluator_handlers=handlers)
    state = {"model": model, "optimizer": optimizer}
    if resume_from:
        TrainingStateLoader(str(resume_from), state, run_state=run_state).attach(trainer)
    run_state.attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda t: evaluator.run([0]))
    TrainingStateSaver(str(tmp_path), state, run_state=run_state, file_prefix="", save_interval=1, n_saved=1,
                       save_final=True, final_filename="checkpoint_final.pt").attach(trainer)
    return trainer, evaluator, early, model


def test_best_model_and_early_stop_pick_up_where_the_run_stopped(tmp_path):
    scores = [0.5, 0.3, 0.4, 0.2]  # best at epoch 1; patience 2 stops the run after epoch 3
    whole_dir, part_dir = tmp_path / "whole", tmp_path / "part"
    trainer, _, _, _ = fake_training(whole_dir, scores)
    trainer.run([0], max_epochs=4)
    assert trainer.state.epoch == 3  # stopped early

    trainer, _, _, _ = fake_training(part_dir, scores)
    trainer.run([0], max_epochs=2)  # "killed" after epoch 2: one epoch without improvement so far
    saved = read_checkpoint(part_dir / "checkpoint_epoch=2.pt")
    assert saved["run_state"]["early_stop"] == [{"counter": 1, "best_score": 0.5}]
    assert saved["run_state"]["evaluator"] == {"best_metric": 0.5, "best_metric_epoch": 1}
    # model.pt's score, under its name (ignite tracks the file as its pattern names it; MONAI writes model.pt)
    assert saved["run_state"]["best_checkpoints"] == {"model.pt": [[0.5, "model_key_metric=0.5000.pt"]]}
    epoch1_weights = read_checkpoint(part_dir / "model.pt")

    resumed, evaluator, early, _ = fake_training(part_dir, scores, resume_from=part_dir / "checkpoint_epoch=2.pt")
    resumed.run([0], max_epochs=4)
    assert resumed.state.epoch == 3  # the same early stop: the counter went on from 1
    assert (early_stopping(early).counter, early_stopping(early).best_score) == (2, 0.5)
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.5, 1)
    # epoch 3 scored 0.4 < 0.5: model.pt still holds epoch 1's weights (a fresh saver would have replaced it)
    assert torch.equal(read_checkpoint(part_dir / "model.pt")["weight"], epoch1_weights["weight"])
    assert sorted(p.name for p in part_dir.iterdir()) == sorted(p.name for p in whole_dir.iterdir())


def test_a_checkpoint_without_run_state_still_resumes(tmp_path, caplog):
    model = torch.nn.Linear(1, 1)
    trainer = Engine(lambda e, b: None)
    TrainingStateSaver(str(tmp_path), {"model": model}, save_final=True,
                       final_filename="checkpoint_final.pt").attach(trainer)  # as before run_state existed
    trainer.run([0, 1], max_epochs=1)
    assert "run_state" not in read_checkpoint(tmp_path / "checkpoint_final.pt")

    resumed = Engine(lambda e, b: None)
    run_state = TrainingRunState(seed=0)
    TrainingStateLoader(str(tmp_path / "checkpoint_final.pt"), {"model": torch.nn.Linear(1, 1)},
                        run_state=run_state).attach(resumed)
    run_state.attach(resumed)
    with caplog.at_level(logging.WARNING):
        resumed.run([0, 1], max_epochs=2)
    assert resumed.state.iteration == 4
    assert "holds no run state" in caplog.text


def _best_savers(folder, names):
    model = torch.nn.Linear(1, 1)
    return {name: AtomicCheckpointSaver(str(folder), {"model": model}, save_key_metric=True, key_metric_name="dice",
                                        key_metric_filename=name) for name in names}


def test_best_checkpoint_savers_are_matched_by_file_name_not_by_order(tmp_path, caplog):
    savers = _best_savers(tmp_path, ["model.pt", "model_fracture.pt"])
    set_kept_files(saver_checkpoint(savers["model.pt"], "key_metric"), [(0.5, "model.pt")])
    set_kept_files(saver_checkpoint(savers["model_fracture.pt"], "key_metric"), [(0.25, "model_fracture.pt")])
    state = TrainingRunState(seed=0, evaluator_handlers=list(savers.values())).state_dict()
    assert state["best_checkpoints"] == {"model.pt": [[0.5, "model.pt"]],
                                         "model_fracture.pt": [[0.25, "model_fracture.pt"]]}

    # the resumed config lists them the other way round, with a third saver the checkpoint does not know
    resumed = _best_savers(tmp_path, ["extra.pt", "model_fracture.pt", "model.pt"])
    with caplog.at_level(logging.WARNING):
        TrainingRunState(seed=0, evaluator_handlers=list(resumed.values())).load_state_dict(state)
    assert kept_files(saver_checkpoint(resumed["model.pt"], "key_metric")) == [(0.5, "model.pt")]
    assert kept_files(saver_checkpoint(resumed["model_fracture.pt"], "key_metric")) == [(0.25, "model_fracture.pt")]
    assert kept_files(saver_checkpoint(resumed["extra.pt"], "key_metric")) == []
    assert "no best-metric bookkeeping for extra.pt" in caplog.text


def test_a_checkpoint_with_unnamed_best_savers_still_restores_them_in_order(tmp_path):
    state = TrainingRunState(seed=0).state_dict()
    state["best_checkpoints"] = [[[0.5, "model.pt"]]]  # as written before the savers were named
    resumed = _best_savers(tmp_path, ["model.pt"])
    TrainingRunState(seed=0, evaluator_handlers=list(resumed.values())).load_state_dict(state)
    assert kept_files(saver_checkpoint(resumed["model.pt"], "key_metric")) == [(0.5, "model.pt")]
