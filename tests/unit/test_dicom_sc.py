"""monaifrac/dicom/sc.py and results.py: the Secondary Capture of a film's result, and the kinds written together.

The capture is read back with highdicom (``imread``), the way a consumer of the PACS would, and
validated with dicom3tools' ``dciodvfy`` where installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

from monaifrac.dicom.films import write_dx
from monaifrac.dicom.results import SaveDicomResultsd, build_results, parse_kinds, write_results
from monaifrac.dicom.sc import (BANNER_TEXT_COLOUR, OUTLINE_COLOUR, banner_height, build_capture, display_grey,
                                fracture_outline)
from monaifrac.dicom.seg import save_dataset
from monaifrac.io import to_monai_frame
from tests.conftest import draw_film

H, W = 120, 160


def _pixels() -> np.ndarray:
    return draw_film(H, W).astype(np.uint16) << 4  # 12 bits stored


def _label() -> np.ndarray:
    """Bone bar with two fracture regions on it, away from the banner; a corner pixel pins the orientation."""
    label = np.zeros((H, W), np.uint8)
    label[45:75, 10:150] = 1
    label[50:70, 20:60] = 2  # 20 x 40
    label[60:64, 100:104] = 2  # 4 x 4
    label[H - 1, W - 1] = 1
    return label


@pytest.fixture
def film(tmp_path):
    path = tmp_path / "films" / "film.dcm"
    write_dx(path, _pixels(), bits_stored=12, pixel_spacing=(0.139, 0.139), patient_orientation=("L", "F"),
             body_part="hand", laterality="R", patient_id="SC-TEST")
    return path


def _read_back(path) -> np.ndarray:
    image = hd.imread(str(path))
    return np.asarray(image.pixel_array)


def test_the_capture_is_an_rgb_image_on_the_films_grid_in_its_study(film, tmp_path):
    source = pydicom.dcmread(film)
    capture = build_capture(source, _label(), 0.93, 0.19)
    save_dataset(capture, tmp_path / "film.sc.dcm")
    back = pydicom.dcmread(tmp_path / "film.sc.dcm")
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    assert (back.Rows, back.Columns) == (source.Rows, source.Columns)
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3 and back.BitsAllocated == 8
    assert back.StudyInstanceUID == source.StudyInstanceUID and back.PatientID == "SC-TEST"
    assert back.SeriesInstanceUID != source.SeriesInstanceUID
    [ref] = back.SourceImageSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    assert back.BurnedInAnnotation == "YES"
    assert list(back.PatientOrientation) == ["L", "F"] and [float(v) for v in back.PixelSpacing] == [0.139, 0.139]
    assert back.SeriesDescription == "monaifrac fracture 0.93 (fractured; threshold 0.19)"
    pixels = _read_back(tmp_path / "film.sc.dcm")
    assert pixels.shape == (H, W, 3) and pixels.dtype == np.uint8


def test_fracture_borders_carry_the_outline_colour_and_the_film_shows_elsewhere(film):
    source = pydicom.dcmread(film)
    pixels = np.asarray(build_capture(source, _label(), 0.93, 0.19).pixel_array)
    grey = display_grey(source)
    outline = np.all(pixels == OUTLINE_COLOUR, axis=2)
    # every pixel on the border of each fracture region, and of the 4 x 4 one too
    for r0, r1, c0, c1 in ((50, 70, 20, 60), (60, 64, 100, 104)):
        border = np.zeros((H, W), bool)
        border[r0:r1, c0:c1] = True
        border[r0 + 1:r1 - 1, c0 + 1:c1 - 1] = False
        assert outline[border].all()
        assert not outline[r0 - 1, c0:c1].any() and not outline[r1, c0:c1].any()  # just outside: the film
    # inside a region and away from fractures: the film in grey, untouched
    assert np.array_equal(pixels[55:65, 25:55], np.repeat(grey[55:65, 25:55, None], 3, axis=2))
    rest = ~fracture_outline(_label())
    rest[: banner_height(H, W)] = False
    assert np.array_equal(pixels[rest], np.repeat(grey[rest][:, None], 3, axis=1))
    assert outline.sum() == fracture_outline(_label()).sum()  # nothing else is red (bone is not drawn)


def test_the_banner_holds_text_and_says_the_call(film):
    source = pydicom.dcmread(film)
    top = banner_height(H, W)
    fractured = np.asarray(build_capture(source, _label(), 0.93, 0.19).pixel_array)
    not_fractured = np.asarray(build_capture(source, _label(), 0.05, 0.19).pixel_array)
    banner = fractured[:top]
    text = np.all(banner == BANNER_TEXT_COLOUR, axis=2)
    assert text.sum() > 50  # glyphs, drawn in white (small ones unsmoothed)
    dimmed = np.round(display_grey(source)[:top] * 0.25).astype(np.uint8)  # the band: the film at a quarter
    assert np.array_equal(banner[~text], np.repeat(dimmed[~text][:, None], 3, axis=1))
    assert not np.array_equal(banner, not_fractured[:top])  # "fractured" and "not fractured" read differently
    assert np.array_equal(fractured[top:], not_fractured[top:])


def test_a_monochrome1_film_is_shown_as_its_monochrome2_twin(tmp_path):
    pixels = _pixels()
    mono2 = write_dx(tmp_path / "m2.dcm", pixels, bits_stored=12)
    mono1 = write_dx(tmp_path / "m1.dcm", pixels, bits_stored=12, photometric="MONOCHROME1")
    grey2, grey1 = display_grey(pydicom.dcmread(tmp_path / "m2.dcm")), display_grey(pydicom.dcmread(tmp_path / "m1.dcm"))
    assert np.abs(grey2.astype(int) - grey1.astype(int)).max() <= 1
    assert grey2[60, 80] > grey2[5, 5]  # bone bright, air dark
    assert mono1.PhotometricInterpretation == "MONOCHROME1" and mono2.PhotometricInterpretation == "MONOCHROME2"


def test_a_label_map_that_does_not_fit_is_refused(film):
    source = pydicom.dcmread(film)
    with pytest.raises(ValueError, match=r"label map of shape \(160, 120\)"):
        build_capture(source, _label().T, 0.5, 0.5)
    with pytest.raises(ValueError, match="label values"):
        build_capture(source, _label() * 2, 0.5, 0.5)


# ----------------------------------------------------------------------------- results.py


@pytest.mark.parametrize("text, seg, kinds", [("sr,sc", False, ("sr", "sc")), ("SC, sr", True, ("sr", "sc", "seg")),
                                              ("", False, ()), ("none", True, ("seg",)), (None, False, ()),
                                              (["seg", "sc"], False, ("sc", "seg"))])
def test_parse_kinds(text, seg, kinds):
    assert parse_kinds(text, seg=seg) == kinds


def test_an_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown DICOM result kind.*pdf.*choose from sr, sc, seg"):
        parse_kinds("sc,pdf")


def _item(path, label_hw, score=None) -> dict:
    image = MetaTensor(torch.zeros(1, W, H), meta={"filename_or_obj": str(path)})
    item = {"image": image, "pred": torch.as_tensor(to_monai_frame(label_hw)[None])}
    if score is not None:
        item["fracture_score"] = score
    return item


def test_save_dicom_resultsd_writes_each_kind_beside_the_label_map(film, tmp_path):
    out = tmp_path / "out"
    item = _item(film, _label(), score=0.4)
    result = SaveDicomResultsd(keys="pred", output_dir=out, kinds="sc", seg=True, threshold=0.3)(item)
    assert result["pred"] is item["pred"]
    assert sorted(p.name for p in out.iterdir()) == ["film.sc.dcm", "film.seg.dcm"]
    assert set(result["dicom_results"]) == {"sc", "seg"}
    source = pydicom.dcmread(film)
    seg = hd.seg.segread(out / "film.seg.dcm")
    np.testing.assert_array_equal(seg.get_pixels_by_source_instance([source.SOPInstanceUID],
                                                                    combine_segments=True)[0], _label())
    sc = _read_back(out / "film.sc.dcm")
    assert np.all(sc[50, 20:60] == OUTLINE_COLOUR)  # the label map went back to the film's frame


def test_a_jpg_or_no_kind_writes_nothing(tmp_path, caplog):
    from PIL import Image

    jpg = tmp_path / "photo.jpg"
    Image.fromarray(draw_film(H, W)).save(jpg)
    with caplog.at_level(logging.WARNING):
        SaveDicomResultsd(keys="pred", output_dir=tmp_path / "out", kinds="sc,seg")(_item(jpg, _label()))
    assert not (tmp_path / "out").exists() and caplog.records == []


def test_a_kind_that_cannot_be_built_is_one_line_and_the_others_are_written(film, tmp_path, caplog):
    source = pydicom.dcmread(film)
    del source.PixelData  # the SC draws on the pixels; the SEG needs only the header
    with caplog.at_level(logging.ERROR, logger="monaifrac.dicom.results"):
        built = build_results(source, _label(), 0.5, 0.5, ("sc", "seg"), name="film.dcm")
    [record] = caplog.records
    assert record.getMessage().startswith("no DICOM SC for film.dcm: ") and "\n" not in record.getMessage()
    written = write_results(tmp_path, "film", built)
    assert list(written) == ["seg"] and sorted(p.name for p in tmp_path.iterdir()) == ["film.seg.dcm", "films"]


def test_an_unreadable_dicom_film_is_one_line_and_no_object(film, tmp_path, caplog):
    data = film.read_bytes()
    broken = film.with_name("broken.dcm")
    broken.write_bytes(data[:200])
    with caplog.at_level(logging.ERROR, logger="monaifrac.dicom.results"):
        SaveDicomResultsd(keys="pred", output_dir=tmp_path / "out", kinds="sc")(_item(broken, _label()))
    [record] = caplog.records
    assert "broken.dcm" in record.getMessage() and not (tmp_path / "out").exists()


def test_the_sr_kind_uses_the_sr_builder(film, tmp_path):
    pytest.importorskip("monaifrac.dicom.sr")
    out = tmp_path / "out"
    SaveDicomResultsd(keys="pred", output_dir=out, kinds="sr,sc", threshold=0.3)(_item(film, _label(), 0.9))
    assert sorted(p.name for p in out.iterdir()) == ["film.sc.dcm", "film.sr.dcm"]
    report = pydicom.dcmread(out / "film.sr.dcm")
    assert report.StudyInstanceUID == pydicom.dcmread(film, stop_before_pixels=True).StudyInstanceUID
    hd.sr.srread(out / "film.sr.dcm")  # highdicom reads it back


# ----------------------------------------------------------------------------- dciodvfy



@pytest.mark.parametrize("spacing, orientation, photometric", [((0.139, 0.139), ("L", "F"), "MONOCHROME2"),
                                                               (None, None, "MONOCHROME1")])
def test_dciodvfy_finds_no_error_in_a_capture(dciodvfy, tmp_path, spacing, orientation, photometric):
    source = write_dx(tmp_path / "film.dcm", _pixels(), bits_stored=12, photometric=photometric,
                      pixel_spacing=spacing, patient_orientation=orientation, body_part="shoulder", laterality="R")
    path = tmp_path / "film.sc.dcm"
    save_dataset(build_capture(pydicom.dcmread(tmp_path / "film.dcm"), _label(), 0.7, 0.5), path)
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    text = report.stdout + report.stderr
    print(text)
    assert "SCImage" in text
    assert [line for line in text.splitlines() if line.startswith("Error")] == [], text
    assert source.SOPInstanceUID == pydicom.dcmread(path).SourceImageSequence[0].ReferencedSOPInstanceUID


def test_inference_json_switches_the_dicom_writer_by_save_dicom_and_save_dicom_seg():
    """In a fresh interpreter, as ``python -m monai.bundle run`` parses it (nothing of monaifrac.dicom imported)."""
    import json
    import sys

    from tests.integration.conftest import REPO

    code = (
        "import json, sys\n"
        "from monai.bundle import ConfigParser\n"
        "out = []\n"
        "for o in json.loads(sys.argv[1]):\n"
        "    p = ConfigParser(); p.read_config('bundle/configs/inference.json'); p['input_files'] = []\n"
        "    for k, v in o.items(): p[k] = v\n"
        "    post = p.get_parsed_content('postprocessing')\n"
        "    out.append([list(t.saver.kinds) for t in post.transforms if type(t).__name__ == 'SaveDicomResultsd'])\n"
        "print(json.dumps(out))\n")
    cases = [{}, {"save_dicom_seg": True}, {"save_dicom": "sr,sc"}, {"save_dicom": "none", "save_dicom_seg": True}]
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[], [["seg"]], [["sr", "sc"]], [["seg"]]]
