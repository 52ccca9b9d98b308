"""Inputs of bundle inference: which films to run on, and which could not be read.

The bundle's ``inference.json`` calls :func:`collect_films`; each unreadable file is
reported (logged and listed in ``<output_dir>/inference_report.json``) and left out, so
one bad film never stops the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from monaifrac.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, InputError, read_radiograph, suffix_of, \
    write_text

logger = logging.getLogger(__name__)
FILM_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES
REPORT_NAME = "inference_report.json"


def _check(path: Path) -> None:
    """Raise InputError for a file the bundle cannot label: unreadable, not 2D, or with NaN/inf pixels."""
    if suffix_of(path) in NIFTI_SUFFIXES:
        from monaifrac.io import read_nifti

        array = read_nifti(path)
        if array.ndim != 2:
            # MONAI's NIfTI reader keeps every axis, so even a (W, H, 1) film would reach the 2D network as 3D
            hint = "; save it as a 2D (W, H) array" if array.ndim == 3 and 1 in array.shape else ""
            raise InputError(path, f"not a 2D film (array of shape {array.shape}){hint}")
    else:
        array, _ = read_radiograph(path)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(path, f"{int((~np.isfinite(array)).sum())} non-finite pixel(s) (NaN or inf)")


def collect_films(inputs: str | Path | Sequence[str | Path], output_dir: str | Path,
                  write_report: bool = True) -> list[dict]:
    """Readable films among ``inputs`` as MONAI data dicts ``{"image": path}``.

    Args:
        inputs: a folder (its files with a film suffix: JPG/PNG/BMP/TIFF, DICOM, NIfTI,
            not recursive), one file, or a list of files.
        output_dir: where ``inference_report.json`` is written, listing the films taken and
            each rejected file with its problem.
        write_report: False on all but one process of a sharded run (every process collects
            the same list; one writes it).

    Raises:
        FileNotFoundError: ``inputs`` names nothing that exists.
    """
    paths: list[Path] = []
    for item in ([inputs] if isinstance(inputs, (str, Path)) else list(inputs)):
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.is_file() and suffix_of(f) in FILM_SUFFIXES)
        elif p.exists():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    films, rejected = [], []
    for path in paths:
        try:
            if suffix_of(path) not in FILM_SUFFIXES:
                raise InputError(path, f"unsupported file type {suffix_of(path)!r}")
            _check(path)
        except InputError as err:
            logger.error("skipping %s", err)
            rejected.append({"file": str(path), "problem": err.problem})
            continue
        films.append({"image": str(path)})
    report = {"films": [f["image"] for f in films], "rejected": rejected}
    if write_report:
        write_text(Path(output_dir) / REPORT_NAME, json.dumps(report, indent=2) + "\n")
    if not films:
        logger.warning("no readable film in %s", inputs)
    return films
