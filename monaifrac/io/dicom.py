"""Is this DICOM file a film monaifrac can label? One check, with pydicom, before ITK decodes it.

:func:`monaifrac.io.read_dicom` decodes films with ITK (GDCM), which on a bad file raises a
C++ trace, prints its codecs' complaints to stderr, or reads past a header that lies. So every
DICOM film is first checked here with pydicom, and a file that cannot be used raises
:class:`monaifrac.errors.InputError`: one line naming the file and the problem.

What is refused, and why:

* **not DICOM / unreadable**: pydicom cannot parse it (a file without the ``DICM`` marker at
  byte 128 is still tried as a bare data set, as GDCM does, and refused only when that fails).
* **no pixel data**: a report, a presentation state, a key object (no Pixel Data element).
* **a Segmentation**: monaifrac's own output (``*.seg.dcm``) left in an input folder.
* **multi-frame** (Number of Frames > 1): a film is one frame; which one to label is not ours to guess.
* **colour** (Samples per Pixel 3, RGB/YBR/palette): radiographs are grey; a colour object is a
  screenshot or photo, not a film.
* **a header that lies about its size**: uncompressed pixel data whose length is not
  Rows x Columns x Bits Allocated / 8 (plus DICOM's one padding byte).
* **compressed pixel data that does not decode**: for a compressed transfer syntax pydicom has
  a decoder for (JPEG baseline, JPEG 2000 via Pillow, JPEG-LS via pyjpegls, RLE), the pixels are
  decoded once here; a decoder error refuses the file. For one pydicom has no decoder for (JPEG
  Lossless, Process 14, without pylibjpeg/gdcm) the file is left to ITK, whose GDCM decodes it:
  refusing it would refuse the most common lossless syntax in radiology. If GDCM fails too,
  :func:`~monaifrac.io.read_dicom` turns its error into the one line, but GDCM's codecs may have
  printed their own messages to stderr first.
"""

from __future__ import annotations

import os
from pathlib import Path

from monaifrac.errors import InputError

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
_REQUIRED = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def _read(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass  # no DICM marker: maybe a bare data set (older exports), which GDCM reads too
    except MemoryError:
        raise
    except Exception as err:  # truncated element, bad length, ...
        raise InputError(path, f"cannot read DICOM: {_one_line(err)}") from None
    try:
        ds = pydicom.dcmread(path, force=True)
    except MemoryError:
        raise
    except Exception:
        ds = None
    if ds is None or "Rows" not in ds:
        raise InputError(path, "not a DICOM file (no 'DICM' marker at byte 128, and not a bare DICOM data set)")
    return ds


def _native_length(ds) -> int:
    """Bytes of uncompressed pixel data the header promises (one frame, DICOM's even padding excluded)."""
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated)
    return (bits + 7) // 8


def check_dicom_film(path: os.PathLike | str):
    """Read ``path`` with pydicom and raise InputError unless it is a film ITK can safely decode.

    Returns:
        The :class:`pydicom.Dataset` (pixel data as stored, not decoded).

    Raises:
        InputError: one line naming ``path``: not DICOM or unreadable, no pixel data, a
            Segmentation, multi-frame, colour, pixel data shorter or longer than Rows x Columns
            says, or compressed pixel data that the installed decoder cannot decode. See the
            module docstring.
    """
    path = Path(path)
    ds = _read(path)
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in (SEGMENTATION_STORAGE, LABELMAP_SEGMENTATION_STORAGE):
        raise InputError(path, "a DICOM Segmentation (SEG), not a film")
    if not any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        what = f" ({ds.SOPClassUID.name})" if sop_class else ""
        raise InputError(path, f"no pixel data: a DICOM object without an image{what}")
    if "PixelData" not in ds:
        raise InputError(path, "floating-point pixel data (Float/Double Float Pixel Data), not a radiograph")
    missing = [kw for kw in _REQUIRED if ds.get(kw) in (None, "")]
    if missing:
        raise InputError(path, f"incomplete image header: no {', '.join(missing)}")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise InputError(path, f"multi-frame image ({frames} frames); monaifrac reads single-frame films only")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if int(ds.SamplesPerPixel) != 1 or photometric not in GREY_PHOTOMETRICS:
        raise InputError(path, f"colour image (Samples per Pixel {ds.SamplesPerPixel}, Photometric Interpretation "
                               f"{photometric}); a film must be greyscale, MONOCHROME1 or MONOCHROME2")
    if int(ds.Rows) == 0 or int(ds.Columns) == 0:
        raise InputError(path, f"empty image (Rows {ds.Rows}, Columns {ds.Columns})")

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or not syntax.is_compressed:
        expected, actual = _native_length(ds), len(ds.PixelData)
        if actual not in (expected, expected + expected % 2):
            raise InputError(path, f"the header says {ds.Rows} x {ds.Columns} pixels of {ds.BitsAllocated} bits "
                                   f"({expected} bytes) but the pixel data holds {actual} bytes")
        return ds

    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom 2 (MONAI Label's environment pins it): ITK alone decodes, as before this check
        return ds
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:  # a transfer syntax pydicom has no decoder class for at all
        available = False
    if available:
        try:
            ds.pixel_array
        except MemoryError:
            raise
        except Exception as err:
            raise InputError(path, f"cannot decode its {syntax.name} pixel data: {_one_line(err)}") from None
    return ds
