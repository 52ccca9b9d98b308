"""Image-level figures of a validation run: :class:`PresenceMetrics` (presence ROC-AUC and PR curve,
fracture Dice per body part), added to the evaluator's metrics so MONAI's stats handlers report them.
"""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events


class PresenceMetrics:
    """Image-level presence and per-body-part figures of a validation run, for TensorBoard.

    For every validated film it keeps the presence score (``fracture_score``, set by
    :class:`monaifrac.transforms.FractureScored` in the evaluator's postprocessing), whether
    its label has a fracture, its fracture Dice and its ``body_part`` (from the datalist
    item). When the epoch completes it adds to ``engine.state.metrics``
    ``<prefix>_presence_auc`` (``<prefix>_presence_head_auc`` too where the network has a presence
    output, ``head_key``, in a single process) and ``<prefix>_fracture_dice_pos_<part>`` for each of hand,
    leg, hip, shoulder that has a fractured film (a film showing several parts counts in
    each), so that ``StatsHandler``, ``TensorBoardStatsHandler`` and ``MetricsSaver``
    attached after it report them, and logs the presence PR curve with the writer's
    ``add_pr_curve``. The step is the trainer's epoch, as for the other validation figures.

    Args:
        summary_writer: a ``SummaryWriter`` or None (figures are still added to the metrics).
        prefix: metric name prefix.
        score_key: key of the presence score in the output items.
    """

    def __init__(self, summary_writer=None, prefix: str = "val", score_key: str = "fracture_score",
                 head_key: str = "presence_score"):
        self.writer = summary_writer
        self.prefix = prefix
        self.score_key = score_key
        self.head_key = head_key
        self.films: list[tuple[float, bool, float, str]] = []
        self.head_scores: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.films = []
        self.head_scores = []

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
            if self.head_key in item:
                self.head_scores.append(float(item[self.head_key]))

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
        if self.head_scores and len(self.head_scores) == len(self.films) and table is local:
            head_auc = roc_auc([int(f[1]) for f in self.films], self.head_scores)
            if not np.isnan(head_auc):
                engine.state.metrics[f"{self.prefix}_presence_head_auc"] = head_auc
        for i, part in enumerate(parts):
            rows = table[(table[:, 1] > 0) & ((table[:, 3].long() >> i) & 1 == 1)]
            if len(rows):
                engine.state.metrics[f"{self.prefix}_fracture_dice_pos_{part}"] = float(rows[:, 2].mean())
        if self.writer is not None and 0 < sum(labels) < len(labels):
            self.writer.add_pr_curve(f"{self.prefix}_presence_pr", np.asarray(labels), np.asarray(scores),
                                     global_step=engine.state.epoch)
            self.writer.flush()
