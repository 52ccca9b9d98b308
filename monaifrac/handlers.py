"""Ignite handlers MONAI lacks: overlays and learning rate in TensorBoard, metrics as JSON, atomic
checkpoints, and training state that resumes exactly (:class:`TrainingRunState`).

Each handler is attached by a bundle config (``train#handlers`` / ``validate#handlers``)
and does one thing.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monaifrac.io import from_monai_frame, write_text
from monaifrac.visualize import overlay

logger = logging.getLogger(__name__)


def _first_item(engine: Engine, key: str):
    """``key`` of the first film of the engine's last batch, as a numpy array (C, W, H)."""
    output = engine.state.output
    item = output[0] if isinstance(output, (list, tuple)) else output
    value = item.get(key) if isinstance(item, dict) else None
    if value is None:
        return None
    value = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return value[0] if value.ndim == 4 else value  # batched (not decollated) output


class OverlayImageHandler:
    """Log image+label and image+prediction overlays of one validation film to TensorBoard.

    After each evaluator run, the first film of its first batch (the first validation film,
    the same one every epoch) is drawn twice, ground truth and prediction, side by side, with
    :func:`monaifrac.visualize.overlay` (bone blue, fracture red). The step is the
    evaluator's epoch, which MONAI's ``ValidationHandler`` sets to the trainer's.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter``.
        tag: image tag.
    """

    def __init__(self, summary_writer, tag: str = "val_overlay"):
        self.writer = summary_writer
        self.tag = tag
        self._first: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._capture)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._first = None

    def _capture(self, engine: Engine) -> None:
        """Keep the first film of the run's first batch (the engine's output moves on)."""
        if self._first is None:
            items = {k: _first_item(engine, k) for k in ("image", "label", "pred")}
            self._first = {k: None if v is None else v.clone() for k, v in items.items()}

    def __call__(self, engine: Engine) -> None:
        if self._first is None:
            return
        image, label, pred = self._first["image"], self._first["label"], self._first["pred"]
        if image is None or pred is None or self.writer is None:
            return
        grey = from_monai_frame(image[0].numpy())
        pred_map = from_monai_frame(_to_index(pred))
        panels = [overlay(grey, pred_map)]
        if label is not None:
            panels.insert(0, overlay(grey, from_monai_frame(_to_index(label))))
        picture = np.concatenate(panels, axis=1)
        self.writer.add_image(self.tag, picture, global_step=engine.state.epoch, dataformats="HWC")
        self.writer.flush()


def _to_index(t: torch.Tensor) -> np.ndarray:
    """(C, W, H) one-hot/probabilities or (1, W, H) indices → (W, H) uint8 class indices."""
    arr = t.numpy()
    return (arr.argmax(0) if arr.shape[0] > 1 else arr[0]).astype(np.uint8)


class LearningRateLogger:
    """Write the optimiser's learning rate to TensorBoard at every epoch end (tag ``lr``)."""

    def __init__(self, summary_writer, optimizer: torch.optim.Optimizer, tag: str = "lr"):
        self.writer = summary_writer
        self.optimizer = optimizer
        self.tag = tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar(self.tag, self.optimizer.param_groups[0]["lr"], engine.state.epoch)


class MetricsJSONWriter:
    """Write the engine's metrics (and how many films they cover) to a JSON file when it completes.

    The file is replaced atomically; values are plain floats.
    """

    def __init__(self, filepath: str | Path, extra: dict | None = None):
        self.filepath = Path(filepath)
        self.extra = extra or {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = {k: _plain(v) for k, v in engine.state.metrics.items()}
        n_films = len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None
        payload = {"metrics": metrics, "films": n_films, **self.extra}
        write_text(self.filepath, json.dumps(payload, indent=2) + "\n")
        logger.info("metrics written to %s", self.filepath)


class PresenceMetrics:
    """Image-level presence and per-body-part figures of a validation run, for TensorBoard.

    For every validated film it keeps the presence score (``fracture_score``, set by
    :class:`monaifrac.transforms.FractureScored` in the evaluator's postprocessing), whether
    its label has a fracture, its fracture Dice and its ``body_part`` (from the datalist
    item). When the epoch completes it adds to ``engine.state.metrics``
    ``<prefix>_presence_auc`` and ``<prefix>_fracture_dice_pos_<part>`` for each of hand,
    leg, hip, shoulder that has a fractured film (a film showing several parts counts in
    each), so that ``StatsHandler``, ``TensorBoardStatsHandler`` and ``MetricsSaver``
    attached after it report them, and logs the presence PR curve with the writer's
    ``add_pr_curve``. The step is the trainer's epoch, as for the other validation figures.

    Args:
        summary_writer: a ``SummaryWriter`` or None (figures are still added to the metrics).
        prefix: metric name prefix.
        score_key: key of the presence score in the output items.
    """

    def __init__(self, summary_writer=None, prefix: str = "val", score_key: str = "fracture_score"):
        self.writer = summary_writer
        self.prefix = prefix
        self.score_key = score_key
        self.films: list[tuple[float, bool, float, str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.films = []

    def _collect(self, engine: Engine) -> None:
        from monaifrac.metrics import score

        outputs, batch = engine.state.output, engine.state.batch
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        batch = batch if isinstance(batch, (list, tuple)) else [batch] * len(outputs)
        for item, source in zip(outputs, batch):
            if self.score_key not in item:
                continue
            pred, label = item["pred"], item["label"]
            truth = label[2] > 0.5
            dice = score(pred[2] > 0.5, truth, "dice_pos") if bool(truth.any()) else float("nan")
            part = source.get("body_part", "unknown") if isinstance(source, dict) else "unknown"
            self.films.append((float(item[self.score_key]), bool(truth.any()), dice, str(part)))

    def __call__(self, engine: Engine) -> None:
        from monaifrac.evaluation.stats import roc_auc

        import torch.distributed as dist
        from monai.utils import evenly_divisible_all_gather

        parts = ("hand", "leg", "hip", "shoulder")
        local = torch.tensor([[f[0], float(f[1]), f[2], sum(1 << i for i, p in enumerate(parts) if p in f[3].split("+"))]
                              for f in self.films], dtype=torch.float64).reshape(-1, 4)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            table = evenly_divisible_all_gather(local, concat=True)  # each rank saw part of the films, counts may differ
        else:
            table = local
        if table.numel() == 0:
            return
        scores, labels = table[:, 0].tolist(), [int(v) for v in table[:, 1].tolist()]
        auc = roc_auc(labels, scores)
        if not np.isnan(auc):
            engine.state.metrics[f"{self.prefix}_presence_auc"] = auc
        for i, part in enumerate(parts):
            rows = table[(table[:, 1] > 0) & ((table[:, 3].long() >> i) & 1 == 1)]
            if len(rows):
                engine.state.metrics[f"{self.prefix}_fracture_dice_pos_{part}"] = float(rows[:, 2].mean())
        if self.writer is not None and 0 < sum(labels) < len(labels):
            self.writer.add_pr_curve(f"{self.prefix}_presence_pr", np.asarray(labels), np.asarray(scores),
                                     global_step=engine.state.epoch)
            self.writer.flush()


def output_scalars(keys, prefix: str = "train_"):
    """An ``output_transform`` for Stats/TensorBoard handlers reading several scalars of an iteration.

    One key gives that value alone (logged under the handler's ``tag_name``); several give
    ``{prefix + key: value}``, which MONAI's ``TensorBoardStatsHandler`` logs as one curve each.
    Reads the output dict itself where the trainer does not decollate (``train.json``: the batch is
    post-processed whole), or the first item of a decollated output, where MONAI repeats per-batch scalars.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)

    def transform(output):
        item = output[0] if isinstance(output, (list, tuple)) else output
        values = {k: float(torch.as_tensor(item[k]).detach().float()) for k in keys}
        return values[keys[0]] if len(keys) == 1 else {prefix + k: v for k, v in values.items()}

    return transform


PREDICTIONS_COLUMNS = ("film", "fracture_score", "fractured", "fracture_area_px", "label_file")


class PredictionsCSVWriter:
    """Write ``predictions.csv``: one row per film an inference run labelled.

    Columns: ``film`` (the source path), ``fracture_score`` (from
    :class:`monaifrac.transforms.FractureScored`, in [0, 1]), ``fractured`` (1 when the score
    reaches ``threshold``), ``fracture_area_px`` (pixels labelled fracture) and
    ``label_file`` (the label map written for it). Rows are sorted by film and the file is
    replaced atomically when the run completes, so a crash never leaves half a table.

    Args:
        output_dir: folder of the label maps; the CSV goes there.
        threshold: presence threshold on ``fracture_score``.
        pred_key, score_key: keys of the engine's (decollated) output items.
        label_ext: suffix of the label maps (``SaveImaged``'s ``output_ext``).
    """

    def __init__(self, output_dir: str | Path, threshold: float = 0.5, pred_key: str = "pred",
                 score_key: str = "fracture_score", label_ext: str = ".png", filename: str = "predictions.csv"):
        self.output_dir = Path(output_dir)
        self.threshold = float(threshold)
        self.pred_key, self.score_key, self.label_ext = pred_key, score_key, label_ext
        self.filename = filename
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        from monaifrac.transforms import film_stem

        output = engine.state.output
        for item in output if isinstance(output, (list, tuple)) else [output]:
            pred = item[self.pred_key]
            film = str((getattr(pred, "meta", None) or {}).get("filename_or_obj", ""))
            score = float(item[self.score_key])
            self.rows.append({
                "film": film,
                "fracture_score": f"{score:.6f}",
                "fractured": int(score >= self.threshold),
                "fracture_area_px": int((torch.as_tensor(pred) == 2).sum()),
                "label_file": str(self.output_dir / f"{film_stem(film)}{self.label_ext}"),
            })

    def __call__(self, engine: Engine) -> None:
        import csv
        import io

        rows = self.rows
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # a sharded run (multi_gpu_inference.json): every rank labelled its own films; one table
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            if torch.distributed.get_rank() != 0:
                return
            rows = [row for part in gathered for row in part]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=PREDICTIONS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["film"]))
        path = self.output_dir / self.filename
        write_text(path, buffer.getvalue())
        logger.info("%d film(s) listed in %s", len(rows), path)


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


from monai.handlers import CheckpointLoader, CheckpointSaver  # noqa: E402


from ignite.handlers import DiskSaver  # noqa: E402


class _SaveFirstDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` (temporary file, then rename) that removes an old file only
    after the new one is complete, and never a fixed-name file, which the rename replaces.

    Ignite's ``Checkpoint`` removes the oldest file *before* writing the new one, so with
    ``n_saved=1`` (or a fixed ``model.pt``) a kill between the two left no checkpoint at all.
    """

    _TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile(dir=...), as ignite writes

    def __init__(self, dirname, filename: str | None = None):
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename
        self._pending: list[str] = []
        # a run killed during a save leaves ignite's temporary file (the real ones stay whole):
        # the next run in this folder (a resume) clears it
        for p in self.dirname.glob("tmp*"):
            if self._TEMPORARY.fullmatch(p.name) and p.is_file():
                p.unlink(missing_ok=True)

    def __call__(self, checkpoint, filename: str, metadata=None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)
        pending, self._pending = self._pending, []
        for old in pending:
            if self.filename is None and old != filename and (self.dirname / old).exists():
                super().remove(old)

    def remove(self, filename: str) -> None:
        self._pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes: the previous checkpoint stays loadable until
    the new one is whole.

    MONAI turns ignite's atomic saving off (it once lost group/others read permissions, which
    ignite now restores) and ignite deletes the old file before writing the new one, so a run
    killed during a save could leave a truncated ``model.pt``, or none. Here each file is written
    to a temporary file in the same folder and renamed over the old one, and older files are
    removed only afterwards (:class:`_SaveFirstDiskSaver`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                old = checkpoint.save_handler
                checkpoint.save_handler = _SaveFirstDiskSaver(old.dirname, getattr(old, "filename", None))

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        if isinstance(e, TrainingDiverged):
            raise e  # the state is not finite: keep the last good checkpoints, write no "final" one
        super().exception_raised(engine, e)


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
    score and each key-metric ``CheckpointSaver``'s list of best files (so a resumed run
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

    def _best_savers(self) -> list:
        return [h for h in self._of_type(CheckpointSaver) if h._key_metric_checkpoint is not None]

    def _early_stops(self) -> list:
        from monai.handlers import EarlyStopHandler

        return [h._handler for h in self._of_type(EarlyStopHandler) if h._handler is not None]

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
            "best_checkpoints": [[[_number(p), str(f)] for p, f in saver._key_metric_checkpoint._saved]
                                 for saver in self._best_savers()],
            "scalers": self._scalers(),
        }

    def load_state_dict(self, state: dict) -> None:
        from ignite.handlers import Checkpoint

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
        pairs = ((self._early_stops(), state.get("early_stop", []), "early-stop handlers"),
                 (self._best_savers(), state.get("best_checkpoints", []), "best-metric checkpoint savers"))
        for targets, saved, what in pairs:
            if not targets:
                continue  # e.g. a rank > 0 of a distributed run, which saves no model.pt
            if len(targets) != len(saved):
                logger.warning("%d %s in this run, %d in the checkpoint: their bookkeeping starts afresh",
                               len(targets), what, len(saved))
                continue
            for target, value in zip(targets, saved):
                if isinstance(value, dict):  # ignite EarlyStopping
                    target.counter, target.best_score = int(value["counter"]), value["best_score"]
                else:  # a key-metric CheckpointSaver
                    target._key_metric_checkpoint._saved = [Checkpoint.Item(p, f) for p, f in value]
        for name, saved in (state.get("scalers") or {}).items():
            scaler = getattr(self.trainer, name, None)
            if scaler is not None and scaler.is_enabled():
                scaler.load_state_dict(saved)

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
        if self._interval_checkpoint is not None and self.epoch_level:
            engine.add_event_handler(Events.EPOCH_STARTED, self._adopt_resumed_file)

    def _adopt_resumed_file(self, engine: Engine) -> None:
        if self._adopted:
            return
        self._adopted = True
        epoch = engine.state.epoch - 1
        checkpoint = self._interval_checkpoint
        if epoch < 1 or epoch % self.save_interval or checkpoint._saved:
            return
        from ignite.handlers import Checkpoint

        name = "checkpoint" if len(self.save_dict) > 1 else next(iter(self.save_dict))
        filename = checkpoint._get_filename_pattern(None).format(
            filename_prefix=checkpoint.filename_prefix, ext=checkpoint.ext, name=name,
            score_name=checkpoint.score_name, score=str(epoch), global_step=None)
        if (Path(self.save_dir) / filename).is_file():
            checkpoint._saved.append(Checkpoint.Item(epoch, filename))


class WeightsLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader``, reading through :func:`monaifrac.checkpoints.read_checkpoint`.

    The file is checked when the handler is built, before any engine runs, so a missing,
    truncated, corrupt or code-carrying checkpoint stops a run with one line naming it
    (:class:`monaifrac.io.InputError`) and nothing is written over earlier checkpoints.
    Loading itself is weights-only, as in MONAI 1.6.
    """

    def __init__(self, load_path: str, load_dict: dict, **kwargs):
        from monaifrac.checkpoints import read_checkpoint

        saved = read_checkpoint(load_path)
        self.saved_keys = set(saved) if isinstance(saved, dict) else set()
        del saved
        super().__init__(load_path, load_dict, **kwargs)


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
        scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
        self.logger.info(f"learning-rate cosine stretched from {old} to {length} epochs: lr now "
                         f"{scheduler._last_lr[0]:.3g} at epoch {engine.state.epoch}")


class TrainingDiverged(RuntimeError):
    """The training loss stopped being a finite number."""


class StopOnNonFiniteLoss:
    """Stop training at the first iteration whose loss is NaN or infinite.

    Raises :class:`TrainingDiverged` (epoch, iteration and value in the message) from the
    iteration, so no validation runs on the broken weights: ``model.pt`` (the best validated
    weights) and the per-epoch checkpoints stay as they were, and :class:`AtomicCheckpointSaver`
    writes no final checkpoint. ``monaifrac train`` prints the message as one line.
    """

    def __init__(self, output_transform=None):
        from monai.handlers import from_engine

        self.output_transform = output_transform or from_engine(["loss"], first=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        loss = loss[0] if isinstance(loss, (list, tuple)) else loss
        value = float(torch.as_tensor(loss).detach().float().sum())
        if not np.isfinite(value):
            raise TrainingDiverged(f"training loss is {value} at epoch {engine.state.epoch}, iteration "
                                   f"{engine.state.iteration}: stopped; the last validated weights are "
                                   f"untouched (lower learning_rate, or resume from the last checkpoint)")