"""Reading films (JPG/PNG/BMP/TIFF with EXIF, DICOM, NIfTI) and label maps, in the film's displayed frame."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from monaifrac.errors import InputError
from monaifrac.io.dicom import check_dicom_film
from monaifrac.io.frame import to_monai_frame
from monaifrac.io.names import suffix_of

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

    The file is checked with pydicom first (:func:`monaifrac.io.dicom.check_dicom_film`): no
    pixel data, multi-frame, colour, a header whose Rows x Columns do not match the pixel data,
    or compressed pixels that do not decode each raise InputError before ITK sees the file. ITK
    returns a 2D DICOM as a volume with one slice; that slice is taken. No rotation is applied:
    a DICOM film's rows and columns are its displayed rows and columns.
    """
    import itk

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
