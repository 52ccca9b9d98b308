"""A DICOM Segmentation (SEG) of a film, written by any tool, read back as the film's label map.

The one SEG reader of the package: ``monaifrac pacs-pull --labels`` (:mod:`monaifrac.dicom.labels`)
and MONAI Label's PACS datastore (:mod:`monaifrac.serving.datastore`) both turn a SEG in the PACS
into training data with :func:`read_seg_label`, whoever wrote it: monaifrac (:mod:`monaifrac.dicom.seg`),
MONAI Label, or a viewer (OHIF, Slicer/dcmqi, highdicom scripts).

What makes a SEG a label of a film
----------------------------------
* It **references the film**: the film's SOP Instance UID is among its source images
  (Referenced Series Sequence) and frames of it derive from the film. A SEG of several images
  (the AP and the lateral view) is read for this film's frames only.
* Its frames have the film's **Rows x Columns**, and its pixel locations are the film's
  (Spatial Locations Preserved not ``NO``): a DX/CR film's pixel frame is its displayed frame,
  so the label map needs no rotation.
* At least one segment says **fracture** or **bone**. A segment's meaning is read from its
  Segmented Property Type code first (:data:`FRACTURE_CODES`, :data:`BONE_CODES`: monaifrac's own
  and the SNOMED CT concepts other tools pick), and only when no segment's code is known from
  its Segment Label (``fracture``/``fractured``/``Fraktur``..., ``bone``). Other segments (soft
  tissue, a marker) are ignored. Several segments of one kind are united; fracture wins over bone.
* BINARY and FRACTIONAL alike: a FRACTIONAL segment marks a pixel from a value of 0.5 up
  (rescaled to [0, 1] by highdicom as the SEG's Maximum Fractional Value says).

Decoding is highdicom's (``Segmentation.get_pixels_by_source_instance``), which works in both
environments (highdicom 0.28 here, 0.22 in MONAI Label's). Anything that stops a SEG from being a
label of the film is an :class:`~monaifrac.errors.InputError` naming the SEG and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from monaifrac.dicom.codes import BONE as BONE_TISSUE, TRAUMATIC_ABNORMALITY
from monaifrac.errors import InputError

BACKGROUND, BONE, FRACTURE = 0, 1, 2  # monaifrac.data.masks' labels, without importing skimage

# (code value, coding scheme): SCT and SRT name the same SNOMED concepts with the same numeric ids
_SNOMED = ("SCT", "SRT")
FRACTURE_CODES = {(value, scheme) for scheme in _SNOMED for value in (
    TRAUMATIC_ABNORMALITY[0],  # 19130008 Traumatic abnormality: monaifrac's own SEGs
    "72704001",                # Fracture (morphologic abnormality)
    "125605004",               # Fracture of bone (disorder)
)}
BONE_CODES = {(value, scheme) for scheme in _SNOMED for value in (
    BONE_TISSUE[0],            # 3138006 Bone tissue: monaifrac's own SEGs
    "272673000",               # Bone structure (body structure)
)} | {("T-D016E", "SRT")}      # "Bone" of the SNOMED RT era (dcmqi's and Slicer's older examples)
_FRACTURE_WORDS = ("fractur", "fraktur")
_BONE_WORDS = ("bone",)


@dataclass
class SegLabel:
    """A SEG read as one film's label map.

    Attributes:
        label: (Rows, Columns) uint8 in the film's pixel (= displayed) frame: 0 background,
            1 bone, 2 fracture.
        has_fracture: a fracture segment is there (an empty one says "no fracture on this film").
        has_bone: a bone segment is there (without one, bone is unknown rather than absent).
        segments: segment number → the label it was read as (1 or 2), for the log.
        by_text: the segments were recognised by their labels, no code being known.
        when: when the SEG was made, ``YYYYMMDDHHMMSS...`` (:func:`seg_time`), for "newest wins".
        series_uid, sop_uid: the SEG's.
    """

    label: np.ndarray
    has_fracture: bool
    has_bone: bool
    segments: dict = field(default_factory=dict)
    by_text: bool = False
    when: str = ""
    series_uid: str = ""
    sop_uid: str = ""


def seg_time(ds) -> str:
    """When a SEG was made, as a sortable ``YYYYMMDDHHMMSS.ffffff`` string ("" when it says nothing):
    Series Date/Time, else Content Date/Time, else Instance Creation Date/Time."""
    for date_key, time_key in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"),
                               ("InstanceCreationDate", "InstanceCreationTime")):
        date = str(ds.get(date_key, "") or "").strip()
        if date:
            clock = str(ds.get(time_key, "") or "").strip().replace(":", "")
            return date + clock
    return ""


def _name(ds, name: Optional[str]) -> str:
    if name:
        return str(name)
    return f"SEG {ds.get('SOPInstanceUID', '(no SOP Instance UID)')}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _meaning(segment) -> tuple[Optional[int], Optional[int]]:
    """(label by code, label by text) of one item of the Segment Sequence; None where it says nothing."""
    by_code = None
    for item in segment.get("SegmentedPropertyTypeCodeSequence", []) or []:
        key = (str(item.get("CodeValue", "")).strip(), str(item.get("CodingSchemeDesignator", "")).strip().upper())
        if key in FRACTURE_CODES:
            by_code = FRACTURE
        elif key in BONE_CODES and by_code is None:
            by_code = BONE
    text = f"{segment.get('SegmentLabel', '')} {segment.get('SegmentDescription', '')}".lower()
    by_text = FRACTURE if any(w in text for w in _FRACTURE_WORDS) else BONE if any(w in text for w in _BONE_WORDS) \
        else None
    return by_code, by_text


# functional groups a SEG may hold once for all frames (Shared) or per frame; highdicom 0.22 (MONAI Label's
# environment) looks for them per frame only, and highdicom 0.23+ writes a one-segment SEG's in Shared
_PER_FRAME_GROUPS = ("SegmentIdentificationSequence", "DerivationImageSequence")


def _groups_per_frame(seg):
    """``seg``, or a copy with the shared functional groups of :data:`_PER_FRAME_GROUPS` repeated in every
    frame's: the same SEG (PS3.3 C.7.6.16: a group is in one place or the other), as every highdicom reads it."""
    import copy

    shared = (seg.get("SharedFunctionalGroupsSequence") or [None])[0]
    frames = seg.get("PerFrameFunctionalGroupsSequence") or []
    moved = [k for k in _PER_FRAME_GROUPS if shared is not None and k in shared and frames and k not in frames[0]]
    if not moved:
        return seg
    seg = copy.deepcopy(seg)
    shared = seg.SharedFunctionalGroupsSequence[0]
    for keyword in moved:
        for frame in seg.PerFrameFunctionalGroupsSequence:
            setattr(frame, keyword, copy.deepcopy(getattr(shared, keyword)))
        delattr(shared, keyword)
    return seg


def read_seg_label(seg, film, name: Optional[str] = None) -> SegLabel:
    """The label map a SEG gives ``film`` (see the module docstring).

    Args:
        seg: the SEG, a :class:`pydicom.Dataset` or the path of a file.
        film: the film's header (:class:`pydicom.Dataset`; Rows, Columns, SOP Instance UID are used).
        name: what to call the SEG in an error (default ``SEG <SOP Instance UID>``, or the path).

    Returns:
        A :class:`SegLabel`.

    Raises:
        InputError: not a readable SEG, it references other images, its frames are not the film's
            size or place, or none of its segments says fracture or bone.
    """
    import highdicom as hd
    import pydicom

    if isinstance(seg, (str, os.PathLike)):
        name = name or str(seg)
        try:
            seg = pydicom.dcmread(seg)
        except MemoryError:
            raise
        except Exception as err:
            raise InputError(name, f"not a readable DICOM file: {_one_line(err)}") from None
    name = _name(seg, name)
    film_sop = str(film.SOPInstanceUID)
    if str(seg.get("Modality", "")) != "SEG" or "SegmentSequence" not in seg:
        raise InputError(name, f"not a DICOM Segmentation (Modality {seg.get('Modality', 'missing')!r}, "
                               f"{'a' if 'SegmentSequence' in seg else 'no'} Segment Sequence)")
    referenced = {str(instance.get("ReferencedSOPInstanceUID", ""))
                  for series in seg.get("ReferencedSeriesSequence", []) or []
                  for instance in series.get("ReferencedInstanceSequence", []) or []}
    if film_sop not in referenced:
        raise InputError(name, f"references {len(referenced)} other image(s), not the film {film_sop}")
    if (int(seg.get("Rows", 0)), int(seg.get("Columns", 0))) != (int(film.Rows), int(film.Columns)):
        raise InputError(name, f"{seg.get('Rows')} x {seg.get('Columns')} pixels for a film of {film.Rows} x "
                               f"{film.Columns}: not on the film's pixels")

    meanings = {int(s.SegmentNumber): _meaning(s) for s in seg.SegmentSequence}
    by_code = {n: code for n, (code, _text) in meanings.items() if code is not None}
    by_text = not by_code
    chosen = by_code or {n: text for n, (_code, text) in meanings.items() if text is not None}
    if not chosen:
        described = "; ".join(f"{n} {s.get('SegmentLabel', '')!r}" for n, s in
                              ((int(s.SegmentNumber), s) for s in seg.SegmentSequence))
        raise InputError(name, f"no segment says fracture or bone (segments: {described or 'none'})")

    fractional = str(seg.get("SegmentationType", "")).upper() == "FRACTIONAL"
    try:
        segmentation = hd.seg.Segmentation.from_dataset(_groups_per_frame(seg), copy=True)
        numbers = sorted(chosen)
        pixels = segmentation.get_pixels_by_source_instance(
            [film_sop], segment_numbers=numbers, assert_missing_frames_are_empty=True,
            dtype=np.float32 if fractional else np.uint8)[0]  # (rows, columns, segments), rescaled if FRACTIONAL
    except MemoryError:
        raise
    except Exception as err:  # highdicom refuses with ValueError, AttributeError, KeyError... on what it cannot use
        raise InputError(name, f"cannot be decoded for the film {film_sop}: {_one_line(err)}") from None
    label = np.zeros((int(film.Rows), int(film.Columns)), np.uint8)
    for kind in (BONE, FRACTURE):  # fracture over bone
        for index, number in enumerate(numbers):
            if chosen[number] == kind:
                label[pixels[..., index] >= 0.5] = kind
    return SegLabel(label=label, has_fracture=FRACTURE in chosen.values(), has_bone=BONE in chosen.values(),
                    segments=dict(sorted(chosen.items())), by_text=by_text, when=seg_time(seg),
                    series_uid=str(seg.get("SeriesInstanceUID", "")), sop_uid=str(seg.get("SOPInstanceUID", "")))


def read_fracture_label(seg, film, name: Optional[str] = None) -> SegLabel:
    """:func:`read_seg_label` of a SEG that can be a training label of ``film``: one with a fracture segment.

    A SEG of bone or soft tissue alone says nothing of fractures: as a label it would teach that the
    film has none. Training labels (``pacs-pull --labels``, MONAI Label's datastore) take only these.

    Raises:
        InputError: as :func:`read_seg_label`, or the SEG has no fracture segment.
    """
    label = read_seg_label(seg, film, name)
    if not label.has_fracture:
        where = name or (str(seg) if isinstance(seg, (str, os.PathLike)) else _name(seg, None))
        raise InputError(where, "has no fracture segment: it says nothing of fractures")
    return label


__all__ = ("BONE_CODES", "FRACTURE_CODES", "SegLabel", "read_fracture_label", "read_seg_label", "seg_time")
