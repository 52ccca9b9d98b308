"""Which prepared cases a bundle run trains, validates or tests on.

``datalist.json`` (written by ``monaifrac prepare``) has the sections ``training``,
``validation`` and ``test``; every training item carries a stratified ``fold`` index.

* ``fold = -1`` (the bundle's default): train on ``training``, validate on ``validation``
  (FracAtlas's official split for fractured films).
* ``fold = k``: cross-validation; train on the training items whose fold is not k and
  validate on those whose fold is k. ``validation`` is then left untouched for a final test.
"""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path

from monai.data import load_decathlon_datalist

PARTS = ("train", "val", "validation", "test")


def load_split(dataset_dir: str | Path, part: str = "train", fold: int = -1, limit: int | None = None) -> list[dict]:
    """Items of one part of a prepared dataset, with absolute ``image``/``label`` paths.

    Args:
        dataset_dir: the folder ``monaifrac prepare`` wrote (holds ``datalist.json``).
        part: ``train``, ``val`` (what validation runs on for this fold), ``validation``
            (the datalist section as is) or ``test``.
        fold: -1 for the official split, else the cross-validation fold held out.
        limit: keep only ``limit`` items (quick runs), alternating fractured and
            non-fractured films, so a short run still sees both.

    Raises:
        FileNotFoundError / ValueError: naming ``datalist.json`` and what is wrong.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    path = Path(dataset_dir) / "datalist.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `monaifrac prepare FRACATLAS_DIR --out {dataset_dir}` first")
    sections = json.loads(path.read_text())
    if fold >= 0 and part in ("train", "val"):
        items = _load(path, "training")
        items = [d for d in items if (d["fold"] != fold) == (part == "train")]
        if not items:
            raise ValueError(f"{path}: fold {fold} leaves no {part} items (folds present: "
                             f"{sorted({d['fold'] for d in sections['training']})})")
    else:
        section = {"train": "training", "val": "validation"}.get(part, part)
        items = _load(path, section) if sections.get(section) else []
    if limit is not None and limit >= 0:
        fractured = [d for d in items if d.get("fractured")]
        others = [d for d in items if not d.get("fractured")]
        mixed = [d for pair in zip_longest(fractured, others) for d in pair if d is not None]
        items = mixed[:limit]
    return items


def _load(path: Path, section: str) -> list[dict]:
    return load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=section, base_dir=str(path.parent))
