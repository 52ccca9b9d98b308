"""A film's label map as a DICOM Segmentation (SEG), written with highdicom: the labels going back to the PACS.

:func:`make_segmentation` turns the label map of one DICOM film into a BINARY ``Segmentation``
instance of the film's own study, in the film's own pixel grid; :class:`SaveDicomSegd` is the
bundle's step that writes ``<stem>.seg.dcm`` beside ``<stem>.png`` (``inference.json``,
``save_dicom_seg``; ``monaifrac infer --dicom-seg``).

What the SEG says
-----------------
* **Two segments**, both always present (an empty fracture segment says "no fracture pixel"):

  ====== ========== ============================================== ==========================================
  number label      property category (CID 7150)                   property type
  ====== ========== ============================================== ==========================================
  1      bone       SCT 85756007 "Tissue"                          SCT 3138006 "Bone" (bone tissue, CID 7166)
  2      fracture   SCT 49755003 "Morphologically Abnormal         SCT 19130008 "Traumatic abnormality"
                    Structure"
  ====== ========== ============================================== ==========================================

  All four are the codes of pydicom 3's code dictionary (``codes.SCT.Tissue``, ``BoneTissue``,
  ``MorphologicallyAbnormalStructure``, ``TraumaticAbnormalityMorphologic``), written out here
  because pydicom 2 (MONAI Label's environment) names some of them differently: a SEG says the
  same in both environments. SNOMED CT's own
  concept for a fracture, 72704001 "Fracture (morphologic abnormality)", a child of 19130008,
  is not in that dictionary; the segment label says "fracture". Bone is monaifrac's
  pseudo-label of dense matter (README), hence a tissue type rather than an anatomical structure.
* **Algorithm**: type AUTOMATIC, name "monaifrac", version ``monaifrac.__version__``, family
  DCM 123110 "Artificial Intelligence". Recommended display colours are the overlays' colours.
  A label a person saved (MONAI Label's *Submit Label* over a PACS) is SEMIAUTOMATIC instead:
  monaifrac proposed it, a person corrected it (``algorithm_type``).
* **Pixels**: label 1 → segment 1, label 2 → segment 2, pixel for pixel; rows and columns are
  the film's Rows and Columns. The label map is in the film's displayed orientation, and for a
  DICOM film that is its stored orientation (the reader rotates nothing), so the SEG lies on the
  film as stored.
* **The presence call** in Series Description: ``monaifrac fracture 0.93 (fractured; threshold
  0.50)``, the film's ``fracture_score`` and whether it reaches the bundle's
  ``presence_threshold`` (``not fractured`` below it), so a PACS worklist shows the call
  without opening the object.
* **References**: the film's study (Study Instance UID, patient), and the film itself in
  Referenced Series Sequence and each frame's Derivation Image Sequence (source image
  purpose "Source image for image processing operation").

Geometry of a projection film
-----------------------------
A DX/CR film has no Image Plane module: no Image Position/Orientation (Patient), usually no
Frame of Reference. highdicom (0.28.2) then makes a SEG without a frame of reference whose frames
are tied to the source image pixel for pixel (highdicom PR #183, after discussion with the DICOM
editors in issue #159). It still copies the film's Pixel Spacing into a Pixel Measures functional
group, without Slice Thickness. That is valid DICOM (Slice Thickness is required there only
with a Frame of Reference, CP 1426; dciodvfy finds no error), but highdicom's own reader
(``segread``) then refuses the file ("Sequence does not have the required attributes for a
Pixel Measures Sequence"), and a slice thickness for a projection would be made up. So Pixel
Spacing is **not** copied: the SEG carries no Pixel Measures, and the spacing of its pixels is
the referenced film's (Pixel Spacing / Imager Pixel Spacing), which a viewer shows it on. A
Frame of Reference UID without any plane position or orientation (ITK's secondary captures
have one) locates nothing and is left out the same way. Patient Orientation (type 2C without
plane orientation) is copied from the film, empty when the film has none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from monaifrac.dicom.codes import (ABNORMAL_STRUCTURE, ALGORITHM_NAME, ARTIFICIAL_INTELLIGENCE, BONE, TISSUE,
                                   TRAUMATIC_ABNORMALITY, algorithm_version, presence_call,
                                   check_label_map, with_type2_copied)
from monaifrac.io import InputError, atomic_path, film_stem, from_monai_frame, is_dicom_file

logger = logging.getLogger(__name__)

SEG_SUFFIX = ".seg.dcm"
SERIES_NUMBER = 900  # one SEG per series; a number well after the film's own series
CONTENT_LABEL = "MONAIFRAC"
CONTENT_DESCRIPTION = "bone and fracture by monaifrac; research use, not diagnosis"  # LO: 64 max
_PLANE_ATTRIBUTES = ("ImagePositionPatient", "ImageOrientationPatient")


ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC")


def _display_colour(rgb) -> list[int]:
    """Recommended Display CIELab Value (three 16-bit integers) of an sRGB colour (0-255 components).

    highdicom 0.28 has ``CIELabColor.from_rgb``; 0.22 (the last for pydicom 2, MONAI Label's
    environment) has not, so there the same conversion (sRGB, D65 white, pixelmed's
    ColorUtilities) and the same rounding as highdicom 0.28's are made here: the SEG says the
    same colours in both environments.
    """
    import highdicom as hd

    if hasattr(hd.color.CIELabColor, "from_rgb"):
        return list(hd.color.CIELabColor.from_rgb(*rgb).value)

    def linear(c: float) -> float:  # pragma: no cover - highdicom 0.22
        c = c / 255.0
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    def f(t: float) -> float:  # pragma: no cover
        return t ** (1.0 / 3) if t >= 8.85645167903563082e-3 else (841.0 / 108.0) * t + (4.0 / 29.0)

    r, g, b = (linear(c) * 100 for c in rgb)  # pragma: no cover
    x = f((r * 0.4124 + g * 0.3576 + b * 0.1805) / 95.047)
    y = f((r * 0.2126 + g * 0.7152 + b * 0.0722) / 100.0)
    z = f((r * 0.0193 + g * 0.1192 + b * 0.9505) / 108.883)
    l_star, a_star, b_star = 116 * y - 16, 500 * (x - y), 200 * (y - z)
    return [round(l_star * 0xFFFF / 100.0), round((a_star + 128.0) * 0xFFFF / 255.0),
            round((b_star + 128.0) * 0xFFFF / 255.0)]


def _segment_descriptions(algorithm_type: str = "AUTOMATIC"):
    import highdicom as hd
    from pydicom.sr.coding import Code

    from monaifrac.visualize import CLASS_COLOURS

    algorithm = hd.AlgorithmIdentificationSequence(name=ALGORITHM_NAME, version=algorithm_version(),
                                                   family=Code(*ARTIFICIAL_INTELLIGENCE))
    segments = ((1, "bone", TISSUE, BONE), (2, "fracture", ABNORMAL_STRUCTURE, TRAUMATIC_ABNORMALITY))
    descriptions = []
    for number, label, category, kind in segments:
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=Code(*category),
            segmented_property_type=Code(*kind), algorithm_type=algorithm_type, algorithm_identification=algorithm)
        # what highdicom 0.28's display_color argument sets; 0.22 has no such argument
        description.RecommendedDisplayCIELabValue = _display_colour(CLASS_COLOURS[number])
        descriptions.append(description)
    return descriptions


def _source_header(film):
    """A copy of the film's header as highdicom should see it (see the module docstring)."""
    source = with_type2_copied(film)
    if "FrameOfReferenceUID" in source and not any(k in source for k in _PLANE_ATTRIBUTES):
        del source.FrameOfReferenceUID  # a frame of reference without a plane in it locates nothing
    if "FrameOfReferenceUID" not in source and "PixelSpacing" in source:
        del source.PixelSpacing  # no frame of reference: highdicom would write measures it cannot read back
    return source


def make_segmentation(film, label_hw: np.ndarray, score: float | None = None, threshold: float = 0.5,
                      algorithm_type: str = "AUTOMATIC"):
    """A BINARY DICOM Segmentation of ``film`` from its label map.

    Args:
        film: the film's :class:`pydicom.Dataset` (its header is enough: pixel data is not used).
        label_hw: (Rows, Columns) integer label map of the film, row-major, values in {0, 1, 2}
            (background, bone, fracture).
        score: the film's ``fracture_score`` in [0, 1], or None (Series Description then names
            no call).
        threshold: the presence threshold the call is made at.
        algorithm_type: ``"AUTOMATIC"`` (monaifrac's own label) or ``"SEMIAUTOMATIC"`` (a label
            monaifrac proposed and a person corrected).

    Returns:
        A :class:`highdicom.seg.Segmentation`, new Series and SOP Instance UIDs, in the film's study.

    Raises:
        ValueError: the label map's shape is not the film's Rows x Columns, or it holds values
            other than 0, 1, 2, or ``algorithm_type`` is neither of the two.
    """
    import highdicom as hd

    import monaifrac

    if algorithm_type not in ALGORITHM_TYPES:
        raise ValueError(f"algorithm_type must be one of {ALGORITHM_TYPES}, got {algorithm_type!r}")
    label_hw = check_label_map(film, label_hw)
    seg = hd.seg.Segmentation(
        source_images=[_source_header(film)],
        pixel_array=label_hw.astype(np.uint8),  # the label-map style: value k is segment k
        segmentation_type="BINARY",
        segment_descriptions=_segment_descriptions(algorithm_type),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="monaifrac",
        manufacturer_model_name="monaifrac",
        software_versions=monaifrac.__version__,
        device_serial_number="0",
        content_label=CONTENT_LABEL,
        content_description=CONTENT_DESCRIPTION,
        omit_empty_frames=False,  # both segments always: an empty frame is the answer "none here"
    )
    seg.SeriesDescription = presence_call(score, threshold)
    # General Image: type 2C when there is no plane orientation; the SEG lies on the film as stored
    seg.PatientOrientation = film.get("PatientOrientation", "")
    return seg


def save_dataset(ds, path: os.PathLike | str) -> None:
    """``ds.save_as(path)`` as a DICOM file (preamble, ``DICM``, file meta) with pydicom 3 or 2
    (MONAI Label's environment has pydicom 2, whose keyword for that is ``write_like_original=False``)."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2, in MONAI Label's environment
        ds.save_as(path, write_like_original=False)


def write_segmentation(path: os.PathLike | str, seg) -> Path:
    """Write ``seg`` to ``path`` atomically (a temporary file beside it, then ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_dataset(seg, tmp)
    return path


def read_film_header(path: os.PathLike | str):
    """The header of the DICOM film at ``path`` (pixel data not read), or None for a non-DICOM film."""
    import pydicom

    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except MemoryError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot read the DICOM header: {err}") from None


class SaveDicomSeg(Transform):
    """Write ``<stem>.seg.dcm``, the DICOM Segmentation of a DICOM film's label map (see the module docstring).

    Args:
        output_dir: folder of the SEGs (the label maps' folder).
        threshold: the bundle's ``presence_threshold``, for the call in Series Description.

    ``__call__(label, source, score)``: label (1, W, H) or (W, H) in the MONAI frame, values
    {0, 1, 2}; source the film's path; score its ``fracture_score`` or None. Returns the path
    written, or None for a film that is not DICOM (a JPG in the same run: nothing to refer to).
    Written atomically.
    """

    def __init__(self, output_dir: str | Path, threshold: float = 0.5):
        self.output_dir = Path(output_dir)
        self.threshold = float(threshold)

    def __call__(self, label, source, score: float | None = None) -> Path | None:
        film = read_film_header(source)
        if film is None:
            return None
        lab = np.asarray(label.detach().cpu() if hasattr(label, "detach") else label)
        lab = lab[0] if lab.ndim == 3 else lab
        seg = make_segmentation(film, from_monai_frame(lab), score, self.threshold)
        return write_segmentation(self.output_dir / f"{film_stem(source)}{SEG_SUFFIX}", seg)


class SaveDicomSegd(MapTransform):
    """Dictionary form of :class:`SaveDicomSeg`: the label map under ``keys``, the film's path from the
    ``filename_or_obj`` metadata of ``image_key``, the score from ``score_key`` (absent: no call).

    A film whose SEG cannot be made (a header highdicom cannot use) is logged as an error naming
    the film and the problem, and the run goes on: its label map is written all the same.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | Path = "./",
                 threshold: float = 0.5, score_key: str = "fracture_score", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.score_key = score_key
        self.saver = SaveDicomSeg(output_dir, threshold)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        meta = getattr(d.get(self.image_key), "meta", {}) or {}
        source = meta.get("filename_or_obj")
        if source is None:
            return d
        source = source[0] if isinstance(source, (list, tuple)) else source
        score = d.get(self.score_key)
        for key in self.key_iterator(d):
            try:
                self.saver(d[key], source, None if score is None else float(score))
            except (InputError, ValueError, AttributeError, TypeError, KeyError) as err:
                # highdicom's refusals are ValueError/AttributeError on headers it cannot use
                logger.error("no DICOM SEG for %s: %s", source, " ".join(str(err).split()))
        return d


__all__ = ("SaveDicomSeg", "SaveDicomSegd", "make_segmentation", "presence_call", "read_film_header",
           "save_dataset", "write_segmentation")
