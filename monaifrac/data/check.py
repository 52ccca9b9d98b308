"""Integrity check of a prepared dataset (``monaifrac check``), run by training before caching.

Like nnU-Net's dataset integrity check, it reads every image/label pair a run will load and
reports, per file, what would otherwise surface as a traceback deep inside caching, or not at
all: missing or unreadable files, image/label shape mismatches, images that are not 2D,
non-finite pixels, label values outside {0, 1, 2}, duplicate ids, and ``fractured`` flags that
disagree with the label (a fractured film must have fracture pixels, and a normal one none).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from monaifrac.data.cases import DataError
from monaifrac.io import InputError, read_nifti

LABEL_VALUES = {0, 1, 2}


def _plane(array: np.ndarray, path) -> np.ndarray:
    if array.ndim != 2:
        # the bundle loads NIfTI with MONAI's reader, which keeps every axis: a (W, H, 1) file
        # reaches the 2D transforms and network as 3D and fails there
        hint = "; save it as a 2D (W, H) array" if array.ndim == 3 and 1 in array.shape else ""
        raise InputError(path, f"not a 2D film (array of shape {array.shape}){hint}")
    return array


def _read(path, label: bool) -> np.ndarray:
    """NIfTI as stored; other files (MONAI Label hands training JPG/PNG pairs) with the project's readers."""
    from monaifrac.io import NIFTI_SUFFIXES, read_label_map, read_radiograph, suffix_of

    if suffix_of(path) in NIFTI_SUFFIXES:
        return _plane(read_nifti(path), path)
    return read_label_map(path) if label else read_radiograph(path)[0]


def check_item(item: dict) -> list[str]:
    """Problems of one datalist item (``image``, ``label``, optional ``fractured``), each
    ``"<file>: <problem>"``; empty when the pair is usable."""
    problems = []
    try:
        image = _read(item["image"], label=False)
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            problems.append(f"{item['image']}: {int((~np.isfinite(image)).sum())} non-finite pixel(s) (NaN or inf)")
    except InputError as err:
        problems.append(str(err))
        image = None
    if "label" not in item:
        return problems
    try:
        label = _read(item["label"], label=True)
    except InputError as err:
        return problems + [str(err)]
    if np.issubdtype(label.dtype, np.floating) and not np.isfinite(label).all():
        return problems + [f"{item['label']}: non-finite values in a label map"]
    values = set(np.unique(label).tolist())
    if not values <= LABEL_VALUES:
        problems.append(f"{item['label']}: label values {sorted(values - LABEL_VALUES)} outside {{0, 1, 2}}")
    if image is not None and image.shape != label.shape:
        problems.append(f"{item['label']}: label shape {label.shape} differs from image shape {image.shape}")
    if "fractured" in item and bool(item["fractured"]) != (2 in values):
        problems.append(f"{item['label']}: datalist says fractured={bool(item['fractured'])} but the label has "
                        f"{'' if 2 in values else 'no '}fracture pixels")
    return problems


def check_items(items: list[dict], where: str = "datalist", workers: int = 2) -> list[str]:
    """Problems of a list of datalist items (absolute paths), duplicates among their ids included."""
    problems = []
    ids = Counter(str(d.get("id") or Path(str(d.get("image", ""))).name) for d in items)
    problems += [f"{where}: id {i} appears {n} times" for i, n in sorted(ids.items()) if n > 1]
    for d in items:
        if "image" not in d:
            problems.append(f"{where}: an item has no 'image': {d}")
    usable = [d for d in items if "image" in d]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # reading NIfTI is mostly zlib: threads help
        for found in pool.map(check_item, usable):
            problems += found
    return problems


def check_dataset(dataset_dir: str | Path, workers: int = 2) -> dict:
    """Check every item of every section of ``dataset_dir/datalist.json``.

    Returns:
        ``{"datalist", "items", "problems": [...], "ok": bool}``.

    Raises:
        DataError: no datalist, or one that is not a Decathlon-style JSON file.
    """
    path = Path(dataset_dir) / "datalist.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `monaifrac prepare FRACATLAS_DIR --out {dataset_dir}` first")
    try:
        sections = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(sections, dict) or not all(isinstance(v, list) for v in sections.values()):
        raise DataError(f"{path}: expected sections of items, e.g. {{\"training\": [...], \"validation\": [...]}}")
    items = []
    for section, entries in sections.items():
        for d in entries:
            if not isinstance(d, dict):
                raise DataError(f"{path}: an item of {section!r} is not an object: {d!r}")
            items.append({**d, **{k: str(path.parent / d[k]) for k in ("image", "label") if k in d}})
    problems = check_items(items, str(path), workers)
    return {"datalist": str(path), "items": len(items), "problems": problems, "ok": not problems}


def preflight(*item_lists, enabled: bool = True, where: str = "training data") -> None:
    """Called first by ``train.json``: stop before caching when the items a run will load are broken.

    Raises:
        DataError: listing the first problems (all of them are logged).
    """
    if not enabled:
        return
    import logging

    items = [d for items in item_lists for d in (items or [])]
    problems = check_items(items, where)
    if problems:
        logger = logging.getLogger(__name__)
        for p in problems:
            logger.error("preflight: %s", p)
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(f"preflight found {len(problems)} problem(s) in the {where} ({shown}); fix them, or run "
                        f"with --preflight false to skip the check")
