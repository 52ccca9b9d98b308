"""A film's result as a Secondary Capture (SC): the film with its fractures outlined and a banner.

For PACS viewers that show nothing but images: every viewer that shows a film shows this one
(RGB, 8 bits, uncompressed, no geometry to understand). :func:`build_capture` makes it with
highdicom's ``SCImage``:

* **Pixels**: the film as a viewer shows it (its Modality LUT, its first VOI window, else a
  0.5-99.5 percentile stretch; MONOCHROME1 inverted), in grey, on the film's own pixel grid:
  Rows and Columns are the film's, pixel (r, c) of the capture is pixel (r, c) of the film.
* **Outlines**: the border of every fracture region (label 2) in the overlays' fracture colour
  (:data:`OUTLINE_COLOUR`), drawn inside the region's edge and thickened inwards and outwards
  for large films (:func:`outline_width`). Bone (label 1) is not drawn: it would hide the film.
* **A banner** across the top rows (:func:`banner_height`): a dark band, the film faintly
  through it, with two lines of text in PIL's default font: ``AI result, not for diagnosis``
  and the call, e.g. ``fracture score 0.93: fractured (threshold 0.19)``. The film's top rows
  are darkened under it; the untouched film is the film's own series.
* **Header**: the film's patient and study, a new series (:data:`SERIES_NUMBER`), Burned In
  Annotation YES, Image Type DERIVED/SECONDARY, the film in Source Image Sequence, the film's
  Patient Orientation (empty when it has none) and its pixel spacing, Series Description the
  presence call (:func:`monaifrac.dicom.seg.presence_call`).
"""

from __future__ import annotations

import numpy as np

SC_SUFFIX = ".sc.dcm"
SERIES_NUMBER = 902  # SEG 900, SR 901: one series per kind of result
OUTLINE_COLOUR = (255, 40, 40)  # monaifrac.visualize.CLASS_COLOURS[2], the overlays' fracture colour
BANNER_TEXT_COLOUR = (255, 255, 255)
DISCLAIMER = "AI result, not for diagnosis"
_BANNER_DIM = 0.25  # the film under the banner keeps a quarter of its brightness
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def outline_width(rows: int, columns: int) -> int:
    """Pixels of outline: 1 on small films, about one per 500 pixels of the long side on large ones."""
    return max(1, round(max(rows, columns) / 500))


def banner_height(rows: int, columns: int) -> int:
    """Rows the banner covers at the top: about a twelfth of the film's height, at least 24 (two text lines)."""
    return min(rows, max(24, rows // 12))


def banner_lines(score: float | None, threshold: float) -> tuple[str, str]:
    """The banner's two lines: the disclaimer, then the score and the call at ``threshold``."""
    if score is None:
        return DISCLAIMER, "fracture regions outlined (no fracture score)"
    call = "fractured" if float(score) >= float(threshold) else "not fractured"
    return DISCLAIMER, f"fracture score {float(score):.2f}: {call} (threshold {float(threshold):.2f})"


def display_grey(film) -> np.ndarray:
    """The film's pixels as a viewer shows them, (Rows, Columns) uint8, 255 white.

    Modality LUT (rescale), then the first VOI window (DICOM's linear function, PS3.3 C.11.2.1.2)
    where the film has one, else a 0.5-99.5 percentile stretch; MONOCHROME1 (smallest value
    white) inverted. A colour film (three samples) is shown by its luminance.
    """
    from pydicom.pixels import apply_modality_lut

    pixels = film.pixel_array
    if pixels.ndim == 3:  # RGB / YBR decoded to RGB by pydicom: Rec. 601 luminance
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    values = apply_modality_lut(pixels, film).astype(np.float64)
    centre, width = film.get("WindowCenter"), film.get("WindowWidth")
    if centre is not None and width is not None:
        centre = float(centre[0] if hasattr(centre, "__len__") and not isinstance(centre, str) else centre)
        width = float(width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width)
    if centre is not None and width is not None and width >= 1:
        scaled = np.clip((values - (centre - 0.5)) / max(width - 1.0, 1.0) + 0.5, 0.0, 1.0)
    else:
        low, high = np.percentile(values, (0.5, 99.5))
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    if str(film.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.round(scaled * 255).astype(np.uint8)


def fracture_outline(label_hw: np.ndarray) -> np.ndarray:
    """(Rows, Columns) bool: the border pixels of the fracture regions (label 2), :func:`outline_width` thick.

    The innermost ring of each region is always part of it (``find_boundaries(mode="inner")``),
    so the first pixel of a region's edge carries the outline colour whatever the width.
    """
    from scipy.ndimage import binary_dilation
    from skimage.segmentation import find_boundaries

    mask = np.asarray(label_hw) == 2
    edge = find_boundaries(mask, mode="inner") & mask
    width = outline_width(*mask.shape)
    if width > 1 and edge.any():
        edge = binary_dilation(edge, iterations=width - 1)
    return edge


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, OSError, AttributeError):  # pragma: no cover - older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def draw_banner(rgb: np.ndarray, lines: tuple[str, ...]) -> np.ndarray:
    """``rgb`` (Rows, Columns, 3) uint8 with the banner drawn over its top rows (a new array)."""
    from PIL import Image, ImageDraw

    rows, columns = rgb.shape[:2]
    height = banner_height(rows, columns)
    out = rgb.copy()
    out[:height] = np.round(out[:height] * _BANNER_DIM).astype(np.uint8)
    margin = max(1, height // 12)
    # the largest font whose lines fit the banner's height and, where the film allows, its width
    size = max(6, (height - 3 * margin) // len(lines))
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    while size > 6:
        font = _font(size)
        widest = max(draw.textlength(line, font=font) for line in lines)
        if widest <= columns - 2 * margin:
            break
        size -= 1
    font = _font(size)
    if size < 12:
        draw.fontmode = "1"  # small glyphs read better unsmoothed, in the text colour itself
    y = margin
    for line in lines:
        draw.text((margin, y), line, fill=BANNER_TEXT_COLOUR, font=font)
        y += size + margin
    return np.asarray(image)


def capture_pixels(film, label_hw: np.ndarray, score: float | None, threshold: float) -> np.ndarray:
    """(Rows, Columns, 3) uint8: the film in grey, its fractures outlined, the banner on top."""
    grey = display_grey(film)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[fracture_outline(label_hw)] = OUTLINE_COLOUR
    return draw_banner(rgb, banner_lines(score, threshold))


def build_capture(film, label_hw: np.ndarray, score: float | None, threshold: float):
    """The Secondary Capture of ``film``'s result (see the module docstring).

    Args:
        film: the film's :class:`pydicom.Dataset`, pixels included.
        label_hw: (Rows, Columns) uint8 label map in the film's stored pixel frame, values
            {0 background, 1 bone, 2 fracture}.
        score: the film's fracture score in [0, 1], or None.
        threshold: the presence threshold of the call.

    Returns:
        A :class:`highdicom.sc.SCImage` (a pydicom Dataset), new Series and SOP Instance UIDs,
        in the film's study.

    Raises:
        ValueError: the label map does not fit the film or holds values other than 0, 1, 2.
    """
    import highdicom as hd
    from pydicom import Dataset

    import monaifrac
    from monaifrac.dicom.codes import check_label_map, presence_call, with_type2_copied

    label_hw = check_label_map(film, label_hw)
    pixels = capture_pixels(film, label_hw, score, threshold)
    source = with_type2_copied(film)  # type 2 in the film, but some writers leave them out
    orientation = list(film.get("PatientOrientation") or [])
    spacing = film.get("PixelSpacing") or film.get("ImagerPixelSpacing")
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="monaifrac",
        # highdicom requires an orientation for the PATIENT system; the film's own (possibly none) is set below
        patient_orientation=tuple(orientation) if len(orientation) == 2 else ("L", "F"),
        pixel_spacing=tuple(float(v) for v in spacing) if spacing else None,
        transfer_syntax_uid="1.2.840.10008.1.2.1",  # explicit VR little endian, uncompressed
    )
    capture.PatientOrientation = orientation if len(orientation) == 2 else ""
    capture.SeriesDescription = presence_call(score, threshold)
    capture.BurnedInAnnotation = "YES"  # the banner: text in the pixels
    capture.ManufacturerModelName = "monaifrac"
    capture.SoftwareVersions = monaifrac.__version__
    capture.DerivationDescription = "film with monaifrac's fracture regions outlined; " + DISCLAIMER
    reference = Dataset()
    reference.ReferencedSOPClassUID = film.SOPClassUID
    reference.ReferencedSOPInstanceUID = film.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_PURPOSE
    reference.PurposeOfReferenceCodeSequence = [purpose]
    capture.SourceImageSequence = [reference]
    # General Series' Laterality is type 2C (a paired body part): the film's side when it says one, else empty
    side = film.get("ImageLaterality") or film.get("Laterality") or ""
    capture.Laterality = side if side in ("R", "L") else ""
    if "BodyPartExamined" in film:
        capture.BodyPartExamined = film.BodyPartExamined
    return capture


__all__ = ("SC_SUFFIX", "build_capture", "capture_pixels", "display_grey", "fracture_outline")
