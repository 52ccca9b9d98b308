"""Reading films in their displayed (EXIF-applied) frame, the MONAI (W, H) frame and writers."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image

from tests.conftest import jpeg_bytes, save_image, stored_for_orientation
from monaifrac.io import (
    InputError,
    RadiographReader,
    atomic_path,
    from_monai_frame,
    read_nifti,
    read_radiograph,
    read_raster,
    suffix_of,
    to_monai_frame,
    write_nifti,
    write_png,
)

READER = "monaifrac.io.RadiographReader"


def pattern() -> np.ndarray:
    """A 4 x 6 stored film, all dark but for a bright pixel (255) at the top-left corner and a
    mid-grey one (128) right of it, so every rotation and flip can be told apart."""
    a = np.zeros((4, 6), np.uint8)
    a[0, 0] = 255
    a[0, 1] = 128
    return a


# Where the two marked pixels of pattern() land when a viewer applies each EXIF orientation,
# worked out by turning the 4 x 6 film by hand:
#   6: 90° clockwise → 6 x 4; the top row becomes the right column, read top-down:
#      (0,0) → (0,3), (0,1) → (1,3)
#   8: 90° counter-clockwise → 6 x 4; the top row becomes the left column, read bottom-up:
#      (0,0) → (5,0), (0,1) → (4,0)
#   3: 180° → 4 x 6; (0,0) → (3,5), (0,1) → (3,4)
DISPLAYED = {
    6: ((6, 4), (0, 3), (1, 3)),
    8: ((6, 4), (5, 0), (4, 0)),
    3: ((4, 6), (3, 5), (3, 4)),
}


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_png_with_exif_orientation_is_read_as_displayed(tmp_path, orientation):
    path = save_image(tmp_path / f"film{orientation}.png", pattern(), orientation)
    array, info = read_raster(path)
    shape, bright, grey = DISPLAYED[orientation]
    expected = np.zeros(shape, np.uint8)
    expected[bright] = 255
    expected[grey] = 128
    assert info.exif_orientation == orientation
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_jpg_with_exif_orientation_is_read_as_displayed(tmp_path, orientation):
    # 16 x 24 stored film with a bright 8 x 8 block at the top-left (JPEG codes 8 x 8 blocks,
    # so a block-aligned uniform block survives compression). By hand, the block ends up:
    #   6 (90° cw, 24 x 16): top-right, rows 0-7, cols 8-15
    #   8 (90° ccw, 24 x 16): bottom-left, rows 16-23, cols 0-7
    #   3 (180°, 16 x 24): bottom-right, rows 8-15, cols 16-23
    stored = np.full((16, 24), 30, np.uint8)
    stored[:8, :8] = 230
    path = save_image(tmp_path / f"film{orientation}.jpg", stored, orientation)
    array, info = read_raster(path)
    shape, corner = {6: ((24, 16), (0, 8)), 8: ((24, 16), (16, 0)), 3: ((16, 24), (8, 16))}[orientation]
    assert info.exif_orientation == orientation
    assert array.shape == shape
    r, c = corner
    assert array[r: r + 8, c: c + 8].min() > 180
    assert (array > 130).sum() == 64
    # and it equals the decoded stored pixels turned by numpy, independently of PIL's transpose
    raw = np.asarray(Image.open(path).convert("L"))
    turn = {6: -1, 8: 1, 3: 2}[orientation]
    np.testing.assert_array_equal(array, np.rot90(raw, turn))


def test_no_exif_is_orientation_1(tmp_path):
    path = save_image(tmp_path / "plain.png", pattern())
    array, info = read_raster(path)
    assert info.exif_orientation == 1 and not info.truncated and not info.warnings
    np.testing.assert_array_equal(array, pattern())


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_radiograph_reader_returns_the_monai_frame(tmp_path, orientation, suffix):
    displayed = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7  # (H, W) = (5, 7)
    path = save_image(tmp_path / f"film{suffix}", stored_for_orientation(displayed, orientation), orientation)
    array_hw, _ = read_raster(path)
    if suffix == ".png":
        np.testing.assert_array_equal(array_hw, displayed)
    loaded = LoadImage(reader=READER, image_only=True, ensure_channel_first=True)(str(path))
    assert tuple(loaded.shape) == (1, 7, 5)  # (C, W, H)
    np.testing.assert_array_equal(loaded[0].numpy(), to_monai_frame(array_hw).astype(np.float32))
    assert loaded.meta["exif_orientation"] == orientation


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_nifti_of_a_film_loads_like_the_film(tmp_path, orientation):
    displayed = np.zeros((24, 40), np.uint8)
    displayed[4:12, 8:30] = 200
    displayed[16:20, 2:6] = 90
    jpg = save_image(tmp_path / "film.jpg", stored_for_orientation(displayed, orientation), orientation)
    array_hw, _ = read_raster(jpg)
    nii = tmp_path / "film.nii.gz"
    write_nifti(nii, to_monai_frame(array_hw))
    from_jpg = LoadImage(reader=READER, image_only=True, ensure_channel_first=True)(str(jpg))
    from_nii = LoadImage(image_only=True, ensure_channel_first=True)(str(nii))
    assert tuple(from_nii.shape) == tuple(from_jpg.shape) == (1, 40, 24)
    np.testing.assert_array_equal(from_nii.numpy(), from_jpg.numpy())
    # read_nifti gives back the (W, H) array itself, dtype kept
    back = read_nifti(nii)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(from_monai_frame(back), array_hw)


def test_rgb_with_equal_channels_is_one_grey_channel(tmp_path):
    grey = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    png = tmp_path / "rgb.png"
    Image.fromarray(rgb, mode="RGB").save(png)
    array, info = read_raster(png)
    assert info.source_mode == "RGB"
    assert array.shape == (4, 6)
    # PIL's L = (299 R + 587 G + 114 B) / 1000 is exactly the common value when R = G = B.
    np.testing.assert_array_equal(array, grey)
    jpg = tmp_path / "rgb.jpg"
    Image.fromarray(np.repeat(np.full((16, 16), 120, np.uint8)[..., None], 3, -1), mode="RGB").save(jpg, quality=95)
    array, info = read_raster(jpg)
    assert info.source_mode == "RGB" and array.shape == (16, 16)
    assert np.abs(array.astype(int) - 120).max() <= 2
    loaded = LoadImage(reader=READER, image_only=True, ensure_channel_first=True)(str(jpg))
    assert tuple(loaded.shape) == (1, 16, 16)


def test_16_bit_png_keeps_its_depth(tmp_path):
    a = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    array, _ = read_raster(path)
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(array, a)


def test_truncated_jpg_is_recovered_with_a_warning(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    data = jpeg_bytes((20 + 3 * xx + 2 * yy).astype(np.uint8))
    path = tmp_path / "short.jpg"
    path.write_bytes(data[: int(len(data) * 0.7)])
    array, info = read_raster(path)
    assert array.shape == (32, 48)
    assert info.truncated
    assert any("truncated" in w for w in info.warnings)
    # the switch PIL uses for this is global: it must be off again afterwards
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b"GIF? no, just text\n" * 4, "not an image"), (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "")],
    ids=["zero-byte", "text", "broken-header"],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, content, words):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_raster(path)
    assert err.value.path == str(path)
    assert str(path) in str(err.value)
    assert words in err.value.problem


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_raster(tmp_path / "nope.jpg")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_radiograph(other)


def test_reader_suffixes():
    reader = RadiographReader()
    assert reader.verify_suffix("a.JPG") and reader.verify_suffix(["a.png", "b.jpeg"])
    assert reader.verify_suffix("a.nii.gz") and not reader.verify_suffix("a.txt")
    assert suffix_of("x/y.NII.GZ") == ".nii.gz"


def test_reader_hands_nifti_to_nibabel_without_failing_over(tmp_path, caplog):
    """A prepared NIfTI loads through RadiographReader exactly as through MONAI's NibabelReader, and
    LoadImage logs no failed attempt (it used to try the film reader first, fail, and fall back)."""
    import logging

    from monai.transforms import LoadImage

    path = tmp_path / "film.nii.gz"
    write_nifti(path, np.arange(35, dtype=np.float32).reshape(7, 5))
    with caplog.at_level(logging.INFO):
        ours = LoadImage(reader=RadiographReader(), image_only=True)(str(path))
    theirs = LoadImage(reader="NibabelReader", image_only=True)(str(path))
    assert "unable to load" not in caplog.text
    assert ours.shape == theirs.shape == (7, 5)
    assert np.array_equal(ours.numpy(), theirs.numpy()) and np.allclose(ours.affine, theirs.affine)


def test_frame_conversions_are_inverse_transposes():
    a = np.arange(6).reshape(2, 3)  # (H, W) = (2, 3)
    wh = to_monai_frame(a)
    assert wh.shape == (3, 2) and wh[2, 1] == a[1, 2]
    np.testing.assert_array_equal(from_monai_frame(wh), a)


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out" / "x.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.startswith(".") and tmp.name.endswith(".nii.gz")
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_write_png_keeps_height_and_width(tmp_path):
    rgb = np.zeros((5, 9, 3), np.uint8)
    rgb[1, 7] = (255, 0, 0)
    path = tmp_path / "o.png"
    write_png(path, rgb)
    back = np.asarray(Image.open(path))
    assert back.shape == (5, 9, 3)
    np.testing.assert_array_equal(back, rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_read_nifti_bad_file(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError) as err:
        read_nifti(bad)
    assert err.value.path == str(bad)
    with pytest.raises(InputError, match="file not found"):
        read_nifti(tmp_path / "none.nii.gz")


def _dicom(path, stored: np.ndarray, photometric: str = "MONOCHROME2"):
    """Write ``stored`` (H, W) uint16 as a DICOM with ITK, then set its Photometric Interpretation.

    ITK's writer always says MONOCHROME2; both names are 11 characters, so the value can be
    swapped in the file's bytes without changing any element length.
    """
    import itk

    itk.imwrite(itk.image_from_array(stored), str(path))
    data = path.read_bytes()
    assert data.count(b"MONOCHROME2") == 1
    path.write_bytes(data.replace(b"MONOCHROME2", photometric.encode()))
    return path


def test_dicom_is_read_as_height_by_width(tmp_path):
    stored = (np.arange(5 * 7).reshape(5, 7) * 100).astype(np.uint16)
    array, info = read_radiograph(_dicom(tmp_path / "film.dcm", stored))
    np.testing.assert_array_equal(array, stored)  # ITK's singleton slice dropped, no transpose
    assert info.warnings == []


def test_dicom_monochrome1_is_read_with_bone_bright(tmp_path):
    # MONOCHROME1: the highest stored value is displayed black. Bone (bright on screen) is the
    # LOW stored value here, so after reading, the bone pixel must be the brightest.
    stored = np.full((5, 7), 3000, np.uint16)  # background: black on screen
    stored[2, 3] = 200  # bone: white on screen
    array, info = read_radiograph(_dicom(tmp_path / "mono1.dcm", stored, "MONOCHROME1"))
    assert array.shape == (5, 7)
    assert array[2, 3] > array[0, 0]
    assert np.unique(array).size == 2
    assert any("MONOCHROME1" in w for w in info.warnings)
    # one inversion, not two: the grey levels keep their spacing, reversed
    assert int(array[2, 3]) - int(array[0, 0]) == 3000 - 200
