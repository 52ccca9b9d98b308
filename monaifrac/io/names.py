"""What a film's file name says: its format suffix and its id."""

from __future__ import annotations

import os
from pathlib import Path


def suffix_of(path: os.PathLike | str) -> str:
    """The lower-case suffix of a path, ``.nii.gz`` whole."""
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def film_stem(path) -> str:
    """A film's id from its path: the file name less its film suffix (``.nii.gz`` whole)."""
    name = Path(str(path[0] if isinstance(path, (list, tuple)) else path)).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".jpeg", ".jpg", ".png", ".bmp", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
