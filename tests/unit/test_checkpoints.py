"""Checkpoints: weights-only reading with clear errors, atomic saving, stopping on a non-finite loss."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monaifrac.checkpoints import read_checkpoint
from monaifrac.handlers import AtomicCheckpointSaver, StopOnNonFiniteLoss, TrainingDiverged, WeightsLoader
from monaifrac.io import InputError

RAN = []


class Payload:
    """Pickles as a call to RAN.append: loading it with plain pickle would run code."""

    def __reduce__(self):
        return (RAN.append, ("code ran",))


def test_read_checkpoint_errors_name_the_file(tmp_path):
    net = torch.nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "good.pt")
    assert torch.equal(read_checkpoint(tmp_path / "good.pt")["weight"], net.weight)

    with pytest.raises(InputError, match=r"missing\.pt: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pt: checkpoint is empty"):
        read_checkpoint(tmp_path / "empty.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.pt: not a readable checkpoint, truncated or corrupt"):
        read_checkpoint(tmp_path / "cut.pt")


def test_a_checkpoint_carrying_code_is_refused_before_it_runs(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "extra": Payload()}, tmp_path / "evil.pt")
    RAN.clear()
    with pytest.raises(InputError, match=r"evil\.pt: refused: not a weights-only checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"evil\.pt"):
        WeightsLoader(str(tmp_path / "evil.pt"), {"model": torch.nn.Linear(2, 2)})
    assert RAN == []


def counting_engine(losses):
    """An engine whose iteration i returns {"loss": losses[i]}; a Linear model stands in for weights."""
    model = torch.nn.Linear(2, 1)

    def step(engine, batch):
        with torch.no_grad():
            model.weight.add_(1.0)
        return {"loss": torch.tensor(losses[engine.state.iteration - 1])}

    return Engine(step), model


def test_atomic_saver_keeps_the_previous_file_when_a_save_fails(tmp_path, monkeypatch):
    engine, model = counting_engine([1.0] * 4)
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_interval=1, epoch_level=True, n_saved=1,
                                  save_final=False, file_prefix="")
    saver.attach(engine)
    engine.run([0, 1], max_epochs=1)
    (first,) = tmp_path.iterdir()  # model_epoch=1.pt: ignite names a single object by its key
    saved = read_checkpoint(first)
    assert torch.equal(saved["weight"], model.weight)

    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):  # writes half a file, then the disk is full
        real_save(obj, f, *args, **kwargs)
        f.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        engine.run([0, 1], max_epochs=2)
    assert torch.equal(read_checkpoint(first)["weight"], saved["weight"])  # still whole and loadable
    assert list(tmp_path.iterdir()) == [first]  # no temporary file behind


def test_non_finite_loss_stops_training_and_writes_no_final_checkpoint(tmp_path):
    engine, model = counting_engine([1.0, 0.5, float("nan"), 0.2])
    StopOnNonFiniteLoss().attach(engine)
    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_final=True, final_filename="final.pt",
                          save_interval=0).attach(engine)
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1, iteration 3"):
        engine.run([0, 1, 2, 3], max_epochs=1)
    assert engine.state.iteration == 3  # stopped at the first bad iteration
    assert not (tmp_path / "final.pt").exists()

    engine, model = counting_engine([1.0, float("inf")])
    StopOnNonFiniteLoss().attach(engine)
    with pytest.raises(TrainingDiverged, match="loss is inf"):
        engine.run([0, 1], max_epochs=1)


def test_weights_after_a_non_finite_loss_never_become_the_best_model(tmp_path):
    """The epoch that diverges is never validated: model.pt keeps the last validated best weights, although
    the diverged weights would score higher (here the score grows with every step). A handler that only
    warned, or ended the epoch early (``terminate_epoch``), would let the epoch be validated and saved."""
    from ignite.engine import Events

    engine, model = counting_engine([1.0, 1.0, 1.0, float("nan")])  # epoch 2's second iteration diverges
    StopOnNonFiniteLoss().attach(engine)
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED,
                                lambda e: e.state.metrics.update(score=float(model.weight.detach().sum())))
    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_key_metric=True, key_metric_name="score",
                          key_metric_filename="model.pt").attach(evaluator)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 2, iteration 4"):
        engine.run([0, 1], max_epochs=3)
    assert evaluator.state.epoch == 1  # validated after epoch 1 only
    best = read_checkpoint(tmp_path / "model.pt")["weight"]
    # epoch 1's weights: two steps before the fourth (a float difference, so close rather than equal)
    torch.testing.assert_close(best, model.weight.detach() - 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_fixed_name_model_pt_survives_a_failed_save(tmp_path, monkeypatch):
    from ignite.engine import Events

    engine, model = counting_engine([1.0] * 8)

    @engine.on(Events.EPOCH_COMPLETED)
    def better_every_epoch(e):
        e.state.metrics = {"dice": float(e.state.epoch)}

    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_key_metric=True, key_metric_name="dice",
                          key_metric_filename="model.pt", save_final=False, save_interval=0).attach(engine)
    engine.run([0, 1], max_epochs=1)
    first = read_checkpoint(tmp_path / "model.pt")["weight"].clone()
    engine.run([0, 1], max_epochs=2)  # a better epoch replaces model.pt
    second = read_checkpoint(tmp_path / "model.pt")["weight"].clone()
    assert not torch.equal(first, second)

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # as a kill during the save would stop it

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0, 1], max_epochs=3)
    assert torch.equal(read_checkpoint(tmp_path / "model.pt")["weight"], second)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


KILLED_DURING_SAVE = """
import sys, time, torch
from ignite.engine import Engine
from monaifrac.handlers import AtomicCheckpointSaver

folder, first_epochs = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = torch.nn.Linear(256, 256)

def step(engine, batch):
    with torch.no_grad():
        model.weight.add_(1.0)

engine = Engine(step)
AtomicCheckpointSaver(folder, {"model": model}, save_interval=1, epoch_level=True, n_saved=1, save_final=False,
                      file_prefix="").attach(engine)
engine.run([0], max_epochs=first_epochs)
real_save = torch.save

def slow_save(obj, f, *args, **kwargs):  # half the bytes reach the disk, then the process hangs there
    real_save(obj, f, *args, **kwargs)
    f.flush()
    f.truncate(f.tell() // 2)
    f.flush()
    print("saving", flush=True)
    time.sleep(60)

torch.save = slow_save
engine.run([0], max_epochs=first_epochs + 1)
"""


def test_a_run_killed_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", KILLED_DURING_SAVE, str(tmp_path), "2"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"  # epoch 3's checkpoint is half written
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    (leftover,) = [p.name for p in tmp_path.iterdir() if p.name != "model_epoch=2.pt"]  # the half-written one
    assert leftover.startswith("tmp")  # never took a real name
    engine, model = counting_engine([1.0])  # the next run in the folder (a resume) clears it
    AtomicCheckpointSaver(str(tmp_path), {"model": model}, save_interval=1, epoch_level=True, n_saved=1,
                          save_final=False, file_prefix="")
    assert [p.name for p in tmp_path.iterdir()] == ["model_epoch=2.pt"]
    torch.manual_seed(0)
    expected = torch.nn.Linear(256, 256).weight.detach() + 1.0 + 1.0  # the state after epoch 2, whole
    assert torch.equal(read_checkpoint(tmp_path / "model_epoch=2.pt")["weight"], expected)
