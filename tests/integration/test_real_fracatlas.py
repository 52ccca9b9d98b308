"""``prepare`` on the real FracAtlas subset (see its SOURCE.md), run once for the module.

Skipped where the subset is absent (``MONAIFRAC_FRACATLAS`` or ``../shared/data/fracatlas``).
Every expected number below is from SOURCE.md, not from a previous run of the code.
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image, ImageOps

from monaifrac.data.fracatlas import default_fracatlas_dir
from monaifrac.data.masks import rasterize_polygons
from monaifrac.data.prepare import prepare
from monaifrac.io import from_monai_frame

pytestmark = pytest.mark.real_data

# SOURCE.md, "Known quirks": the 16 truncated JPGs of the subset.
TRUNCATED = ["IMG0004070", "IMG0004076", "IMG0004079", "IMG0004098", "IMG0004119", "IMG0004145", "IMG0004148",
             "IMG0004155", "IMG0004159", "IMG0004170", "IMG0004226", "IMG0004228", "IMG0004273", "IMG0004285",
             "IMG0004290", "IMG0004297"]
# SOURCE.md: fractured films whose polygons are in the EXIF-rotated frame (orientation 8 and 3).
EXIF_FRACTURED = {"IMG0002628": 8, "IMG0002588": 3}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = default_fracatlas_dir()
    if root is None:
        pytest.skip("FracAtlas subset not found (set MONAIFRAC_FRACATLAS or provide ../shared/data/fracatlas)")
    out = tmp_path_factory.mktemp("fracatlas_prepared")
    start = time.perf_counter()
    report = prepare(root, out, progress=False)  # default policy: fail, truncated files recovered
    seconds = time.perf_counter() - start
    print(f"\nprepare on the FracAtlas subset: {seconds:.1f} s, {report['cases_written']} films")
    datalist = json.loads((out / "datalist.json").read_text())
    items = {i["id"]: i for section in datalist.values() for i in section}
    return root, out, report, datalist, items


def load_hw(path):
    return from_monai_frame(np.asanyarray(nib.load(str(path)).dataobj))


def test_counts(real):
    _, _, report, _, items = real
    # SOURCE.md: 1,551 images, 591 fractured, 960 non-fractured, 779 polygons
    assert report["cases_written"] == len(items) == 1551
    assert report["fractured"] == 591 and report["non_fractured"] == 960
    assert sum(i["fractured"] for i in items.values()) == 591
    assert report["skipped"] == []
    assert report["polygons"]["total"] == 779
    assert report["polygons"]["nonempty"] == 779
    assert report["fractured_without_fracture_pixels"] == []
    assert report["non_fractured_with_fracture_pixels"] == []
    assert set(report["label_values"]) <= {0, 1, 2}
    # SOURCE.md names three films stored with an EXIF rotation
    assert {"IMG0002628", "IMG0002588", "IMG0001864"} <= set(report["exif_rotated"])


def test_sections_follow_the_official_split(real):
    _, _, report, datalist, _ = real
    # Official fractured split in the subset: train 509, valid 82, test 0. The 960
    # non-fractured films follow 509 : 82 : 0 → 960*509/591 = 826.80, 960*82/591 = 133.20, 0
    # → 826 + 133 = 959, the one left goes to the larger remainder (training): 827 / 133 / 0.
    assert report["sections"] == {"training": 509 + 827, "validation": 82 + 133, "test": 0}
    fractured = {s: sum(i["fractured"] for i in items) for s, items in datalist.items()}
    assert fractured == {"training": 509, "validation": 82, "test": 0}
    assert all(i["fold"] >= 0 for i in datalist["training"])
    assert all(i["fold"] == -1 for i in datalist["validation"])


def test_labels_on_disk(real):
    _, out, _, _, items = real
    non_with_fracture, fractured_without, bad_values = [], [], []
    for case_id, item in items.items():
        label = np.asanyarray(nib.load(str(out / item["label"])).dataobj)
        assert label.dtype == np.uint8
        values = set(np.unique(label).tolist())
        if not values <= {0, 1, 2}:
            bad_values.append(case_id)
        has_fracture = 2 in values
        if item["fractured"] and not has_fracture:
            fractured_without.append(case_id)
        if not item["fractured"] and has_fracture:
            non_with_fracture.append(case_id)
    assert bad_values == []
    assert fractured_without == []
    assert non_with_fracture == []
    assert sum(not i["fractured"] for i in items.values()) == 960


def test_truncated_files_are_recovered_with_warnings(real):
    _, out, report, _, items = real
    warned = {w["case"] for w in report["warnings"] if "truncated" in w["problem"]}
    assert warned == set(TRUNCATED)
    for case_id in TRUNCATED:
        assert (out / items[case_id]["image"]).is_file()


@pytest.mark.parametrize("case_id", sorted(EXIF_FRACTURED))
def test_exif_rotated_fractures_lie_on_bone(real, case_id):
    root, out, report, _, items = real
    item = items[case_id]
    jpg = root / "images" / "Fractured" / f"{case_id}.jpg"
    with Image.open(jpg) as im:
        assert im.getexif().get(0x0112) == EXIF_FRACTURED[case_id]
        displayed_w, displayed_h = ImageOps.exif_transpose(im).size
    label_wh = np.asanyarray(nib.load(str(out / item["label"])).dataobj)
    assert label_wh.shape == (displayed_w, displayed_h)
    assert case_id in report["exif_rotated"]
    image = load_hw(out / item["image"]).astype(np.float64)
    fracture = from_monai_frame(label_wh) == 2
    assert fracture.any()
    # On the displayed frame the fracture sits on bright bone; on a frame the polygon was not
    # drawn for it would fall on darker tissue or air.
    assert image[fracture].mean() > np.median(image)
    # ... and brighter than under the same polygons laid on the stored pixels with EXIF ignored
    coco = json.loads((root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").read_text())
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == f"{case_id}.jpg")
    polygons = [p for a in coco["annotations"] if a["image_id"] == image_id for p in a["segmentation"]]
    with Image.open(jpg) as im:
        stored = np.asarray(im.convert("L"), dtype=np.float64)
    misplaced, _ = rasterize_polygons(polygons, *stored.shape)
    assert image[fracture].mean() > stored[misplaced].mean()
    # the prepared image is what the training reader gives for the original JPG
    from_jpg = LoadImage(reader="monaifrac.io.RadiographReader", image_only=True)(str(jpg))
    prepared = np.asanyarray(nib.load(str(out / item["image"])).dataobj)
    assert tuple(from_jpg.shape) == prepared.shape
    np.testing.assert_array_equal(from_jpg.numpy(), prepared.astype(np.float32))


def test_the_large_scans_folder_adds_the_other_65_official_training_fractures(tmp_path):
    """``fracatlas-large`` (its SOURCE.md): 65 fractured official-train scans, 76 polygons, read as they are."""
    root = default_fracatlas_dir()
    large = None if root is None else root.parent / "fracatlas-large"
    if large is None or not (large / "images").is_dir():
        pytest.skip("../shared/data/fracatlas-large not found")
    report = prepare(large, tmp_path / "large", progress=False)
    datalist = json.loads((tmp_path / "large" / "datalist.json").read_text())
    assert report["cases_written"] == 65 and report["fractured"] == 65 and report["skipped"] == []
    assert report["polygons"]["total"] == report["polygons"]["nonempty"] == 76
    assert report["sections"] == {"training": 65, "validation": 0, "test": 0}
    assert report["fractured_without_fracture_pixels"] == []
    fractions = sorted(i["fracture_fraction"] for i in datalist["training"])
    # SOURCE.md: fracture area 0.06 % to 2.8 % of the film, median 0.29 %
    assert 0.0005 < fractions[0] and fractions[-1] < 0.03 and 0.002 < fractions[32] < 0.004
