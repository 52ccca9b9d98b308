"""A film's fracture findings as a DICOM Structured Report (TID 1500 Measurement Report), with highdicom.

:func:`build_report` turns the label map of one DICOM film into a Comprehensive SR instance of
the film's own study: one outlined image region per fracture component, and the film's presence
score and call. A viewer that reads TID 1500 (OHIF's ``cornerstone-dicom-sr``) draws the outlines
over the film; a PACS worklist shows the call in Series Description, as for the SEG.

What the report says
--------------------
::

    CONTAINER  Imaging Measurement Report (DCM 126000)                      TID 1500
      HAS CONCEPT MOD  Language of Content Item and Descendants = English
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID, Name "monaifrac", ...
      HAS CONCEPT MOD  Procedure Reported = Plain radiography (SCT 168537006)
      CONTAINS  Image Library (DCM 111028) > Image Library Group > IMAGE: the film
      CONTAINS  Imaging Measurements (DCM 126010)
        Measurement Group (DCM 125007) "fracture K", one per fracture component  TID 1410
          (largest first): Tracking Identifier and Unique Identifier, Finding Category =
          Morphologically Abnormal Structure, Finding = Traumatic abnormality, Algorithm Name
          "monaifrac" and Version, Image Region (DCM 111030): SCOORD POLYLINE, closed,
          SELECTED FROM the film; NUM Area (SCT 42798000) in mm2, the component's pixels
          times the film's Pixel Spacing, when the film has one
        Measurement Group "film", when there is a score                        TID 1501
          Finding = Traumatic abnormality, Algorithm, Source image = the film,
          CODE Traumatic abnormality = Present / Absent: the call at the threshold,
          NUM Probability (DCM 122157) = the film's fracture score, unit "1",
            INFERRED FROM a SCOORD POLYLINE that is the film's whole frame

A film called normal gets the film group with "Absent" and no region: the report says so
rather than being missing. The label map and the score can disagree (fracture pixels on a film
called not fractured): the regions are the label map's, the call is the score's. The codes,
the wording of the call (Series Description) and the algorithm's identity are those of
:mod:`monaifrac.dicom.codes`, the SEG's too.

The outline
-----------
Fracture pixels (label 2) are grouped in 4-connected components, holes filled, and each
component's outer boundary is traced along the pixel edges (``skimage.measure.find_contours``
at level 0.5: a corner pixel's outer corner is cut by half a pixel), keeping only the vertices
where the boundary turns. Every vertex lies on the boundary between a pixel of the component and
one outside it; the polygon's area is the component's, less an eighth of a pixel per cut corner. The
coordinates are DICOM's 2D image coordinates of the film as stored: (column, row), the top-left
corner of the top-left pixel at (0, 0), so a pixel's centre is at +0.5, in the film's own pixel
frame (the label map is in that frame; see :mod:`monaifrac.dicom.seg`).

Why these choices (the viewer)
------------------------------
OHIF 3.10 (the build MONAI Label 0.8.5 serves; read in its ``cornerstone-dicom-sr`` extension,
``getSopClassHandlerModule.ts`` and ``OHIFCornerstoneSRMeasurementViewport.tsx``) decides:

* the SOP class: it routes *Comprehensive 3D* SR to its SCOORD3D path, which places an annotation
  with no image ("MetadataProvider::Empty imageId"); a projection film has no patient coordinates
  to put SCOORD3D in anyway. So this is a **Comprehensive SR** (1.2.840.10008.5.1.4.1.1.88.33)
  with 2D **SCOORD** in the film's pixel frame.
* the reference: it matches a SCOORD's Referenced SOP Instance UID and frame number (1 when
  absent) to the film's image; the film is single-frame, so no Referenced Frame Number is written.
* the groups: it reads a Measurement Group only with a Tracking Identifier and a Tracking Unique
  Identifier; it takes each group's first coordinates (a TID 1501 group's from its NUM's INFERRED
  FROM content) and fails on a group without any, and its SR viewport fails on a report with no
  group at all. Hence the film group's score is inferred from the film's whole frame (where the
  score was computed: the film), which OHIF draws as a frame round the film labelled
  "Probability: 0.12 1", and a normal film's report still has that group.
"""

from __future__ import annotations

import numpy as np

from monaifrac.dicom.codes import (ABNORMAL_STRUCTURE, ABSENT, ALGORITHM_NAME, NO_UNITS, PRESENT, PROBABILITY,
                                   TRAUMATIC_ABNORMALITY, algorithm_version, is_fractured, presence_call,
                                   check_label_map, with_type2_copied)

SR_SUFFIX = ".sr.dcm"
SERIES_NUMBER = 901  # after the SEG's 900: one report per series
FRACTURE = 2  # the label value of fracture pixels
PLAIN_RADIOGRAPHY = ("168537006", "SCT", "Plain radiography")
FILM_TRACKING_ID = "film"  # the tracking identifier of the film-level group
IMAGING_MEASUREMENTS = ("126010", "DCM", "Imaging Measurements")
AREA = ("42798000", "SCT", "Area")
SQUARE_MILLIMETRE = ("mm2", "UCUM", "square millimeter")


def fracture_outlines(label_hw: np.ndarray) -> list[np.ndarray]:
    """The outline of each fracture component, largest first (see :func:`fracture_components`)."""
    return [outline for outline, _pixels in fracture_components(label_hw)]


def fracture_components(label_hw: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The outline of each fracture component of a label map, largest component first.

    Args:
        label_hw: (rows, columns) label map, fracture pixels equal to 2.

    Returns:
        One (outline, pixels) per 4-connected component of fracture pixels (holes filled): the
        outline a closed polyline, a (N, 2) float32 array of (column, row) DICOM image
        coordinates, (0, 0) the top-left corner of the top-left pixel, the first vertex repeated
        last, every vertex on the boundary between a pixel of the component and a pixel outside
        it; pixels the number of pixels it encloses. Empty list: no fracture pixel.
    """
    from scipy import ndimage
    from skimage.measure import approximate_polygon, find_contours, label

    components = label(np.asarray(label_hw) == FRACTURE, connectivity=1)
    sizes = np.bincount(components.ravel())[1:]
    outlines = []
    for index in np.argsort(-sizes, kind="stable") + 1:
        filled = ndimage.binary_fill_holes(components == index)
        # padded so that a component touching the border is closed there too; "low" fully
        # connected: the background is 8-connected, so one 4-connected component is one contour
        contours = find_contours(np.pad(filled, 1).astype(np.float32), 0.5, fully_connected="low")
        contour = max(contours, key=len)  # the outer boundary (a filled component has no other)
        contour = approximate_polygon(contour, tolerance=0)  # drops the vertices in the middle of straight runs
        rows, cols = contour[:, 0] - 1, contour[:, 1] - 1  # undo the padding: pixel-centre indices
        outlines.append((np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float32), int(filled.sum())))
    return outlines


def _device_observer():
    import highdicom as hd
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    version = algorithm_version()
    # one Device Observer UID per monaifrac version: the same "device" across reports
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[ALGORITHM_NAME, version]), name=ALGORITHM_NAME,
        manufacturer_name=ALGORITHM_NAME, model_name=f"{ALGORITHM_NAME} {version}")
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=Code("121007", "DCM", "Device"), observer_identifying_attributes=device))


def _source(film):
    import highdicom as hd

    return hd.sr.SourceImageForRegion(film.SOPClassUID, film.SOPInstanceUID)


def _region_group(number: int, outline: np.ndarray, pixels: int, film):
    """TID 1410: one fracture component, outlined on the film, with its area where the film's pixel
    spacing (calibrated to the patient) is known."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    measurements = None
    spacing = film.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        area_mm2 = pixels * float(spacing[0]) * float(spacing[1])
        measurements = [hd.sr.Measurement(name=Code(*AREA), value=area_mm2, unit=Code(*SQUARE_MILLIMETRE))]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"fracture {number}"),
        referenced_region=hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline,
                                            source_image=_source(film)),
        finding_type=Code(*TRAUMATIC_ABNORMALITY),
        finding_category=Code(*ABNORMAL_STRUCTURE),
        algorithm_id=hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=algorithm_version()),
        measurements=measurements,
    )


def film_bounds(film) -> np.ndarray:
    """The film's whole pixel area as a closed (5, 2) polyline of (column, row) image coordinates."""
    rows, cols = float(film.Rows), float(film.Columns)
    return np.array([[0, 0], [cols, 0], [cols, rows], [0, rows], [0, 0]], dtype=np.float32)


def _film_group(film, score: float, threshold: float):
    """TID 1501: the film's presence score, inferred from the whole film, and the call at the threshold."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    whole_film = hd.sr.CoordinatesForMeasurement(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                                 graphic_data=film_bounds(film), source_image=_source(film))
    call = PRESENT if is_fractured(score, threshold) else ABSENT
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=FILM_TRACKING_ID),
        finding_type=Code(*TRAUMATIC_ABNORMALITY),
        finding_category=Code(*ABNORMAL_STRUCTURE),
        algorithm_id=hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=algorithm_version()),
        measurements=[hd.sr.Measurement(name=Code(*PROBABILITY), value=float(score), unit=Code(*NO_UNITS),
                                        referenced_coordinates=[whole_film])],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=Code(*TRAUMATIC_ABNORMALITY), value=Code(*call))],
        source_images=[hd.sr.SourceImageForMeasurementGroup(film.SOPClassUID, film.SOPInstanceUID)],
    )


def _image_library(film):
    """TID 1600 Image Library: the film, with its TID 1602/1603 descriptors where the film has them.

    highdicom describes a projection film by its Patient Orientation and Imager Pixel Spacing and
    fails on a film without them (both are facts only the modality knows, often absent from a
    converted film); such a film is listed without descriptors (they are optional in TID 1601).
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    try:
        return list(hd.sr.ImageLibrary([film]))
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    entry = hd.sr.ImageContentItem(name=Code("260753009", "SCT", "Source"), referenced_sop_class_uid=film.SOPClassUID,
                                   referenced_sop_instance_uid=film.SOPInstanceUID, relationship_type="CONTAINS")
    group = hd.sr.ContainerContentItem(name=Code("126200", "DCM", "Image Library Group"), relationship_type="CONTAINS")
    group.ContentSequence = hd.sr.ContentSequence([entry])
    library = hd.sr.ContainerContentItem(name=Code("111028", "DCM", "Image Library"), relationship_type="CONTAINS")
    library.ContentSequence = hd.sr.ContentSequence([group])
    return [library]


def build_report(film, label_hw: np.ndarray, score: float | None, threshold: float):
    """A TID 1500 Measurement Report of ``film``'s fractures (see the module docstring).

    Args:
        film: the film's :class:`pydicom.Dataset` (its header is enough: pixel data is not used).
        label_hw: (Rows, Columns) uint8 label map in the film's stored pixel frame, values in
            {0, 1, 2} (background, bone, fracture).
        score: the film's fracture presence score in [0, 1], or None (no film group then: the
            report holds the fracture regions only).
        threshold: the presence threshold the call is made at.

    Returns:
        A :class:`highdicom.sr.ComprehensiveSR` (a :class:`pydicom.Dataset`): a new series
        (number 901) and instance in the film's study, referencing the film, Series Description
        the presence call (``monaifrac fracture 0.93 (fractured; threshold 0.50)``).

    Raises:
        ValueError: the label map's shape is not the film's Rows x Columns, or it holds values
            other than 0, 1, 2; the score is outside [0, 1]; or there is nothing to report
            (no score and no fracture pixel).
        RuntimeError: highdicom is too old (0.22, MONAI Label's environment).
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    if not hasattr(hd.sr, "CoordinatesForMeasurement"):  # highdicom 0.22, MONAI Label's environment
        raise RuntimeError(f"the DICOM SR needs a newer highdicom than {hd.__version__} (the main environment's, "
                           "pyproject.toml): it has no coordinates for a measurement")
    label_hw = check_label_map(film, label_hw)
    if score is not None and not 0.0 <= float(score) <= 1.0:
        raise ValueError(f"fracture score {score!r} is not in [0, 1]")
    groups = [_region_group(number, outline, pixels, film)
              for number, (outline, pixels) in enumerate(fracture_components(label_hw), start=1)]
    if score is not None:
        groups.append(_film_group(film, score, threshold))
    if not groups:
        raise ValueError("nothing to report: no fracture score and no fracture pixel")
    source = with_type2_copied(film)
    report = hd.sr.MeasurementReport(
        observation_context=_device_observer(),
        procedure_reported=Code(*PLAIN_RADIOGRAPHY),
        imaging_measurements=groups,
    )
    root = report[0]
    items = list(root.ContentSequence)
    at = next(i for i, item in enumerate(items) if item.name == Code(*IMAGING_MEASUREMENTS))
    items[at:at] = _image_library(source)  # where highdicom puts it: before the measurements
    root.ContentSequence = hd.sr.ContentSequence(items)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=root,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=ALGORITHM_NAME,
        is_complete=True,
        is_final=False,  # an algorithm's proposal, verified by nobody
        is_verified=False,
    )
    sr.SeriesDescription = presence_call(score, threshold)
    return sr


__all__ = ("SERIES_NUMBER", "SR_SUFFIX", "build_report", "film_bounds", "fracture_components", "fracture_outlines")
