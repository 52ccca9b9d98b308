"""Inputs of bundle inference: which films to run on, and which could not be read.

The bundle's ``inference.json`` calls :func:`collect_films`; each unreadable file is
reported (logged and listed in ``<output_dir>/inference_report.json``) and left out, so
one bad film never stops the others.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from monaifrac.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, InputError, is_dicom_file, read_radiograph, \
    suffix_of, write_text

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


def _is_film(path: Path) -> bool:
    """A film suffix, or a DICOM file whatever its name (the ``DICM`` marker at byte 128)."""
    return suffix_of(path) in FILM_SUFFIXES or is_dicom_file(path)


def _output_stem(path: Path) -> str:
    """The name the bundle's writers give this film's outputs, by MONAI's rule (``create_file_basename``):
    the last suffix dropped, two where it is ``.gz``. So ``1.2.3.4`` and ``1.2.3.5`` (DICOM files named
    by their UID) both become ``1.2.3``."""
    stem, ext = os.path.splitext(path.name)
    return os.path.splitext(stem)[0] if ext == ".gz" else stem


def collect_films(inputs: str | Path | Sequence[str | Path], output_dir: str | Path,
                  write_report: bool = True) -> list[dict]:
    """Readable films among ``inputs`` as MONAI data dicts ``{"image": path}``.

    Args:
        inputs: a folder (its files with a film suffix: JPG/PNG/BMP/TIFF, DICOM, NIfTI, and DICOM
            files of any name, told by the ``DICM`` marker at byte 128; not recursive), one file,
            or a list of files.
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
            paths += sorted(f for f in p.iterdir() if f.is_file() and _is_film(f))
        elif p.exists():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    films, rejected, stems = [], [], {}
    for path in paths:
        try:
            if not _is_film(path):
                raise InputError(path, f"unsupported file type {suffix_of(path)!r}")
            # two films whose outputs share a name would silently overwrite each other's label map
            stem = _output_stem(path)
            if stem in stems:
                raise InputError(path, f"its outputs ({stem}.png ...) would overwrite those of {stems[stem]}; "
                                       "rename one of the two files")
            _check(path)
            stems[stem] = path
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
