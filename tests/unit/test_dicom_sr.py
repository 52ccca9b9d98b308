"""monaifrac/dicom/sr.py: a label map becomes a TID 1500 report whose outlines lie on the fracture components.

Read back with highdicom (``srread``), the way a consumer of the PACS would read it; validated
with dicom3tools' ``dciodvfy`` where installed. Whether a viewer draws it is
tests/integration/test_ohif_browser.py.
"""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

import monaifrac
from monaifrac.dicom.films import write_dx
from monaifrac.dicom.seg import save_dataset
from monaifrac.dicom.sr import SERIES_NUMBER, build_report, fracture_components, fracture_outlines
from tests.conftest import draw_film

H, W = 48, 40
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _label() -> np.ndarray:
    """Two fracture components on a bone bar: a 7 x 8 block with a bone pixel inside (a hole), and a
    3 x 5 one touching the right border; a lone fracture pixel joined to nothing but diagonally."""
    label = np.zeros((H, W), np.uint8)
    label[15:35, 2:40] = 1
    label[20:27, 5:13] = 2
    label[23, 8] = 1  # a hole: the outline goes round it
    label[30:33, 35:40] = 2  # touches the last column
    label[28, 33] = 2  # its own component (only a corner touches the block above)
    return label


def _film(path, **kwargs):
    pixels = (draw_film(H, W).astype(np.uint16) << 4)
    return write_dx(path, pixels, patient_id="SR-TEST", **kwargs)


@pytest.fixture
def film(tmp_path):
    return _film(tmp_path / "film.dcm", pixel_spacing=(0.139, 0.139), patient_orientation=("L", "F"))


def _read_back(sr, tmp_path, name="film.sr.dcm"):
    path = tmp_path / name
    save_dataset(sr, path)
    return path, hd.sr.srread(path)


def _on_outline(mask: np.ndarray, x: float, y: float) -> bool:
    """Whether image point (x, y) (column, row; pixel centres at +0.5) lies on the edge between a
    pixel of ``mask`` and a 4-neighbour outside it (outside the image counts as outside)."""
    col, row = x - 0.5, y - 0.5  # in pixel-centre indices: one of them is a half-integer

    def inside(r: int, c: int) -> bool:
        return 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and bool(mask[r, c])

    if float(col).is_integer() and not float(row).is_integer():  # between two rows of one column
        pair = [(int(np.floor(row)), int(col)), (int(np.ceil(row)), int(col))]
    elif float(row).is_integer() and not float(col).is_integer():  # between two columns of one row
        pair = [(int(row), int(np.floor(col))), (int(row), int(np.ceil(col)))]
    else:
        return False
    return sorted(inside(*p) for p in pair) == [False, True]


def test_outlines_lie_on_the_fracture_components(film):
    label = _label()
    outlines = fracture_outlines(label)
    assert len(outlines) == 3  # the diagonal neighbour is a component of its own
    sizes = []
    for outline in outlines:
        assert outline.dtype == np.float32 and outline.shape[1] == 2
        np.testing.assert_array_equal(outline[0], outline[-1])  # closed
        # the component the first vertex borders: every vertex borders the same one
        from skimage.measure import label as components_of

        components = components_of(label == 2, connectivity=1)
        x, y = outline[0]
        touching = {components[r, c] for r, c in [(int(y - 0.5), int(np.floor(x - 0.5))),
                                                  (int(y - 0.5), int(np.ceil(x - 0.5))),
                                                  (int(np.floor(y - 0.5)), int(x - 0.5)),
                                                  (int(np.ceil(y - 0.5)), int(x - 0.5))]
                    if 0 <= r < H and 0 <= c < W and components[r, c]}
        [index] = touching
        mask = components == index
        from scipy import ndimage

        filled = ndimage.binary_fill_holes(mask)
        assert all(_on_outline(filled, x, y) for x, y in outline), outline
        # the polygon encloses the component: its area is the component's (holes filled), less
        # an eighth of a pixel at each corner the contour cuts
        xs, ys = outline[:, 0].astype(float), outline[:, 1].astype(float)
        area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
        assert filled.sum() - 0.125 * len(outline) <= area <= filled.sum(), (area, filled.sum())
        sizes.append(int(filled.sum()))
    assert sizes == sorted(sizes, reverse=True)  # largest first
    assert [pixels for _outline, pixels in fracture_components(label)] == sizes
    assert fracture_outlines(np.where(label == 2, 1, label)) == []


def test_report_reads_back_with_its_regions_score_and_call(film, tmp_path):
    label = _label()
    path, sr = _read_back(build_report(film, label, 0.934, 0.5), tmp_path)
    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == COMPREHENSIVE_SR and raw.Modality == "SR"
    assert raw.SeriesNumber == SERIES_NUMBER and raw.SeriesInstanceUID != film.SeriesInstanceUID
    assert (raw.StudyInstanceUID, raw.PatientID) == (film.StudyInstanceUID, "SR-TEST")
    assert raw.SeriesDescription == "monaifrac fracture 0.93 (fractured; threshold 0.50)"
    assert raw.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    [evidence] = raw.CurrentRequestedProcedureEvidenceSequence
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        film.SOPInstanceUID

    regions = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in regions] == ["fracture 1", "fracture 2", "fracture 3"]
    expected = fracture_components(label)
    for group, (outline, pixels) in zip(regions, expected):
        assert group.finding_type.value == "19130008"  # the SEG's fracture code
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        np.testing.assert_allclose(group.roi.value, outline)
        [ref] = group.roi.ContentSequence[0].ReferencedSOPSequence
        assert ref.ReferencedSOPInstanceUID == film.SOPInstanceUID
        assert "ReferencedFrameNumber" not in ref  # a single-frame film
        [area] = group.get_measurements()  # the component's pixels (holes filled) at the film's spacing
        assert (area.name.value, area.unit.value) == ("42798000", "mm2")
        assert area.value == pytest.approx(pixels * 0.139 * 0.139, rel=1e-4)
        algorithm = {item.name.value: item.value for item in group[0].ContentSequence
                     if item.name.value in ("111001", "111003")}
        assert algorithm == {"111001": "monaifrac", "111003": monaifrac.__version__}  # Algorithm Name, Version
    [whole] = sr.content.get_image_measurement_groups()
    assert whole.tracking_identifier == "film"
    [probability] = whole.get_measurements()
    assert (probability.name.value, probability.value) == ("122157", pytest.approx(0.934))
    calls = {q.name.value: q.value.meaning for q in whole.get_qualitative_evaluations()}
    assert calls["19130008"] == "Present"
    # the score is the whole film's: inferred from a region that is the film's full frame
    [coords] = probability.referenced_coordinates
    np.testing.assert_array_equal(coords.value, [[0, 0], [W, 0], [W, H], [0, H], [0, 0]])


def test_a_film_called_normal_gets_a_report_that_says_so(film, tmp_path):
    bone_only = np.where(_label() == 2, 1, _label()).astype(np.uint8)
    path, sr = _read_back(build_report(film, bone_only, 0.12, 0.5), tmp_path)
    assert sr.content.get_planar_roi_measurement_groups() == []
    [whole] = sr.content.get_image_measurement_groups()
    assert {q.name.value: q.value.meaning for q in whole.get_qualitative_evaluations()}["19130008"] == "Absent"
    assert whole.get_measurements()[0].value == pytest.approx(0.12)
    assert pydicom.dcmread(path).SeriesDescription == "monaifrac fracture 0.12 (not fractured; threshold 0.50)"


def test_regions_under_a_normal_call_are_still_reported(film, tmp_path):
    """The label map and the score can disagree: the outlines are the label map's, the call the score's."""
    _path, sr = _read_back(build_report(film, _label(), 0.2, 0.5), tmp_path)
    assert len(sr.content.get_planar_roi_measurement_groups()) == 3
    [whole] = sr.content.get_image_measurement_groups()
    assert {q.name.value: q.value.meaning for q in whole.get_qualitative_evaluations()}["19130008"] == "Absent"


def test_bad_label_maps_and_scores_are_refused(film):
    with pytest.raises(ValueError, match="shape"):
        build_report(film, np.zeros((W, H), np.uint8), 0.5, 0.5)
    with pytest.raises(ValueError, match="label values"):
        build_report(film, np.full((H, W), 3, np.uint8), 0.5, 0.5)
    with pytest.raises(ValueError, match=r"not in \[0, 1\]"):
        build_report(film, _label(), 1.5, 0.5)
    with pytest.raises(ValueError, match="nothing to report"):
        build_report(film, np.zeros((H, W), np.uint8), None, 0.5)


def test_a_film_without_orientation_or_spacing_is_reported_too(tmp_path):
    """highdicom's image library needs both; a converted film often has neither."""
    bare = _film(tmp_path / "bare.dcm")
    _path, sr = _read_back(build_report(bare, _label(), None, 0.5), tmp_path)
    regions = sr.content.get_planar_roi_measurement_groups()
    assert len(regions) == 3
    assert all(g.get_measurements() == [] for g in regions)  # no pixel spacing: no area
    assert sr.content.get_image_measurement_groups() == []  # no score: no film group


# ----------------------------------------------------------------------------- dciodvfy



@pytest.mark.parametrize("case", ["fractured", "normal", "bare film"])
def test_dciodvfy_finds_no_error_in_a_report(dciodvfy, tmp_path, case):
    if case == "bare film":
        film, label, score = _film(tmp_path / "film.dcm"), _label(), None
    else:
        film = _film(tmp_path / "film.dcm", pixel_spacing=(0.139, 0.139), patient_orientation=("L", "F"))
        label, score = (_label(), 0.93) if case == "fractured" else (np.zeros((H, W), np.uint8), 0.1)
    path = tmp_path / "film.sr.dcm"
    save_dataset(build_report(film, label, score, 0.5), path)
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    text = report.stdout + report.stderr
    print(text)  # shown with pytest -s: what dciodvfy says beyond errors (warnings)
    assert "Error" not in text, text
