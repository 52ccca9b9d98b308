"""monaifrac/dicom/films.py: a film written as DX For Presentation reads back as the same film.

Checked twice: with pydicom (the tags and the stored pixels) and with the project's own reader,
``monaifrac.io.read_dicom`` (ITK/GDCM), which must show a MONOCHROME1 film exactly like the
MONOCHROME2 one: bone bright, the same grey levels.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from monaifrac.dicom import films
from monaifrac.dicom.films import DX_FOR_PRESENTATION, write_dx
from monaifrac.io import read_dicom
from tests.conftest import draw_film


def _film(bits: int = 12) -> np.ndarray:
    """(40, 30) uint16 film with bone bright, spread over most of ``bits`` bits, no two columns alike."""
    film = draw_film(40, 30).astype(np.uint16) << (bits - 8)
    return film + np.arange(30, dtype=np.uint16)  # the ramp keeps the image asymmetric and the values many


def test_monochrome2_round_trip_with_pydicom(tmp_path):
    pixels = _film()
    written = write_dx(tmp_path / "film.dcm", pixels, pixel_spacing=(0.143, 0.15), bits_stored=12,
                       body_part="hand", patient_id="P1")
    ds = pydicom.dcmread(tmp_path / "film.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == DX_FOR_PRESENTATION
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert (ds.Modality, ds.PresentationIntentType) == ("DX", "FOR PRESENTATION")
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.PresentationLUTShape == "IDENTITY"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert [float(v) for v in ds.PixelSpacing] == [0.143, 0.15]  # (row, column) spacing in mm
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.143, 0.15]
    assert (ds.Rows, ds.Columns) == (40, 30)
    assert ds.BodyPartExamined == "HAND" and ds.AnatomicRegionSequence[0].CodeValue == "85562004"
    assert ds.PatientID == "P1"
    got = ds.pixel_array
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, pixels)


def test_monochrome1_stores_the_inverse_and_says_so(tmp_path):
    pixels = _film(16)
    write_dx(tmp_path / "film.dcm", pixels, photometric="MONOCHROME1")
    ds = pydicom.dcmread(tmp_path / "film.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.PresentationLUTShape == "INVERSE"
    # pydicom hands back the stored values, untouched: the top of the 16 stored bits minus the film
    np.testing.assert_array_equal(ds.pixel_array, 65535 - pixels)
    assert ds.PixelIntensityRelationshipSign == 1  # low stored value = dense matter
    assert "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds  # none given, none made up


@pytest.mark.parametrize("bits", [12, 16])
def test_monochrome1_reads_back_as_the_same_bright_bone_film(tmp_path, bits):
    pixels = _film(bits)
    write_dx(tmp_path / "m2.dcm", pixels, bits_stored=bits)
    write_dx(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", bits_stored=bits)
    m2, info2 = read_dicom(tmp_path / "m2.dcm")
    m1, info1 = read_dicom(tmp_path / "m1.dcm")
    assert m2.shape == m1.shape == (40, 30)  # (H, W): no transpose
    np.testing.assert_array_equal(m2, pixels)
    np.testing.assert_array_equal(m1, pixels)  # the reader's one inversion undoes the writer's exactly
    assert m1[20, 15] > m1[2, 15]  # bone (middle rows) brighter than air (top rows)
    assert info2.warnings == [] and any("MONOCHROME1" in w for w in info1.warnings)


def test_films_of_one_study_share_its_uids(tmp_path):
    first = write_dx(tmp_path / "a.dcm", _film())
    second = write_dx(tmp_path / "b.dcm", _film(), study_uid=first.StudyInstanceUID,
                      series_uid=first.SeriesInstanceUID, instance_number=2)
    assert second.StudyInstanceUID == first.StudyInstanceUID
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    assert pydicom.dcmread(tmp_path / "b.dcm").InstanceNumber == 2


@pytest.mark.parametrize("pixels, kwargs, words", [
    (np.zeros((4, 5), np.float32), {}, "uint16"),
    (np.zeros((4, 5, 3), np.uint16), {}, "(H, W) uint16"),
    (np.zeros((0, 5), np.uint16), {}, "empty"),
    (np.full((4, 5), 5000, np.uint16), {"bits_stored": 12}, "does not fit in 12 bits"),
    (np.zeros((4, 5), np.uint16), {"photometric": "RGB"}, "photometric"),
    (np.zeros((4, 5), np.uint16), {"pixel_spacing": (0.1,)}, "pixel_spacing"),
    (np.zeros((4, 5), np.uint16), {"pixel_spacing": (0.1, -1)}, "positive"),
    (np.zeros((4, 5), np.uint16), {"body_part": "foot"}, "body_part"),
    (np.zeros((4, 5), np.uint16), {"patient_orientation": ("X", "F")}, "patient_orientation"),
])
def test_bad_arguments_name_the_file_and_write_nothing(tmp_path, pixels, kwargs, words):
    target = tmp_path / "bad.dcm"
    with pytest.raises(ValueError, match=r"bad\.dcm: ") as err:
        write_dx(target, pixels, **kwargs)
    assert words in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "film.dcm"
    write_dx(target, _film())
    before = target.read_bytes()

    def broken_save(self, filename, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a film")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pydicom.Dataset, "save_as", broken_save)
    with pytest.raises(OSError, match="film.dcm"):
        write_dx(target, _film())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["film.dcm"]  # no temporary file left


def test_dciodvfy_finds_no_error_in_a_complete_film(dciodvfy, tmp_path):
    for photometric in films.PHOTOMETRICS:
        path = tmp_path / f"{photometric}.dcm"
        write_dx(path, _film(), photometric=photometric, pixel_spacing=(0.1, 0.1), bits_stored=12,
                 patient_orientation=("L", "F"), body_part="shoulder", laterality="R")
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        text = report.stdout + report.stderr
        assert "DXImageForPresentation" in text
        assert [line for line in text.splitlines() if line.startswith("Error")] == [], text
