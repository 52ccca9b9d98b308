"""Files a run leaves for people and scripts: ``metrics.json`` (:class:`MetricsJSONWriter`, an
evaluation's metrics) and ``predictions.csv`` (:class:`PredictionsCSVWriter`, one row per film an
inference run labelled), each replaced atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monaifrac.io import film_stem, write_text

logger = logging.getLogger(__package__)  # "monaifrac.handlers", the name its log lines had before the split


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


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


PREDICTIONS_COLUMNS = ("film", "fracture_score", "fractured", "fracture_area_px", "label_file", "presence_score",
                       "mask_score")


class PredictionsCSVWriter:
    """Write ``predictions.csv``: one row per film an inference run labelled.

    Columns: ``film`` (the source path), ``fracture_score`` (from
    :class:`monaifrac.transforms.FractureScored`, in [0, 1]), ``fractured`` (1 when the score
    reaches ``threshold``), ``fracture_area_px`` (pixels labelled fracture) and
    ``label_file`` (the label map written for it); then the two pieces of evidence that
    ``fracture_score`` fuses where the network has a presence output (``presence_score``, the
    output's probability, and ``mask_score``, the mask's; empty where absent), which
    ``monaifrac calibrate`` fits the fusion on. Rows are sorted by film and the file is
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
                **{key: "" if item.get(key) is None else f"{float(item[key]):.6f}"
                   for key in ("presence_score", "mask_score")},
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
