"""monaifrac/io/dicom.py and the DICOM paths of monaifrac/io/read.py and monaifrac/inference.py.

Bad DICOM films each give one InputError line naming the file (checked with pydicom before ITK
sees them), and a folder run keeps every other film; DICOM files without an extension are films;
``monaifrac synth --dicom`` writes DX copies that read back as the synthetic JPGs.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import LoadImage
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from monaifrac.cli import main
from monaifrac.dicom.films import SYNTH_PIXEL_SPACING, write_dx
from monaifrac.inference import REPORT_NAME, collect_films
from monaifrac.io import InputError, RadiographReader, is_dicom_file, read_radiograph, read_raster, to_monai_frame
from tests.conftest import draw_film

H, W = 40, 30


def _film() -> np.ndarray:
    """(40, 30) uint16, 12 bits used, bone bright, no two columns alike (a transpose would show)."""
    return (draw_film(H, W).astype(np.uint16) << 4) + np.arange(W, dtype=np.uint16)


def _rewrite(path, change) -> None:
    """Read the DX file at ``path``, let ``change(ds)`` edit it, write it back (pydicom encodes)."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _no_pixels(ds):
    del ds.PixelData


def _compressed_garbage(syntax):
    # uncompressed bytes declared as JPEG-LS / JPEG 2000: valid encapsulation, no codestream in it
    def change(ds):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].is_undefined_length = True
    return change


def _multi_frame(ds):
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2  # two consistent frames: only the frame count is refused


def _colour(ds):
    rgb = np.repeat(draw_film(H, W)[..., None], 3, axis=-1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()


def _lying_size(ds):
    ds.Rows = H + 10  # the pixel data holds 40 rows; the header claims 50


BAD = {
    "no_pixels.dcm": (_no_pixels, "no pixel data"),
    "jpeg_ls.dcm": (_compressed_garbage(JPEGLSLossless), "cannot decode its JPEG-LS Lossless"),
    "jpeg_2000.dcm": (_compressed_garbage(JPEG2000Lossless), "cannot decode its JPEG 2000"),
    "two_frames.dcm": (_multi_frame, "multi-frame image (2 frames)"),
    "colour.dcm": (_colour, "colour image (Samples per Pixel 3, Photometric Interpretation RGB)"),
    "lying_size.dcm": (_lying_size, f"the header says {H + 10} x {W} pixels of 16 bits ({(H + 10) * W * 2} bytes) "
                                    f"but the pixel data holds {H * W * 2} bytes"),
}


@pytest.fixture
def bad_folder(tmp_path):
    folder = tmp_path / "films"
    write_dx(folder / "good.dcm", _film())
    for name, (change, _problem) in BAD.items():
        write_dx(folder / name, _film())
        _rewrite(folder / name, change)
    (folder / "not_dicom.dcm").write_text("a text file with a DICOM name\n")
    return folder


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_dicom_gives_one_line_naming_the_file(bad_folder, name):
    path = bad_folder / name
    with pytest.raises(InputError) as err:
        read_radiograph(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert BAD[name][1] in message, message


def test_a_text_file_named_dcm_is_not_dicom(bad_folder):
    with pytest.raises(InputError, match=r"not_dicom\.dcm: not a DICOM file \(no 'DICM' marker"):
        read_radiograph(bad_folder / "not_dicom.dcm")


def test_a_folder_run_keeps_the_good_film_and_reports_each_bad_one(bad_folder, tmp_path):
    films = collect_films(bad_folder, tmp_path / "out")
    assert films == [{"image": str(bad_folder / "good.dcm")}]
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    problems = {r["file"]: r["problem"] for r in report["rejected"]}
    assert set(problems) == {str(bad_folder / n) for n in [*BAD, "not_dicom.dcm"]}
    for name, (_change, expected) in BAD.items():
        assert expected in problems[str(bad_folder / name)]
        assert "\n" not in problems[str(bad_folder / name)]


def test_the_good_film_reads_as_written_rows_by_columns(bad_folder):
    array, info = read_radiograph(bad_folder / "good.dcm")
    np.testing.assert_array_equal(array, _film())
    assert info.source_mode == "DICOM"


def test_a_real_jpeg_lossless_film_pydicom_cannot_decode_is_left_to_itk(tmp_path):
    """JPEG Lossless (Process 14) is the commonest lossless syntax of a PACS; pydicom has no decoder for
    it here, GDCM has: such a film must still be read, not refused."""
    import itk
    from pydicom.pixels import get_decoder

    stored = _film()
    path = tmp_path / "jpeg_lossless.dcm"
    image = itk.image_from_array(stored)
    io = itk.GDCMImageIO.New()
    io.SetUseCompression(True)
    io.SetCompressor("JPEG")
    itk.ImageFileWriter[type(image)].New(Input=image, FileName=str(path), ImageIO=io, UseCompression=True).Update()
    syntax = pydicom.dcmread(path).file_meta.TransferSyntaxUID
    assert syntax.name.startswith("JPEG Lossless, Non-Hierarchical, First-Order Prediction")
    if get_decoder(syntax).is_available:
        pytest.skip("pydicom can decode JPEG Lossless here (pylibjpeg or gdcm installed): no fallback to test")
    array, _info = read_radiograph(path)
    np.testing.assert_array_equal(array, stored)


# ----------------------------------------------------------------------------- DICOM files without an extension


@pytest.fixture
def extensionless(tmp_path):
    folder = tmp_path / "pacs_export"
    write_dx(folder / "with_suffix.dcm", _film())
    (folder / "with_suffix.dcm").rename(folder / "IM000001")
    write_dx(folder / "x.dcm", _film(), photometric="MONOCHROME1")
    (folder / "x.dcm").rename(folder / "1.2.826.0.1.3680043.8.498.7")  # named by its UID, as receivers do
    (folder / "README").write_text("not a film, no extension\n")
    return folder


def test_extensionless_dicom_files_are_films(extensionless, tmp_path):
    assert is_dicom_file(extensionless / "IM000001") and not is_dicom_file(extensionless / "README")
    films = collect_films(extensionless, tmp_path / "out")
    assert films == [{"image": str(extensionless / n)} for n in ("1.2.826.0.1.3680043.8.498.7", "IM000001")]
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["rejected"] == []  # README: not a film, not bad
    for name in ("IM000001", "1.2.826.0.1.3680043.8.498.7"):
        array, _info = read_radiograph(extensionless / name)
        np.testing.assert_array_equal(array, _film())  # MONOCHROME1 read back bone bright, as the other


def test_the_bundle_reader_loads_an_extensionless_dicom_in_the_monai_frame(extensionless):
    reader = RadiographReader()
    assert reader.verify_suffix(str(extensionless / "IM000001"))
    image = LoadImage(reader=reader, image_only=True)(str(extensionless / "IM000001"))
    assert tuple(image.shape) == (W, H)
    np.testing.assert_array_equal(image.numpy(), to_monai_frame(_film()).astype(image.numpy().dtype))
    assert isinstance(image, torch.Tensor)


def test_two_uid_named_films_that_would_share_an_output_name_are_not_both_taken(tmp_path):
    folder = tmp_path / "uids"
    for last in ("4", "5"):
        write_dx(folder / "f.dcm", _film())
        (folder / "f.dcm").rename(folder / f"1.2.3.{last}")
    films = collect_films(folder, tmp_path / "out")
    assert films == [{"image": str(folder / "1.2.3.4")}]
    [rejected] = json.loads((tmp_path / "out" / REPORT_NAME).read_text())["rejected"]
    assert rejected["file"] == str(folder / "1.2.3.5")
    assert f"would overwrite those of {folder / '1.2.3.4'}" in rejected["problem"]


# ----------------------------------------------------------------------------- monaifrac synth --dicom


def test_synth_dicom_writes_dx_copies_that_read_back_as_the_jpgs(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--n", "3", "--dicom"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dicom"] == {"dicom_dir": str(out / "dicom"), "films": 3, "monochrome1": ["IMG0000001"],
                                "pixel_spacing": ["IMG0000002"]}
    jpgs = {p.stem: p for p in (out / "images").rglob("*.jpg")}
    assert sorted(p.name for p in (out / "dicom").iterdir()) == [f"{stem}.dcm" for stem in sorted(jpgs)]
    for stem, jpg in jpgs.items():
        ds = pydicom.dcmread(out / "dicom" / f"{stem}.dcm")
        assert ds.Modality == "DX" and ds.PatientID == f"SYNTH-{stem}"
        assert ds.PhotometricInterpretation == ("MONOCHROME1" if stem == "IMG0000001" else "MONOCHROME2")
        assert ("PixelSpacing" in ds) == (stem == "IMG0000002")
        grey, _ = read_raster(jpg)  # the displayed film (EXIF applied)
        array, _ = read_radiograph(out / "dicom" / f"{stem}.dcm")
        np.testing.assert_array_equal(array, np.round(grey * (4095 / 255)).astype(np.uint16))
    assert [float(v) for v in pydicom.dcmread(out / "dicom" / "IMG0000002.dcm").PixelSpacing] == \
        list(SYNTH_PIXEL_SPACING)
    # reproducible: a second run writes the same bytes (UIDs and dates come from the film)
    before = {p.name: p.read_bytes() for p in (out / "dicom").iterdir()}
    assert main(["synth", str(out), "--n", "3", "--dicom"]) == 0
    assert {p.name: p.read_bytes() for p in (out / "dicom").iterdir()} == before


def test_synth_without_dicom_writes_no_dicom(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--n", "2"]) == 0
    assert "dicom" not in json.loads(capsys.readouterr().out)
    assert not (tmp_path / "s" / "dicom").exists()
