"""Resuming a training run exactly: :class:`TrainingRunState` (per-epoch seeding from
:func:`epoch_seed`, random states, best-metric and early-stop bookkeeping), saved with the weights
and the trainer by :class:`TrainingStateSaver` and restored by :class:`TrainingStateLoader`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from monaifrac.compat.ignite import checkpoint_filename, kept_files, set_kept_files
from monaifrac.compat.monai import early_stopping, saver_checkpoint
from monaifrac.compat.pytorch import set_last_lr
from monaifrac.handlers.checkpoints import AtomicCheckpointSaver, WeightsLoader

logger = logging.getLogger(__package__)  # "monaifrac.handlers", the name its log lines had before the split


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch of one process: 32 bits drawn by ``numpy.random.SeedSequence([seed, epoch, rank])``.

    Mixed, not added: seed 0 at epoch 2 shares nothing with seed 1 at epoch 1.
    """
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def _number(value):
    """A metric or score as a plain Python number (weights-only checkpoints refuse NumPy scalars)."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return value


class TrainingRunState:
    """What a resumed run needs beyond the weights: the same random numbers, the same bookkeeping.

    **Seeding.** At the start of every epoch the process is re-seeded from ``(seed, epoch,
    rank)`` (:func:`epoch_seed`): ``monai.utils.set_determinism`` (torch, NumPy, Python
    ``random``) and ``monai.data.utils.set_rnd`` on the training dataset (each MONAI
    ``Randomizable`` transform has its own NumPy generator, which ``set_determinism`` does not
    touch). Everything random in an epoch then follows from that seed: the DataLoader's shuffle
    (drawn from torch's generator, or from the loader's own ``generator``, re-seeded too), its
    worker seeds when ``num_workers > 0`` (MONAI's ``worker_init_fn`` re-seeds each worker's
    transforms from them), and the crops, flips, rotations... when transforms run in the main
    process. An epoch's random numbers do not depend on what the epochs before it drew, so a
    run resumed at the end of epoch *k* draws what an uninterrupted run draws in epoch *k + 1*
    without any stored random state; a run killed mid-epoch restarts that epoch from its start
    (checkpoints are written at epoch ends). Ranks of a distributed run get different
    augmentations.

    **Saved** (``state_dict``, tensors and plain numbers only, so checkpoints still load with
    ``weights_only=True``): the seed; the global random states (torch CPU and CUDA, NumPy,
    Python) and each training transform's generator at the save (restored on resume: they set
    where the random streams stand until the next epoch's re-seeding); the trainer's and the
    evaluator's best key metric and its epoch; each ``EarlyStopHandler``'s counter and best
    score (matched by order: they carry no name) and each key-metric ``CheckpointSaver``'s list of
    best files (matched by the file name it writes, e.g. ``model.pt``; so a resumed run
    replaces ``model.pt`` only with a better one, and stops early when the uninterrupted run
    would); the AMP gradient scalers' state when AMP is on.

    Args:
        seed: the run's seed (``seed`` in ``train.json``).
        evaluator: the validation engine, or None.
        evaluator_handlers: the evaluator's handlers (``@validate#handlers``); those holding
            bookkeeping (``EarlyStopHandler``, ``CheckpointSaver`` with ``save_key_metric``)
            are found by type, so reordering or disabling handlers is harmless.
        reseed_every_epoch: the per-epoch seeding above (default on).
    """

    def __init__(self, seed: int = 0, evaluator: Engine | None = None, evaluator_handlers=(),
                 reseed_every_epoch: bool = True):
        if int(seed) < 0:
            raise ValueError(f"seed must be ≥ 0, got {seed}")
        self.seed = int(seed)
        self.evaluator = evaluator
        self.evaluator_handlers = [h for h in (evaluator_handlers or []) if h is not None]
        self.reseed_every_epoch = bool(reseed_every_epoch)
        self.trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Attach to the trainer (``train.json``: ``$@run_state.attach(@train#trainer)`` in ``initialize``,
        as ``early_stop.set_trainer``; MONAI's bundle checks want every ``train#handlers`` item a component)."""
        if self.trainer is engine:
            return
        self.trainer = engine
        if self.reseed_every_epoch:
            engine.add_event_handler(Events.EPOCH_STARTED, self.seed_epoch)

    # ------------------------------------------------------------------------------- seeding
    @staticmethod
    def _rank() -> int:
        dist = torch.distributed
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def _dataset(self):
        loader = getattr(self.trainer, "data_loader", None)
        return getattr(loader, "dataset", None)

    def seed_epoch(self, engine: Engine) -> None:
        from monai.data.utils import set_rnd
        from monai.utils import set_determinism

        seed = epoch_seed(self.seed, engine.state.epoch, self._rank())
        set_determinism(seed=seed)
        dataset = self._dataset()
        if dataset is not None:
            set_rnd(dataset, seed)
        loader = getattr(self.trainer, "data_loader", None)
        for owner in (loader, getattr(loader, "sampler", None)):  # a DataLoader given its own generator
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(seed)

    # ------------------------------------------------------------------------------- bookkeeping
    def _of_type(self, kind) -> list:
        return [h for h in self.evaluator_handlers if isinstance(h, kind)]

    def _best_savers(self) -> dict:
        """The key-metric checkpoints of the evaluator's ``CheckpointSaver``s, by name: the fixed file
        name (``key_metric_filename``, e.g. ``model.pt``), else the prefix of the files it writes."""
        found = {}
        for saver in self._of_type(CheckpointSaver):
            checkpoint = saver_checkpoint(saver, "key_metric")
            if checkpoint is None:
                continue
            name = getattr(checkpoint.save_handler, "filename", None) or f"{checkpoint.filename_prefix}*key_metric*"
            while name in found:  # two savers writing the same names (into other folders)
                name += "+"
            found[name] = checkpoint
        return found

    def _early_stops(self) -> list:
        """The ignite ``EarlyStopping`` of each ``EarlyStopHandler``, in the handlers' order: they carry no
        name, so a resumed run matches them by their order among the early-stop handlers."""
        from monai.handlers import EarlyStopHandler

        return [s for s in (early_stopping(h) for h in self._of_type(EarlyStopHandler)) if s is not None]

    @staticmethod
    def _best_of(engine: Engine | None) -> dict | None:
        if engine is None:
            return None
        return {"best_metric": _number(getattr(engine.state, "best_metric", -1)),
                "best_metric_epoch": int(getattr(engine.state, "best_metric_epoch", -1))}

    def _scalers(self) -> dict:
        found = {}
        for name in ("scaler", "d_scaler"):
            scaler = getattr(self.trainer, name, None)
            if scaler is not None and hasattr(scaler, "state_dict") and scaler.is_enabled():
                found[name] = {k: _number(v) for k, v in scaler.state_dict().items()}
        return found

    def state_dict(self) -> dict:
        from monaifrac.checkpoints import rng_state, transform_rng_states

        dataset = self._dataset()
        return {
            "seed": self.seed,
            "reseed_every_epoch": self.reseed_every_epoch,
            "rng": rng_state(),
            "transforms": [] if dataset is None else transform_rng_states(getattr(dataset, "transform", dataset)),
            "trainer": self._best_of(self.trainer),
            "evaluator": self._best_of(self.evaluator),
            "early_stop": [{"counter": int(h.counter), "best_score": _number(h.best_score)}
                           for h in self._early_stops()],
            "best_checkpoints": {name: [[_number(p), f] for p, f in kept_files(checkpoint)]
                                 for name, checkpoint in self._best_savers().items()},
            "scalers": self._scalers(),
        }

    def load_state_dict(self, state: dict) -> None:
        from monaifrac.checkpoints import set_rng_state, set_transform_rng_states

        if int(state["seed"]) != self.seed:
            logger.warning("the checkpoint was trained with seed %s, this run has seed %s: the coming epochs "
                           "follow seed %s", state["seed"], self.seed, self.seed)
        set_rng_state(state["rng"])
        dataset = self._dataset()
        if dataset is not None and state.get("transforms"):
            if not set_transform_rng_states(getattr(dataset, "transform", dataset), state["transforms"]):
                logger.warning("the training transforms differ from the checkpoint's: their random states "
                               "were not restored")
        for engine, saved in ((self.trainer, state.get("trainer")), (self.evaluator, state.get("evaluator"))):
            if engine is not None and saved:
                engine.state.best_metric = saved["best_metric"]
                engine.state.best_metric_epoch = saved["best_metric_epoch"]
        early_stops, saved = self._early_stops(), state.get("early_stop", [])
        if early_stops and len(early_stops) != len(saved):
            logger.warning("%d early-stop handlers in this run, %d in the checkpoint: their bookkeeping starts afresh",
                           len(early_stops), len(saved))
        elif early_stops:
            for target, value in zip(early_stops, saved):
                target.counter, target.best_score = int(value["counter"]), value["best_score"]
        self._restore_best_savers(state.get("best_checkpoints") or {})
        for name, saved in (state.get("scalers") or {}).items():
            scaler = getattr(self.trainer, name, None)
            if scaler is not None and scaler.is_enabled():
                scaler.load_state_dict(saved)

    def _restore_best_savers(self, saved) -> None:
        """Give each key-metric ``CheckpointSaver`` the files it kept, matched by name (see :meth:`_best_savers`)."""
        savers = self._best_savers()
        if not savers:
            return  # e.g. a rank > 0 of a distributed run, which saves no model.pt
        if isinstance(saved, list):  # a checkpoint written before the savers were named: by their order
            if len(saved) != len(savers):
                logger.warning("%d best-metric checkpoint savers in this run, %d in the checkpoint: their "
                               "bookkeeping starts afresh", len(savers), len(saved))
                return
            saved = dict(zip(savers, saved))
        for name, checkpoint in savers.items():
            if name in saved:
                set_kept_files(checkpoint, saved[name])
            else:
                logger.warning("the checkpoint holds no best-metric bookkeeping for %s (it has %s): that saver "
                               "starts afresh", name, ", ".join(sorted(saved)) or "none")

    def summary(self) -> str:
        """One line for the log: what was restored."""
        parts = [f"run state (seed {self.seed}"]
        if self.evaluator is not None and getattr(self.evaluator.state, "best_metric_epoch", -1) > 0:
            name = getattr(self.evaluator.state, "key_metric_name", None) or "key metric"
            parts.append(f"best {name} {self.evaluator.state.best_metric:.4g} "
                         f"at epoch {self.evaluator.state.best_metric_epoch}")
        for h in self._early_stops():
            parts.append(f"early stop {h.counter}/{h.patience}")
        return ", ".join(parts) + ")"


class TrainingStateSaver(AtomicCheckpointSaver):
    """``CheckpointSaver`` that also saves the engine it is attached to, under ``"trainer"``, and
    the run's :class:`TrainingRunState` under ``"run_state"``.

    A bundle config cannot put ``@train#trainer`` in the ``save_dict`` of one of the
    trainer's own handlers (a circular reference), yet resuming needs the trainer's state
    (epoch, iteration). The engine is added when the handler is attached.

    In a resumed run, the per-epoch file of the epoch it resumed at (``checkpoint_epoch=N.pt``
    in ``save_dir``, when there) counts as already saved, so ``n_saved`` keeps applying: with
    ``n_saved=1`` it is removed once ``checkpoint_epoch=N+1.pt`` is whole, as in a run that was
    never stopped.

    Args:
        run_state: a :class:`TrainingRunState` (RNG states, best-metric and early-stop
            bookkeeping), or None.
        other args: as :class:`AtomicCheckpointSaver`.
    """

    def __init__(self, *args, run_state: TrainingRunState | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_state = run_state
        self._adopted = False

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        if self.run_state is not None:
            self.save_dict["run_state"] = self.run_state
        super().attach(engine)
        if saver_checkpoint(self, "interval") is not None and self.epoch_level:
            engine.add_event_handler(Events.EPOCH_STARTED, self._adopt_resumed_file)

    def _adopt_resumed_file(self, engine: Engine) -> None:
        if self._adopted:
            return
        self._adopted = True
        epoch = engine.state.epoch - 1
        checkpoint = saver_checkpoint(self, "interval")
        if epoch < 1 or epoch % self.save_interval or kept_files(checkpoint):
            return
        name = "checkpoint" if len(self.save_dict) > 1 else next(iter(self.save_dict))
        filename = checkpoint_filename(checkpoint, name, epoch)
        if (Path(self.save_dir) / filename).is_file():
            set_kept_files(checkpoint, [(epoch, filename)])


class TrainingStateLoader(WeightsLoader):
    """``CheckpointLoader`` that also restores the engine it is attached to, from ``"trainer"``,
    and the run's :class:`TrainingRunState`, from ``"run_state"``.

    Pair of :class:`TrainingStateSaver`: resumes model, optimiser, scheduler, the trainer's
    epoch/iteration counters and, through ``run_state``, the random states and the best-metric
    and early-stop bookkeeping. A checkpoint written before ``run_state`` existed still resumes
    (with a warning: that bookkeeping starts afresh).

    Args:
        run_state: the resumed run's :class:`TrainingRunState`, or None.
        other args: as :class:`WeightsLoader`.
    """

    def __init__(self, load_path: str, load_dict: dict, run_state: TrainingRunState | None = None, **kwargs):
        # a copy: a config hands the saver the same ``train_state`` dict, to which it adds its own entries
        super().__init__(load_path, dict(load_dict), **kwargs)
        self.run_state = run_state

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        if self.run_state is not None and "run_state" in self.saved_keys:
            self.load_dict["run_state"] = self.run_state
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        # ignite has already logged "resuming from iteration 0, epoch 0" before the load; say where it really is
        self.logger.info(f"Resuming training from epoch {engine.state.epoch} (iteration {engine.state.iteration}) "
                         f"saved in {self.load_path}; running to epoch {engine.state.max_epochs}")
        if self.run_state is not None:
            if "run_state" in self.load_dict:
                self.logger.info(f"restored {self.run_state.summary()}")
            else:
                self.logger.warning(f"{self.load_path} holds no run state (an older checkpoint): random states, "
                                    "best-metric and early-stop bookkeeping start afresh")
        self._follow_new_length(engine)

    def _follow_new_length(self, engine: Engine) -> None:
        """Resumed with another ``max_epochs``: put a cosine schedule on the curve of the new length.

        The saved ``CosineAnnealingLR`` still spans the old run (``T_max``); past it the cosine
        would climb back up. Training 50 epochs and resuming with ``max_epochs`` 100 instead
        continues as a 100-epoch run would at epoch 50: ``T_max`` becomes 100 and the learning
        rate that run's value at this epoch.
        """
        import math

        scheduler = self.load_dict.get("lr_scheduler")
        if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            return
        length = int(engine.state.max_epochs)
        if scheduler.T_max == length:
            return
        old, scheduler.T_max = scheduler.T_max, length
        progress = min(scheduler.last_epoch, length) / length
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * progress)) / 2
        set_last_lr(scheduler, [g["lr"] for g in scheduler.optimizer.param_groups])
        self.logger.info(f"learning-rate cosine stretched from {old} to {length} epochs: lr now "
                         f"{scheduler.get_last_lr()[0]:.3g} at epoch {engine.state.epoch}")
