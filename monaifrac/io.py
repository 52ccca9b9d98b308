"""Reading radiographs and writing outputs, in one pixel frame for every stage.

The frame
---------
A film is read in its *displayed* orientation: the EXIF orientation tag of a JPG is
applied, because FracAtlas draws its polygons on the displayed image (IMG0002628,
IMG0002588). Colour films are reduced to one grey channel.

Two array layouts appear in monaifrac, and this module is the only place that converts
between them:

* ``(H, W)`` row-major, as PIL, pycocotools and scikit-image see an image. The data stage
  (masks, pseudo-labels) works in this layout.
* ``(W, H)``, x first, as MONAI's PIL and ITK readers return 2D images ("reverse indexing").
  Everything handed to MONAI is in this layout: the prepared NIfTI files, the arrays
  :class:`RadiographReader` returns, and therefore every tensor in training and inference.
  MONAI's writers transpose back, so a saved PNG has the film's own width and height.

:func:`to_monai_frame` / :func:`from_monai_frame` are the two conversions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from monaifrac.errors import InputError

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class ReadInfo:
    """What was learnt while reading a film, beyond its pixels."""

    exif_orientation: int = 1
    truncated: bool = False
    source_mode: str = ""
    warnings: list[str] = field(default_factory=list)


def to_monai_frame(array_hw: np.ndarray) -> np.ndarray:
    """(H, W) row-major → (W, H), the x-first layout MONAI's 2D readers return."""
    return np.ascontiguousarray(np.swapaxes(array_hw, 0, 1))


def from_monai_frame(array_wh: np.ndarray) -> np.ndarray:
    """(W, H) → (H, W) row-major; the inverse of :func:`to_monai_frame`."""
    return np.ascontiguousarray(np.swapaxes(array_wh, 0, 1))


def suffix_of(path: os.PathLike | str) -> str:
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def film_stem(path) -> str:
    """A film's id from its path: the file name less its film suffix (``.nii.gz`` whole)."""
    name = Path(str(path[0] if isinstance(path, (list, tuple)) else path)).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".jpeg", ".jpg", ".png", ".bmp", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


DICOM_MAGIC_OFFSET = 128  # a DICOM file (PS3.10) has a 128-byte preamble, then b"DICM"


def is_dicom_file(path: os.PathLike | str) -> bool:
    """True when ``path`` is a DICOM file by its name (``.dcm``, ``.dicom``) or, whatever its name, by
    the ``DICM`` marker at byte 128: PACS exports and DICOM receivers often store files without an
    extension, or named by their SOP Instance UID (whose last ``.`` part is no extension)."""
    if suffix_of(path) in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(DICOM_MAGIC_OFFSET + 4)
    except OSError:  # a folder, a missing or unreadable file: not a DICOM film; the caller says why
        return False
    return head[DICOM_MAGIC_OFFSET:] == b"DICM"


# PIL's switch for decoding truncated files is a module global; the lock keeps a reader
# in another thread from seeing it flipped.
_TRUNCATED_LOCK = threading.Lock()


def _load_pil(path: Path):
    from PIL import Image, ImageFile, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    # Besides OSError, PIL lets ValueError, SyntaxError, struct.error, EOFError... out of some corrupt
    # files (tests/unit/test_fuzz_reader.py): any exception but MemoryError means an unusable file.
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(path, "not an image file (no known image format in its bytes)") from None
    except Image.DecompressionBombError as err:  # a header claiming more pixels than PIL decodes safely
        raise InputError(path, f"too large to decode: {err}") from None
    except MemoryError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot open image: {err}") from None
    truncated = False
    try:
        img.load()
    except OSError as err:
        img.close()
        if "truncated" not in str(err):
            raise InputError(path, f"cannot decode image: {err}") from None
        # The 59 short FracAtlas JPGs decode but for their last bytes: keep them, and say so.
        with _TRUNCATED_LOCK:
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                img = Image.open(path)
                img.load()
            except MemoryError:
                raise
            except Exception as err2:
                img.close()
                raise InputError(path, f"truncated image that cannot be recovered: {err2}") from None
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
        truncated = True
    except MemoryError:
        raise
    except Exception as err:
        img.close()
        raise InputError(path, f"cannot decode image: {err}") from None
    return img, truncated


def _pil_to_grey(img) -> np.ndarray:
    """One grey channel; 16-bit and float films keep their depth."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16)
    if img.mode in ("I", "F"):
        return np.asarray(img, dtype=np.float32 if img.mode == "F" else np.int32)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def read_raster(path: os.PathLike | str) -> tuple[np.ndarray, ReadInfo]:
    """Read a JPG/PNG/BMP/TIFF film as one grey channel in its displayed orientation.

    Returns:
        ``(array, info)``: array of shape (H, W) (row-major, display frame), dtype uint8 for
        8-bit films, uint16 for 16-bit PNG/TIFF; ``info`` carries the EXIF orientation that
        was applied and whether the file was truncated (decoded with its tail missing).

    Raises:
        InputError: empty, missing, non-image or undecodable file.
    """
    from PIL import ImageOps

    path = Path(path)
    img, truncated = _load_pil(path)
    info = ReadInfo(truncated=truncated, source_mode=img.mode)
    try:
        info.exif_orientation = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block is not a broken image
        info.warnings.append("unreadable EXIF block ignored")
    if info.exif_orientation != 1:
        img = ImageOps.exif_transpose(img)
    if truncated:
        info.warnings.append("truncated file: decoded with its last bytes missing")
    return _pil_to_grey(img), info


def read_dicom(path: os.PathLike | str) -> tuple[np.ndarray, ReadInfo]:
    """Read a 2D DICOM radiograph with ITK as (H, W), MONOCHROME1 inverted so bone is bright.

    The file is checked with pydicom first (:func:`monaifrac.dicom.read.check_dicom_film`): no
    pixel data, multi-frame, colour, a header whose Rows x Columns do not match the pixel data,
    or compressed pixels that do not decode each raise InputError before ITK sees the file. ITK
    returns a 2D DICOM as a volume with one slice; that slice is taken. No rotation is applied:
    a DICOM film's rows and columns are its displayed rows and columns.
    """
    import itk

    from monaifrac.dicom.read import check_dicom_film

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    check_dicom_film(path)
    try:
        image = itk.imread(str(path))
    except Exception as err:  # ITK raises RuntimeError with a C++ trace; keep the gist
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"cannot read DICOM: {first}") from None
    array = np.asarray(itk.array_view_from_image(image)).copy()
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InputError(path, f"not a 2D radiograph (pixel array of shape {array.shape})")
    info = ReadInfo(source_mode="DICOM")
    photometric = str(dict(image).get("0028|0004", "")).strip().upper()
    if photometric == "MONOCHROME1":
        # ITK's GDCMImageIO already returns MONOCHROME1 inverted (max - value), bone bright;
        # inverting again here would undo it (tests/unit/test_io.py pins ITK's behaviour).
        info.warnings.append("MONOCHROME1: grey levels inverted by ITK so that bone is bright")
    return array, info


def read_radiograph(path: os.PathLike | str) -> tuple[np.ndarray, ReadInfo]:
    """Read any supported film (raster or DICOM) as (H, W) grey in its displayed frame."""
    suffix = suffix_of(path)
    if suffix in RASTER_SUFFIXES:
        return read_raster(path)
    if is_dicom_file(path):
        return read_dicom(path)
    raise InputError(path, f"unsupported file type {suffix!r} (expected one of {RASTER_SUFFIXES + DICOM_SUFFIXES}, "
                           "or a DICOM file with any name)")


try:  # the reader class needs MONAI; the data stage alone does not
    from monai.data.image_reader import ImageReader
except ImportError:  # pragma: no cover
    ImageReader = object  # type: ignore[misc,assignment]


class _NiftiImage:
    """A NIfTI read by MONAI's NibabelReader, with the reader that must also get its data."""

    def __init__(self, reader, image):
        self.reader, self.image = reader, image


class RadiographReader(ImageReader):
    """MONAI image reader for X-ray films: EXIF applied, one grey channel, x-first (W, H).

    Use it in ``LoadImaged(reader="monaifrac.io.RadiographReader")``. It reads JPG/PNG/BMP/TIFF
    and DICOM (by suffix, or by the ``DICM`` marker for a file without one) itself; NIfTI files
    (what ``monaifrac prepare`` writes, already in the MONAI frame) it hands to MONAI's
    ``NibabelReader``, so that ``LoadImage`` never has to fail over to it
    (which it would do with an exception and a log line per file). The array it returns for a
    JPG equals the image that ``monaifrac prepare`` writes for that JPG.
    """

    suffixes: Sequence[str] = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

    def verify_suffix(self, filename) -> bool:
        names = filename if isinstance(filename, (list, tuple)) else [filename]
        return all(suffix_of(n) in self.suffixes or is_dicom_file(n) for n in names)

    def read(self, data, **kwargs):
        names = data if isinstance(data, (list, tuple)) else [data]
        if all(suffix_of(n) in NIFTI_SUFFIXES for n in names):
            from monai.data import NibabelReader

            reader = NibabelReader()
            return _NiftiImage(reader, reader.read(data, **kwargs))
        films = [(str(n), *read_radiograph(n)) for n in names]
        return films if len(films) > 1 else films[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        if isinstance(img, _NiftiImage):
            return img.reader.get_data(img.image)
        films = img if isinstance(img, list) else [img]
        arrays = []
        for _name, array_hw, _info in films:
            arrays.append(to_monai_frame(array_hw))
        _name, _array, info = films[0]
        meta = {
            "spatial_shape": np.asarray(arrays[0].shape),
            "original_channel_dim": float("nan") if len(arrays) == 1 else 0,
            "exif_orientation": info.exif_orientation,
            "truncated": info.truncated,
        }
        data = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)
        return data, meta


# ----------------------------------------------------------------------------- writing


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


def read_nifti(path: os.PathLike | str) -> np.ndarray:
    """Read a prepared 2D NIfTI back as its (W, H) array, raising InputError on a bad file
    (unreadable, or pixels that are not real numbers: complex or RGB voxels)."""
    import nibabel as nib

    try:
        array = np.asanyarray(nib.load(str(path)).dataobj)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except MemoryError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot read NIfTI: {err}") from None
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_):
        raise InputError(path, f"pixels of type {array.dtype} are not grey levels (expected integers or floats)")
    return array


def read_label_map(path: os.PathLike | str) -> np.ndarray:
    """Read a label map or mask image (PNG/BMP/TIFF) as stored: (H, W) integers, no EXIF turn.

    Palette images give their indices, 1-bit masks give 0/255, 8/16-bit grey their values.

    Raises:
        InputError: missing, empty, truncated or undecodable file, or one with colour channels.
    """
    img, truncated = _load_pil(Path(path))
    if truncated:  # a film may lose its last rows; a label map may not (they would read as background)
        raise InputError(path, "truncated file (its last bytes are missing)")
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8) * 255
    if img.mode in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img).astype(np.int32)
    raise InputError(path, f"a label map must have one channel, this image is {img.mode}")


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
        # (cProfile, scripts/bench_infer.py --profile) and stays under 10 kB
        kwargs.setdefault("compress_level", 1)
        with atomic_path(filename) as tmp:
            super().write(str(tmp), verbose=verbose, **kwargs)
