"""Kill and resume, and determinism: a training run SIGKILLed mid-epoch and resumed ends EQUAL to
one never stopped; two identical runs are equal (issue 8, items 1 and 6).

One module fixture runs, as a user types them and all at once (2 cores: each process has one
thread, the same count for every run, so float sums add up in the same order):

- ``sup/A`` and ``sup/C``: ``train.json``, 3 epochs, uninterrupted (C checks determinism);
- ``sup/B``: the same, SIGKILLed in epoch 2 (after its first iteration), then resumed from
  ``models/checkpoint_epoch=1.pt`` into the same bundle root;
- ``gan/A`` and ``gan/B``: the same pair for ``train.json`` + ``train_gan.json``;
- ``sup/S``: ``train.json`` stopped by ``--stop_epoch 1`` (a part of the 3-epoch schedule), then resumed.

Small on purpose: 8 training films, 32 x 32 patches, 4 iterations an epoch, 2 validation films.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from tests.integration.conftest import REPO, TRAIN_JSON, bundle_cmd

pytestmark = pytest.mark.slow

GAN_CONFIG = f"['{TRAIN_JSON}','bundle/configs/train_gan.json']"
EPOCHS = 3
TINY = ["--max_epochs", str(EPOCHS), "--patch_size", "[32,32]", "--num_workers", "0", "--batch_size", "2",
        "--num_samples", "2", "--max_items", "8", "--val_max_items", "2", "--log_every", "1", "--film_max_side", "192",
        "--film_long_side", "192"]
KILL_AT = "Epoch: 2/3, Iter: 1/"  # the StatsHandler line of epoch 2's first iteration
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TIMEOUT = 400


def train_args(config: str, dataset_dir: Path, root: Path, *more: str) -> list[str]:
    return bundle_cmd("run", "--config_file", config, "--dataset_dir", str(dataset_dir), "--bundle_root", str(root),
                      *TINY, *more)


class Run:
    """A bundle run in the background, its output kept in ``log``; SIGKILLed at ``kill_at`` if given."""

    def __init__(self, args: list[str], kill_at: str | None = None):
        self.lines: list[str] = []
        self.killed_at_marker = False
        self.proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.kill_at = kill_at
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.kill_at and not self.killed_at_marker and self.kill_at in line:
                self.proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: as a crash or an OOM kill
                self.killed_at_marker = True

    def wait(self) -> Run:
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            self.stop()
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=30)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def check(self, rc: int = 0) -> str:
        assert self.proc.returncode == rc, (f"rc {self.proc.returncode} (expected {rc}) for {' '.join(self.proc.args)}"
                                            f"\n--- output tail ---\n{self.log[-6000:]}")
        return self.log


@pytest.fixture(scope="module")
def runs(prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_exact")
    data = prepared.dataset_dir
    modes = {"sup": TRAIN_JSON, "gan": GAN_CONFIG}
    first = {"sup/A": Run(train_args(TRAIN_JSON, data, root / "sup" / "A")),
             "sup/C": Run(train_args(TRAIN_JSON, data, root / "sup" / "C")),
             "sup/B": Run(train_args(TRAIN_JSON, data, root / "sup" / "B"), kill_at=KILL_AT),
             "gan/A": Run(train_args(GAN_CONFIG, data, root / "gan" / "A")),
             "gan/B": Run(train_args(GAN_CONFIG, data, root / "gan" / "B"), kill_at=KILL_AT),
             "sup/S": Run(train_args(TRAIN_JSON, data, root / "sup" / "S", "--stop_epoch", "1"))}
    wait_all(first.values())
    out = {name: {"root": root / name, "log": run.check(-signal.SIGKILL if name.endswith("B") else 0)}
           for name, run in first.items()}
    for mode in modes:
        assert first[f"{mode}/B"].killed_at_marker, out[f"{mode}/B"]["log"][-3000:]
        b = out[f"{mode}/B"]
        b["after_kill"] = sorted(p.name for p in (b["root"] / "models").iterdir())
        b["events_before_resume"] = set((b["root"] / "eval").glob("events.out.tfevents.*"))
    s = out["sup/S"]
    s["after_stop"] = sorted(p.name for p in (s["root"] / "models").iterdir())
    s["stopped_final"] = load(s["root"] / "models" / "checkpoint_final.pt")
    s["stopped_epoch_1"] = load(s["root"] / "models" / "checkpoint_epoch=1.pt")
    resumed = {mode: Run(train_args(config, data, root / mode / "B", "--resume_from",
                                    str(root / mode / "B" / "models" / "checkpoint_epoch=1.pt")))
               for mode, config in modes.items()}
    resumed["sup/S"] = Run(train_args(TRAIN_JSON, data, s["root"], "--resume_from",
                                      str(s["root"] / "models" / "checkpoint_epoch=1.pt")))
    wait_all(resumed.values())
    for name, run in resumed.items():
        out[name if "/" in name else f"{name}/B"]["resumed_log"] = run.check()
    return out


def wait_all(runs) -> None:
    """Wait for every run; should one hang past the timeout, leave none of them behind."""
    runs = list(runs)
    try:
        for run in runs:
            run.wait()
    finally:
        for run in runs:
            run.stop()


# ----------------------------------------------------------------------------------------- helpers
def assert_same(a, b, path: str = "") -> None:
    """Exactly equal, tensors by ``torch.equal`` (dtype and every bit), recursively."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), \
            f"{path}: max |diff| {(a.double() - b.double()).abs().max().item() if a.shape == b.shape else a.shape}"
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"  # NaN equals NaN here


def load(path: Path):
    from monaifrac.checkpoints import read_checkpoint

    return read_checkpoint(path)  # weights_only=True: RNG states and bookkeeping included


def scalars(*event_files: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of TensorBoard event files (one process each)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for f in event_files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def events(root: Path) -> list[Path]:
    return sorted((root / "eval").glob("events.out.tfevents.*"))


def completed_epochs(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"(?:SupervisedTrainer|AdversarialTrainer) - INFO - Epoch\[(\d+)\] Complete",
                                       log)]


# ----------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("mode", ["sup", "gan"])
def test_killed_mid_epoch_then_resumed_ends_equal_to_an_uninterrupted_run(runs, mode):
    a, b = runs[f"{mode}/A"], runs[f"{mode}/B"]
    # the kill landed inside epoch 2: epoch 1's state is on disk, epoch 2's is not
    assert b["after_kill"] == ["checkpoint_epoch=1.pt", "model.pt"], b["after_kill"]
    assert completed_epochs(b["log"]) == [1]

    log = b["resumed_log"]
    assert "Resuming training from epoch 1 (iteration 4)" in log, log[-3000:]
    assert re.search(r"restored run state \(seed 0, best val_fracture_dice [\d.e-]+ at epoch 1, early stop 0/30\)",
                     log), log[-3000:]
    assert completed_epochs(log) == [2, 3]

    # every tensor and number of the final state: weights, optimisers (Adam moments and steps), scheduler,
    # trainer counters, RNG states, best-metric and early-stop bookkeeping; the discriminator's in GAN mode
    final_a = load(a["root"] / "models" / "checkpoint_final.pt")
    final_b = load(b["root"] / "models" / "checkpoint_final.pt")
    expected = {"model", "optimizer", "lr_scheduler", "trainer", "run_state"}
    if mode == "gan":
        expected |= {"discriminator", "d_optimizer"}
    assert set(final_a) == expected
    assert final_a["trainer"]["iteration"] == EPOCHS * final_a["trainer"]["epoch_length"]
    assert_same(final_a, final_b)
    # the best-metric checkpoint too: the resumed run replaced model.pt exactly when the other one did
    assert_same(load(a["root"] / "models" / "model.pt"), load(b["root"] / "models" / "model.pt"))
    # and n_saved=1 still holds: checkpoint_epoch=1.pt went once epoch 2's was written
    assert sorted(p.name for p in (b["root"] / "models").iterdir()) == \
        sorted(p.name for p in (a["root"] / "models").iterdir()) == \
        ["checkpoint_epoch=3.pt", "checkpoint_final.pt", "model.pt"]

    # the curves continue: epochs 2-3 of the resumed process are those of the uninterrupted run, bit for bit
    resumed_events = [f for f in events(b["root"]) if f not in b["events_before_resume"]]
    assert len(resumed_events) == 1
    resumed, whole = scalars(*resumed_events), scalars(*events(a["root"]))
    epoch_length = final_a["trainer"]["epoch_length"]
    assert sorted(resumed["val_fracture_dice"]) == [2, 3]
    assert sorted(resumed["train_loss"]) == list(range(epoch_length + 1, EPOCHS * epoch_length + 1))
    assert set(resumed) == set(whole)
    for tag, values in resumed.items():
        assert values == {step: whole[tag][step] for step in values}, tag


def test_stop_epoch_ends_the_run_after_that_epoch_and_resuming_continues_exactly(runs):
    """``stop_epoch`` stops a 3-epoch schedule after epoch 1 as a finished run ends (rc 0, epoch 1's
    checkpoint and a final one holding epoch 1's state); resumed with the same max_epochs, the run ends
    equal to one never stopped (the learning rate followed the 3-epoch cosine throughout)."""
    a, s = runs["sup/A"], runs["sup/S"]
    assert "stop_epoch 1 reached (of max_epochs 3)" in s["log"], s["log"][-3000:]
    assert s["after_stop"] == ["checkpoint_epoch=1.pt", "checkpoint_final.pt", "model.pt"], s["after_stop"]
    epoch_length = s["stopped_final"]["trainer"]["epoch_length"]
    assert s["stopped_final"]["trainer"]["iteration"] == epoch_length  # one epoch, then the run ended
    assert s["stopped_final"]["trainer"]["max_epochs"] == 3
    assert_same(s["stopped_final"]["model"], s["stopped_epoch_1"]["model"])
    # the stopped run's one epoch is the uninterrupted run's first (same lr: the 3-epoch cosine's)
    assert scalars(*events(s["root"]))["val_fracture_dice"][1] == scalars(*events(a["root"]))["val_fracture_dice"][1]

    assert completed_epochs(s["resumed_log"]) == [2, 3]
    assert_same(load(a["root"] / "models" / "checkpoint_final.pt"), load(s["root"] / "models" / "checkpoint_final.pt"))


def test_two_identical_runs_give_identical_metrics_and_weights(runs):
    """Same seed, same data, same thread count: the same validation metrics every epoch, the same weights.
    (``set_determinism`` alone would not do: MONAI's random transforms keep their own generators.)"""
    a, c = runs["sup/A"], runs["sup/C"]
    first, second = scalars(*events(a["root"])), scalars(*events(c["root"]))
    assert sorted(first["val_fracture_dice"]) == [1, 2, 3]
    assert {t for t in first if t.startswith("val_")} >= {"val_fracture_dice", "val_bone_dice", "val_fracture_hd95"}
    assert first == second
    assert_same(load(a["root"] / "models" / "checkpoint_final.pt"), load(c["root"] / "models" / "checkpoint_final.pt"))
    assert_same(load(a["root"] / "models" / "model.pt"), load(c["root"] / "models" / "model.pt"))
    # the killed runs, up to their kill, are a third and fourth identical run
    for mode in ("sup", "gan"):
        killed = scalars(*runs[f"{mode}/B"]["events_before_resume"])
        whole = scalars(*events(runs[f"{mode}/A"]["root"]))
        assert killed["val_fracture_dice"] == {1: whole["val_fracture_dice"][1]}
        for tag, values in killed.items():
            assert values == {step: whole[tag][step] for step in values}, (mode, tag)
