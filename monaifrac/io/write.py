"""Writing outputs atomically: a file appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from monaifrac.io.names import suffix_of


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``, ``.png``) because writers pick
    the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix_of(path) or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_path, path)
    except OSError as err:
        # the writer names the hidden temporary file, or nothing at all; the user needs the real one
        raise OSError(err.errno, f"cannot write: {err.strerror or err}", str(path)) from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_temporaries(folder: os.PathLike | str) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` and return them.

    Only a process killed inside ``atomic_path`` (no ``finally`` runs) leaves one; a parent that
    killed its workers calls this on the folders they wrote to. Matches mkstemp's names exactly
    (``.<final name>.<8 characters><suffix>``), so no other hidden file is touched.
    """
    import re

    pattern = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9.]+)")
    removed = []
    for p in Path(folder).glob(".*"):
        m = pattern.fullmatch(p.name)
        if m and p.is_file() and (m["name"].endswith(m["suffix"]) or m["suffix"] == ".tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_text(path: os.PathLike | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: os.PathLike | str, obj) -> None:
    import json

    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_nifti(path: os.PathLike | str, array_wh: np.ndarray) -> None:
    """Write a 2D array already in the MONAI (W, H) frame as NIfTI, identity affine (1 mm pixels).

    Image and label of a case are written by this one function, so they share array
    orientation and affine and ``LoadImage`` returns them with the same shape.
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array_wh), affine=np.eye(4))
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def write_png(path: os.PathLike | str, array_hw: np.ndarray) -> None:
    """Write an (H, W) grey or (H, W, 3) RGB uint8 array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array_hw)).save(tmp, format="PNG")


try:
    from monai.data import PILWriter as _PILWriter
except ImportError:  # pragma: no cover
    _PILWriter = object  # type: ignore[misc,assignment]


class AtomicPILWriter(_PILWriter):
    """MONAI's PIL writer, but the file appears only once complete (temporary file + rename).

    Use it as ``SaveImaged(writer="monaifrac.io.AtomicPILWriter")``.
    """

    def set_data_array(self, data_array, channel_dim=0, squeeze_end_dims: bool = True, contiguous: bool = False,
                       **kwargs):
        super().set_data_array(data_array, channel_dim=channel_dim, squeeze_end_dims=squeeze_end_dims,
                               contiguous=contiguous, **kwargs)
        # MONAI drops trailing singleton axes, so the label of a film one pixel high, (W, 1) in the
        # MONAI frame, would reach PIL as a 1D array and fail; the dropped axes were all of size 1
        while np.ndim(self.data_obj) < 2:
            self.data_obj = self.data_obj[..., None]

    def write(self, filename, verbose: bool = False, **kwargs):
        # zlib level 1 rather than PIL's 6: a 454 x 373 label map encodes in 0.7 ms instead of 1.1
        # (cProfile, monaifrac benchmark infer --profile) and stays under 10 kB
        kwargs.setdefault("compress_level", 1)
        with atomic_path(filename) as tmp:
            super().write(str(tmp), verbose=verbose, **kwargs)
