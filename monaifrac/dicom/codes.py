"""What monaifrac's DICOM objects of a film say alike: codes, presence call, algorithm, patient and study.

The SEG (:mod:`monaifrac.dicom.seg`) and the SR (:mod:`monaifrac.dicom.sr`) describe the same
findings of the same algorithm, so they take their codes, their wording of the presence call and
the algorithm's identity from here, and a PACS user reads the same thing in both.

Codes are ``(value, scheme, meaning)`` tuples rather than pydicom ``Code`` objects, written out
because pydicom 2 (MONAI Label's environment) names some of them differently from pydicom 3's code
dictionary: an object says the same in both environments.
"""

from __future__ import annotations

# pydicom 3's codes.SCT.Tissue, .BoneTissue, .MorphologicallyAbnormalStructure, .TraumaticAbnormalityMorphologic
TISSUE = ("85756007", "SCT", "Tissue")
BONE = ("3138006", "SCT", "Bone")
ABNORMAL_STRUCTURE = ("49755003", "SCT", "Morphologically Abnormal Structure")
# SNOMED CT's "Fracture (morphologic abnormality)" (72704001) is a child of this one but is in no
# DICOM context group; the labels and tracking identifiers say "fracture"
TRAUMATIC_ABNORMALITY = ("19130008", "SCT", "Traumatic abnormality (morphologic abnormality)")
# codes.cid7162.ArtificialIntelligence: the algorithm family
ARTIFICIAL_INTELLIGENCE = ("123110", "DCM", "Artificial Intelligence")
# the call at the presence threshold, as a coded value (CID 240 "Present/Absent")
PRESENT = ("52101004", "SCT", "Present")
ABSENT = ("272519000", "SCT", "Absent")
# the film's fracture score: a probability in [0, 1] (DCM 122157), unitless (UCUM "1")
PROBABILITY = ("122157", "DCM", "Probability")
NO_UNITS = ("1", "UCUM", "no units")

ALGORITHM_NAME = "monaifrac"
# attributes highdicom copies from the film into a derived object's Patient and General Study
# modules; all type 2 there (present, empty when unknown), and some writers leave them out of a film
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "StudyDate", "StudyTime", "ReferringPhysicianName")


def with_type2_copied(film):
    """A copy of the film's header with every attribute of :data:`TYPE2_COPIED` present (empty where
    the film has none), so that highdicom can copy the patient and the study from it."""
    source = film.copy()
    for keyword in TYPE2_COPIED:
        if keyword not in source:
            setattr(source, keyword, "")
    return source


def algorithm_version() -> str:
    import monaifrac

    return monaifrac.__version__


def is_fractured(score: float, threshold: float) -> bool:
    """The presence call: a film is called fractured when its score reaches the threshold."""
    return float(score) >= float(threshold)


def presence_call(score: float | None, threshold: float) -> str:
    """The Series Description of a film's SEG or SR: its fracture score and the call at ``threshold``."""
    if score is None:
        return "monaifrac bone and fracture"
    call = "fractured" if is_fractured(score, threshold) else "not fractured"
    return f"monaifrac fracture {float(score):.2f} ({call}; threshold {float(threshold):.2f})"



def check_label_map(film, label_hw) -> "np.ndarray":
    """``label_hw`` as an array, checked against the film it is written for: (Rows, Columns) of the film,
    values 0 background, 1 bone, 2 fracture (the SEG, SR and SC writers' shared precondition).

    Raises:
        ValueError: another shape, or another value.
    """
    import numpy as np

    label_hw = np.asarray(label_hw)
    if label_hw.shape != (int(film.Rows), int(film.Columns)):
        raise ValueError(f"label map of shape {label_hw.shape} for a film of {film.Rows} rows x {film.Columns} columns")
    values = np.unique(label_hw)
    if not set(values.tolist()) <= {0, 1, 2}:
        raise ValueError(f"label values {values.tolist()} (expected 0 background, 1 bone, 2 fracture)")
    return label_hw

__all__ = ("ABNORMAL_STRUCTURE", "ABSENT", "ALGORITHM_NAME", "ARTIFICIAL_INTELLIGENCE", "BONE", "NO_UNITS",
           "PRESENT", "PROBABILITY", "TISSUE", "TRAUMATIC_ABNORMALITY", "TYPE2_COPIED", "check_label_map", "algorithm_version",
           "is_fractured", "presence_call", "with_type2_copied")
