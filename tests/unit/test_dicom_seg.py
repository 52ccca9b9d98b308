"""monaifrac/dicom/seg.py: a label map becomes a DICOM SEG that decodes back to the same pixels.

Decoded with highdicom (``segread`` + ``get_pixels_by_source_instance``), the way a consumer of
the PACS would read it; validated with dicom3tools' ``dciodvfy`` where installed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

import monaifrac
from monaifrac.dicom.films import write_dx
from monaifrac.dicom.seg import SaveDicomSeg, SaveDicomSegd, make_segmentation, presence_call, write_segmentation
from monaifrac.io import to_monai_frame
from tests.conftest import draw_film

H, W = 40, 30


def _film() -> np.ndarray:
    return (draw_film(H, W).astype(np.uint16) << 4) + np.arange(W, dtype=np.uint16)


def _label() -> np.ndarray:
    """(40, 30) label map, asymmetric (a transpose or flip would not match): bone bar, a fracture on it."""
    label = np.zeros((H, W), np.uint8)
    label[15:25, 2:28] = 1
    label[17:20, 5:9] = 2
    label[0, 0] = 1  # a corner pixel pins the orientation
    return label


def _decode(path, film_sop_uid: str) -> np.ndarray:
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance([film_sop_uid], combine_segments=True)
    return pixels[0]


@pytest.fixture
def film(tmp_path):
    path = tmp_path / "films" / "film.dcm"
    write_dx(path, _film(), pixel_spacing=(0.139, 0.139), patient_orientation=("L", "F"), body_part="hand",
             patient_id="SEG-TEST")
    return path


def test_seg_decodes_to_the_label_map_and_says_what_it_is(film, tmp_path):
    source = pydicom.dcmread(film)
    path = write_segmentation(tmp_path / "film.seg.dcm", make_segmentation(source, _label(), 0.934, 0.5))
    np.testing.assert_array_equal(_decode(path, source.SOPInstanceUID), _label())

    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert (seg.Rows, seg.Columns) == (H, W)
    assert seg.SeriesDescription == "monaifrac fracture 0.93 (fractured; threshold 0.50)"
    # the film's study and patient, a series of its own, the film referenced
    assert (seg.StudyInstanceUID, seg.PatientID) == (source.StudyInstanceUID, "SEG-TEST")
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    [series] = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        [derivation] = frame.DerivationImageSequence
        assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    # segments: labels, SNOMED CT codes, the algorithm
    segments = {s.SegmentNumber: s for s in seg.SegmentSequence}
    assert {n: s.SegmentLabel for n, s in segments.items()} == {1: "bone", 2: "fracture"}
    codes = {n: ((s.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator,
                  s.SegmentedPropertyCategoryCodeSequence[0].CodeValue),
                 (s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
                  s.SegmentedPropertyTypeCodeSequence[0].CodeValue)) for n, s in segments.items()}
    assert codes == {1: (("SCT", "85756007"), ("SCT", "3138006")), 2: (("SCT", "49755003"), ("SCT", "19130008"))}
    for s in segments.values():
        assert s.SegmentAlgorithmType == "AUTOMATIC" and s.SegmentAlgorithmName == "monaifrac"
        [algorithm] = s.SegmentationAlgorithmIdentificationSequence
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("monaifrac", monaifrac.__version__)
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    # a projection film: no frame of reference, no pixel measures (the module docstring says why);
    # the film's own orientation travels with the pixels that lie on it
    assert "FrameOfReferenceUID" not in seg
    assert "PixelMeasuresSequence" not in seg.SharedFunctionalGroupsSequence[0]
    assert list(seg.PatientOrientation) == ["L", "F"]


def test_an_empty_label_map_still_has_both_segments(film, tmp_path):
    source = pydicom.dcmread(film, stop_before_pixels=True)  # the header is all a SEG needs
    path = write_segmentation(tmp_path / "empty.seg.dcm", make_segmentation(source, np.zeros((H, W), np.uint8), 0.01))
    seg = pydicom.dcmread(path)
    assert seg.NumberOfFrames == 2  # one frame per segment: "no fracture here" is said, not left out
    np.testing.assert_array_equal(_decode(path, source.SOPInstanceUID), np.zeros((H, W)))


def test_highdicom_cannot_read_back_pixel_measures_without_slice_thickness(film, tmp_path):
    """Why SaveDicomSeg does not copy Pixel Spacing: highdicom 0.28.2 writes it for a DX film (valid
    DICOM: Slice Thickness is needed only with a frame of reference) but its own reader refuses the
    file. When this test fails, highdicom reads such SEGs and the spacing can be copied."""
    from pydicom.sr.codedict import codes

    source = pydicom.dcmread(film, stop_before_pixels=True)
    segments = [hd.seg.SegmentDescription(segment_number=n, segment_label=f"s{n}", algorithm_type="MANUAL",
                                          segmented_property_category=codes.SCT.Tissue,
                                          segmented_property_type=codes.SCT.BoneTissue) for n in (1, 2)]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=_label(), segmentation_type="BINARY", segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="x", manufacturer_model_name="x", software_versions="x", device_serial_number="x")
    pixel_measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in pixel_measures.PixelSpacing] == [0.139, 0.139] and "SliceThickness" not in pixel_measures
    seg.save_as(tmp_path / "plain.seg.dcm")
    with pytest.raises(AttributeError, match="Pixel Measures"):
        hd.seg.segread(tmp_path / "plain.seg.dcm")


def _itk_film(path) -> pydicom.Dataset:
    """A secondary capture written by ITK, with a Frame of Reference UID but no plane position or orientation.

    Run alone, ITK writes exactly that; within the whole suite (after other ITK reads and writes in the same
    process) its output differed, so the plane attributes are removed and a Frame of Reference UID added where
    needed: the film under test is the same either way."""
    import itk

    itk.imwrite(itk.image_from_array(_film()), str(path))
    film = pydicom.dcmread(path)
    planes = [k for k in ("ImagePositionPatient", "ImageOrientationPatient") if k in film]
    for k in planes:
        delattr(film, k)
    if "FrameOfReferenceUID" not in film:
        from pydicom.uid import generate_uid

        film.FrameOfReferenceUID = generate_uid()
    if planes or "FrameOfReferenceUID" not in pydicom.dcmread(path, stop_before_pixels=True):
        film.save_as(path)
    assert "FrameOfReferenceUID" in film and "ImagePositionPatient" not in film
    return film


def test_a_frame_of_reference_without_a_plane_is_left_out(tmp_path):
    film = _itk_film(tmp_path / "itk.dcm")
    path = write_segmentation(tmp_path / "itk.seg.dcm", make_segmentation(film, _label(), 0.2))
    assert "FrameOfReferenceUID" not in pydicom.dcmread(path)
    np.testing.assert_array_equal(_decode(path, film.SOPInstanceUID), _label())


@pytest.mark.parametrize("score, call", [(0.12, "monaifrac fracture 0.12 (not fractured; threshold 0.50)"),
                                         (0.5, "monaifrac fracture 0.50 (fractured; threshold 0.50)"),
                                         (None, "monaifrac bone and fracture")])
def test_presence_call(score, call):
    assert presence_call(score, 0.5) == call
    assert len(call) <= 64  # Series Description is LO


def test_label_maps_that_do_not_fit_the_film_are_refused(film):
    source = pydicom.dcmread(film, stop_before_pixels=True)
    with pytest.raises(ValueError, match=r"shape \(30, 40\) for a film of 40 rows x 30 columns"):
        make_segmentation(source, _label().T)
    label = _label()
    label[0, 1] = 3
    with pytest.raises(ValueError, match=r"label values \[0, 1, 2, 3\]"):
        make_segmentation(source, label)


# ----------------------------------------------------------------------------- the bundle's transform


def _item(film_path, label_hw: np.ndarray, score: float | None = 0.8) -> dict:
    """A decollated inference item as SaveDicomSegd sees it: MONAI frame (1, W, H), film path in the metadata."""
    image = MetaTensor(torch.zeros(1, W, H), meta={"filename_or_obj": str(film_path)})
    pred = MetaTensor(torch.as_tensor(to_monai_frame(label_hw)[None]), meta={"filename_or_obj": str(film_path)})
    item = {"image": image, "pred": pred}
    if score is not None:
        item["fracture_score"] = score
    return item


def test_save_dicom_segd_writes_the_seg_beside_the_label_map_in_the_film_frame(film, tmp_path):
    out = tmp_path / "out"
    item = _item(film, _label(), score=0.31)
    result = SaveDicomSegd(keys="pred", output_dir=out, threshold=0.3)(item)
    assert result["pred"] is item["pred"] and result.keys() == item.keys()  # passes through unchanged
    assert sorted(p.name for p in out.iterdir()) == ["film.seg.dcm"]
    source = pydicom.dcmread(film, stop_before_pixels=True)
    np.testing.assert_array_equal(_decode(out / "film.seg.dcm", source.SOPInstanceUID), _label())
    assert pydicom.dcmread(out / "film.seg.dcm").SeriesDescription == \
        "monaifrac fracture 0.31 (fractured; threshold 0.30)"


def test_an_extensionless_dicom_film_gets_its_seg_too(film, tmp_path):
    bare = film.rename(film.parent / "IM000001")
    SaveDicomSegd(keys="pred", output_dir=tmp_path / "out")(_item(bare, _label()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["IM000001.seg.dcm"]


def test_a_jpg_film_in_the_same_run_is_skipped_quietly(tmp_path, caplog):
    from PIL import Image

    jpg = tmp_path / "films" / "photo.jpg"
    jpg.parent.mkdir()
    Image.fromarray(draw_film(H, W)).save(jpg)
    with caplog.at_level(logging.WARNING):
        SaveDicomSegd(keys="pred", output_dir=tmp_path / "out")(_item(jpg, _label()))
    assert not (tmp_path / "out").exists()
    assert caplog.records == []
    assert SaveDicomSeg(tmp_path / "out")(to_monai_frame(_label())[None], jpg, 0.9) is None


def test_a_film_whose_seg_cannot_be_made_is_logged_and_the_run_goes_on(film, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="monaifrac.dicom.seg"):
        out = SaveDicomSegd(keys="pred", output_dir=tmp_path / "out")(_item(film, _label().T.copy()))
    assert "pred" in out
    [record] = caplog.records
    assert record.getMessage().startswith(f"no DICOM SEG for {film}: label map of shape (30, 40)")
    assert not (tmp_path / "out").exists()


def test_the_seg_is_written_atomically(film, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def broken_save(self, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a SEG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", broken_save)
    with pytest.raises(OSError, match="film.seg.dcm"):
        SaveDicomSeg(out)(to_monai_frame(_label())[None], film, 0.9)
    assert list(out.iterdir()) == []  # neither a half-written SEG nor a temporary file


# ----------------------------------------------------------------------------- dciodvfy



@pytest.mark.parametrize("spacing, photometric", [((0.139, 0.139), "MONOCHROME2"), (None, "MONOCHROME1"),
                                                  (None, "ITK")])
def test_dciodvfy_finds_no_error_in_a_seg(dciodvfy, tmp_path, spacing, photometric):
    if photometric == "ITK":
        film = _itk_film(tmp_path / "film.dcm")
    else:
        film = write_dx(tmp_path / "film.dcm", _film(), photometric=photometric, pixel_spacing=spacing,
                        patient_orientation=("L", "F"), body_part="shoulder", laterality="R")
    path = write_segmentation(tmp_path / "film.seg.dcm", make_segmentation(film, _label(), 0.7))
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    text = report.stdout + report.stderr
    print(text)  # shown with pytest -s: what dciodvfy says beyond errors (warnings)
    assert "Segmentation" in text
    assert [line for line in text.splitlines() if line.startswith("Error")] == [], text
