"""Writing a radiograph as a DICOM Digital X-Ray (DX) object, For Presentation.

:func:`write_dx` turns an ``(H, W)`` uint16 film (row-major, the displayed frame, bone bright)
into one DICOM file that a PACS accepts and a viewer shows the right way round: SOP class
*Digital X-Ray Image Storage - For Presentation* (1.2.840.10008.5.1.4.1.1.1.1), explicit VR
little endian, uncompressed, one frame, one sample per pixel. Tests use it to make films for
the PACS; it is also the way an array leaves monaifrac as a DICOM film. :func:`write_dicom_copies`
writes every film of a FracAtlas-layout folder that way (``monaifrac synth OUT --dicom``).

The modules of the DX IOD (PS3.3 A.26) are filled far enough that dicom3tools' ``dciodvfy``
finds no error in a film written with a pixel spacing and a patient orientation
(``tests/unit/test_dicom_films.py`` runs it where installed): Patient, General Study,
General/DX Series, General Equipment, General Acquisition, General/DX Image, Image Pixel, DX
Anatomy Imaged, DX Detector, VOI LUT, Acquisition Context, SOP Common. Both are facts about
the film that only the caller knows, so neither is made up: without a pixel spacing, Imager
Pixel Spacing (type 1) is left out; without an orientation, Patient Orientation (type 1C) is
left empty; ``dciodvfy`` reports each as an error and everything else is still valid.

Photometric interpretation
--------------------------
The caller always hands in the film as it should *look* (bone bright). ``MONOCHROME2`` stores
it as it is. ``MONOCHROME1`` (the smallest value displayed white, as many CR/DX modalities
send) stores ``2**bits_stored - 1 - v`` for every pixel ``v``, so that a reader which turns
MONOCHROME1 back into MONOCHROME2 shows the same picture. The inversion is against the top
of the stored range, not the film's own maximum, because that is what DICOM readers undo:
ITK/GDCM (``monaifrac.io.read_dicom``) computes ``2**bits_stored - 1 - stored``, so the
MONOCHROME1 file reads back as exactly the MONOCHROME2 array. The Presentation LUT Shape
(``INVERSE``) and Pixel Intensity Relationship Sign say the same thing in tags.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from monaifrac.io import atomic_path

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1")
LATERALITIES = ("R", "L", "B", "U")  # Image Laterality (0020,0062); U = unpaired, the only "not said"

# FracAtlas body parts -> (Body Part Examined defined term, SNOMED CT code, code meaning) for the
# Anatomic Region Sequence, which is type 1 in DX Anatomy Imaged; None -> "Extremity".
BODY_PARTS = {
    "hand": ("HAND", "85562004", "Hand"),
    "leg": ("LEG", "61685007", "Lower limb"),
    "hip": ("HIP", "29836001", "Hip"),
    "shoulder": ("SHOULDER", "16982005", "Shoulder"),
    None: ("EXTREMITY", "66019005", "Extremity"),
}


def _ds_number(path: Path, what: str, value) -> "object":
    """A positive finite decimal as a DICOM DS value (16 characters at most)."""
    from pydicom.valuerep import DSfloat

    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{path}: {what} must be positive and finite, got {value!r}")
    return DSfloat(number, auto_format=True)


def write_dx(
    path: os.PathLike | str,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    pixel_spacing: Sequence[float] | None = None,
    bits_stored: int = 16,
    patient_id: str = "MONAIFRAC-SYNTH",
    patient_name: str = "Synthetic^Film",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    body_part: str | None = None,
    laterality: str = "U",
    patient_orientation: Sequence[str] | None = None,
    series_number: int = 1,
    instance_number: int = 1,
    when: datetime.datetime | None = None,
):
    """Write ``pixels`` as a DX For Presentation DICOM file at ``path``, atomically.

    Args:
        path: the ``.dcm`` file to write; its folder is created. The file appears complete or
            not at all (written to a temporary name beside it, then ``os.replace``).
        pixels: the film, ``(H, W)`` uint16, row-major, as it should be displayed (bone bright).
            Every value must fit in ``bits_stored`` bits.
        photometric: ``"MONOCHROME2"`` (stored as given) or ``"MONOCHROME1"`` (stored inverted,
            ``2**bits_stored - 1 - v``; see the module docstring).
        pixel_spacing: ``(row_mm, col_mm)``, the distance between row centres and between column
            centres in millimetres, written as Pixel Spacing and Imager Pixel Spacing (the
            magnification is taken as 1). ``None`` writes neither: readers then assume 1 mm.
        bits_stored: Bits Stored (High Bit is one less); 12 is usual for real DX detectors.
        patient_id, patient_name: the Patient module (name in DICOM PN form, ``Family^Given``).
        study_uid, series_uid, sop_uid: the instance's UIDs; each ``None`` is a fresh UID, so
            several films share a study or series by passing the same UIDs.
        body_part: a FracAtlas body part (``"hand"``, ``"leg"``, ``"hip"``, ``"shoulder"``) or
            ``None`` (extremity), for Body Part Examined and the Anatomic Region Sequence.
        laterality: Image Laterality, ``"R"``, ``"L"``, ``"B"`` or ``"U"`` (unpaired).
        patient_orientation: Patient Orientation, the patient direction of increasing column
            and of increasing row, each from ``A P R L H F``: ``("L", "F")`` for an AP or PA
            film shown in anatomical position. ``None`` leaves it empty (not known).
        series_number, instance_number: the General Series and General Image numbers.
        when: study, series, content and acquisition date and time; ``None`` is now.

    Returns:
        The :class:`pydicom.Dataset` as written (stored pixels, every UID), so that a caller
        can read back ``StudyInstanceUID``, ``SeriesInstanceUID`` and ``SOPInstanceUID``.

    Raises:
        ValueError: naming ``path``, for pixels that are not 2D uint16 or do not fit in
            ``bits_stored``, or for an unknown photometric, body part or laterality, or a
            bad orientation or spacing. Nothing is written then.
    """
    from pydicom import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(f"{path}: a DX film must be (H, W) uint16, got {pixels.dtype} of shape {pixels.shape}")
    if 0 in pixels.shape:
        raise ValueError(f"{path}: a DX film cannot be empty (shape {pixels.shape})")
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"{path}: photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"{path}: bits_stored must be 8 to 16 for a 16-bit film, got {bits_stored}")
    top = (1 << bits_stored) - 1
    if int(pixels.max()) > top:
        raise ValueError(f"{path}: pixel value {int(pixels.max())} does not fit in {bits_stored} bits stored")
    if body_part not in BODY_PARTS:
        raise ValueError(f"{path}: body_part must be one of {list(BODY_PARTS)}, got {body_part!r}")
    if laterality not in LATERALITIES:
        raise ValueError(f"{path}: laterality must be one of {LATERALITIES}, got {laterality!r}")
    if patient_orientation is not None and (
            len(patient_orientation) != 2 or not all(d and set(d) <= set("APRLHF") for d in patient_orientation)):
        raise ValueError(f"{path}: patient_orientation must be two of A P R L H F (e.g. ('L', 'F')), "
                         f"got {patient_orientation!r}")
    spacing = None
    if pixel_spacing is not None:
        if len(pixel_spacing) != 2:
            raise ValueError(f"{path}: pixel_spacing must be (row_mm, col_mm), got {pixel_spacing!r}")
        spacing = [_ds_number(path, "pixel_spacing", v) for v in pixel_spacing]

    monochrome1 = photometric == "MONOCHROME1"
    # computed in int32 so that top - v cannot wrap; the result fits uint16 again
    stored = (top - pixels.astype(np.int32)).astype(np.uint16) if monochrome1 else pixels
    when = when or datetime.datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    sop_uid = sop_uid or generate_uid()

    ds = Dataset()
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names need not be ASCII
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient (type 2 elements present, empty when unknown)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    # General Series + DX Series
    ds.Modality = "DX"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.PresentationIntentType = "FOR PRESENTATION"
    # General Equipment
    ds.Manufacturer = "monaifrac"
    # General Acquisition
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    # General Image + DX Image. DERIVED/SECONDARY: monaifrac never acquires a film, it converts one
    # (or draws it), and a PACS user should be able to tell that from the tags.
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "written by monaifrac from an array; not acquired by a modality"
    ds.InstanceNumber = instance_number
    ds.ContentDate, ds.ContentTime = date, time
    ds.PatientOrientation = list(patient_orientation) if patient_orientation is not None else ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LIN"
    # +1: lower values = less X-ray intensity reached the detector (dense matter, bone). Bone is
    # bright (high) in a MONOCHROME2 film, so there it is -1; MONOCHROME1 stores it low, so +1.
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    # VOI LUT: a window is required For Presentation; this one spans the stored values
    low, high = int(stored.min()), int(stored.max())
    ds.WindowWidth = max(high - low, 1)
    ds.WindowCenter = (low + high) / 2
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    # DX Anatomy Imaged
    part_term, code, meaning = BODY_PARTS[body_part]
    ds.BodyPartExamined = part_term
    ds.ImageLaterality = laterality
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = code, "SCT", meaning
    ds.AnatomicRegionSequence = [region]
    # DX Detector
    ds.DetectorType = ""
    if spacing is not None:
        ds.ImagerPixelSpacing = spacing
        ds.PixelSpacing = spacing
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "given by the writer; magnification taken as 1"
    # Acquisition Context (type 2: present, empty)
    ds.AcquisitionContextSequence = []

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return ds


SYNTH_PIXEL_SPACING = (0.143, 0.143)  # mm, (row, column): a plausible detector pitch, stated as such
SYNTH_WHEN = datetime.datetime(2000, 1, 1, 12, 0, 0)  # fixed, so that the copies are byte-for-byte reproducible


def write_dicom_copies(fracatlas_dir: os.PathLike | str, out_dir: os.PathLike | str | None = None) -> dict:
    """Write every film of a FracAtlas-layout folder again as a DX For Presentation file.

    For tests and users who need DICOM films (``monaifrac synth OUT --dicom``): the folder's films
    (its JPGs, as :func:`monaifrac.io.read_raster` shows them: EXIF applied, one grey channel)
    become ``<out_dir>/<film id>.dcm``, 12 bits stored (grey level ``v`` → ``round(v * 4095 / 255)``),
    one study and series per film, body part from ``dataset.csv``. Sorted by id, the first film is
    written MONOCHROME1 (stored inverted: a reader must invert it back) and the second with a
    Pixel Spacing of :data:`SYNTH_PIXEL_SPACING`; the others are MONOCHROME2 without spacing.
    UIDs and dates are derived from the film, so a rerun writes the same files; ``.dcm`` files
    of films no longer in the folder are removed.

    Args:
        fracatlas_dir: a FracAtlas-layout folder (``monaifrac synth`` writes one).
        out_dir: where the DICOM files go; default ``<fracatlas_dir>/dicom``.

    Returns:
        ``{"dicom_dir", "films", "monochrome1", "pixel_spacing"}``: the folder, the number of
        files, and the ids written MONOCHROME1 and with a pixel spacing.

    Raises:
        DataError: the folder is not in the FracAtlas layout. InputError: a film cannot be read.
    """
    import hashlib

    from pydicom.uid import generate_uid

    from monaifrac.data.fracatlas import read_fracatlas
    from monaifrac.io import read_raster

    fracatlas_dir = Path(fracatlas_dir)
    out = Path(out_dir) if out_dir is not None else fracatlas_dir / "dicom"
    cases, _problems = read_fracatlas(fracatlas_dir)
    written, mono1, spaced = set(), [], []
    for index, case in enumerate(cases):
        grey, _info = read_raster(case.image)
        pixels = np.round(grey.astype(np.float64) * (4095 / 255)).astype(np.uint16)
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()

        def uid(kind: str) -> str:
            return generate_uid(entropy_srcs=["monaifrac synthetic DX", kind, case.id, digest])

        photometric = "MONOCHROME1" if index == 0 else "MONOCHROME2"
        spacing = SYNTH_PIXEL_SPACING if index == 1 else None
        path = out / f"{case.id}.dcm"
        write_dx(path, pixels, photometric=photometric, pixel_spacing=spacing, bits_stored=12,
                 patient_id=f"SYNTH-{case.id}", study_uid=uid("study"), series_uid=uid("series"), sop_uid=uid("sop"),
                 body_part=case.body_part if case.body_part in BODY_PARTS else None, when=SYNTH_WHEN)
        written.add(path)
        if photometric == "MONOCHROME1":
            mono1.append(case.id)
        if spacing is not None:
            spaced.append(case.id)
    for stale in out.glob("*.dcm"):  # a rerun with fewer films leaves none of the earlier ones
        if stale not in written:
            stale.unlink()
    return {"dicom_dir": str(out), "films": len(written), "monochrome1": mono1, "pixel_spacing": spaced}
