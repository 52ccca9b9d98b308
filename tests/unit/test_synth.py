"""Tests of the synthetic FracAtlas-layout generator (monaifrac.data.synth).

They read the written files back the way a FracAtlas reader has to (EXIF applied,
COCO polygons rasterised with pycocotools) and check that the layout, the
annotations and the pixels agree with each other.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image, ImageOps

from monaifrac.data.synth import make_synthetic_fracatlas, render_radiograph

N, SEED, SIZE = 24, 0, (160, 192)
COCO_PATH = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_DIR = Path("Utilities") / "Fracture Split"
HEADER = "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "fracatlas"
    summary = make_synthetic_fracatlas(root, n=N, seed=SEED, size=SIZE)
    coco = json.loads((root / COCO_PATH).read_text())
    return root, summary, coco


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _image_path(root: Path, file_name: str) -> Path:
    hits = list(root.glob(f"images/*/{file_name}"))
    assert len(hits) == 1, hits
    return hits[0]


def _displayed(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("L"), dtype=np.float64)


def _orientation(path: Path) -> int | None:
    with Image.open(path) as img:
        return img.getexif().get(0x0112)


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """4-connected binary dilation (numpy only, to keep scipy's import time out of the test)."""
    out = mask.copy()
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _polygon_area(flat: list[float]) -> float:
    x, y = np.asarray(flat[0::2]), np.asarray(flat[1::2])
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_layout_and_summary(dataset):
    root, summary, coco = dataset
    fractured = sorted(p.name for p in (root / "images" / "Fractured").glob("*.jpg"))
    non_fractured = sorted(p.name for p in (root / "images" / "Non_fractured").glob("*.jpg"))
    assert sorted(fractured + non_fractured) == [f"IMG{i:07d}.jpg" for i in range(1, N + 1)]
    assert 0.5 <= len(fractured) / N <= 0.7
    for name in ("dataset.csv", "SOURCE.md", COCO_PATH, *(SPLIT_DIR / f"{s}.csv" for s in ("train", "valid", "test"))):
        assert (root / name).is_file(), name
    assert not list(root.rglob("*.tmp")), "temporary files left behind"

    assert summary["n_images"] == N
    assert summary["n_fractured"] == len(fractured) == len(coco["images"])
    assert summary["n_polygons"] == len(coco["annotations"])
    assert summary["out_dir"] == str(root)
    source = (root / "SOURCE.md").read_text()
    assert "monaifrac.data.synth" in source and f"seed={SEED}" in source and "not FracAtlas" in source


def test_dataset_csv_matches_folders_and_coco(dataset):
    root, _, coco = dataset
    assert (root / "dataset.csv").read_text().splitlines()[0] == HEADER
    rows = _rows(root / "dataset.csv")
    assert [r["image_id"] for r in rows] == [f"IMG{i:07d}.jpg" for i in range(1, N + 1)]

    per_image = {im["file_name"]: 0 for im in coco["images"]}
    id_to_name = {im["id"]: im["file_name"] for im in coco["images"]}
    for ann in coco["annotations"]:
        per_image[id_to_name[ann["image_id"]]] += 1

    parts = ("hand", "leg", "hip", "shoulder")
    assert {p for r in rows for p in parts if r[p] == "1"} == set(parts)
    for r in rows:
        assert all(v in ("0", "1") for k, v in r.items() if k not in ("image_id", "fracture_count"))
        assert sum(int(r[p]) for p in parts) == 1
        folder = _image_path(root, r["image_id"]).parent.name
        assert folder == ("Fractured" if r["fractured"] == "1" else "Non_fractured")
        assert int(r["fracture_count"]) == per_image.get(r["image_id"], 0)
    assert sum(int(r["fracture_count"]) for r in rows) == len(coco["annotations"])


def test_coco_structure(dataset):
    root, _, coco = dataset
    assert set(coco) >= {"info", "images", "annotations", "categories"}
    assert coco["categories"] == [{"id": 0, "name": "fractured"}]
    assert [im["id"] for im in coco["images"]] == list(range(1, len(coco["images"]) + 1))
    assert [a["id"] for a in coco["annotations"]] == list(range(len(coco["annotations"])))
    assert {im["file_name"] for im in coco["images"]} == {
        p.name for p in (root / "images" / "Fractured").glob("*.jpg")
    }

    counts = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=len(coco["images"]) + 1)[1:]
    assert set(counts) <= {1, 2} and 2 in counts and 1 in counts
    for ann in coco["annotations"]:
        assert ann["category_id"] == 0 and ann["iscrowd"] == 0
        (flat,) = ann["segmentation"]
        assert len(flat) % 2 == 0 and 4 <= len(flat) // 2 <= 8
        xs, ys = flat[0::2], flat[1::2]
        assert ann["bbox"] == pytest.approx([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], abs=0.02)
        assert ann["area"] == pytest.approx(_polygon_area(flat), abs=0.02)


def test_splits_partition_fractured_images(dataset):
    root, _, coco = dataset
    splits = {}
    for name in ("train", "valid", "test"):
        path = root / SPLIT_DIR / f"{name}.csv"
        assert path.read_text().splitlines()[0] == "image_id"
        splits[name] = [r["image_id"] for r in _rows(path)]
        assert splits[name], f"{name} split is empty"
    all_ids = [i for ids in splits.values() for i in ids]
    assert len(all_ids) == len(set(all_ids))
    assert set(all_ids) == {im["file_name"] for im in coco["images"]}
    assert len(splits["train"]) > len(splits["valid"]) and len(splits["train"]) > len(splits["test"])


def test_polygons_lie_on_bone_in_displayed_frame(dataset):
    root, _, coco = dataset
    images = {im["id"]: im for im in coco["images"]}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        pixels = _displayed(_image_path(root, im["file_name"]))
        assert pixels.shape == (h, w)

        (flat,) = ann["segmentation"]
        assert 0 <= min(flat[0::2]) and max(flat[0::2]) <= w
        assert 0 <= min(flat[1::2]) and max(flat[1::2]) <= h
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))).astype(bool)
        assert 0.0005 <= mask.sum() / mask.size <= 0.02
        assert 0.0005 <= ann["area"] / (h * w) <= 0.02

        ring = _dilate(mask, 3) & ~mask
        background = np.percentile(pixels, 25)
        # The crack sits on bright bone and is itself darker than the bone around it.
        assert pixels[ring].mean() > max(120.0, background + 70.0), im["file_name"]
        assert pixels[mask].mean() < pixels[ring].mean() - 15.0, im["file_name"]


def test_bone_covers_a_plausible_fraction(dataset):
    root, _, _ = dataset
    for path in sorted(root.glob("images/*/*.jpg")):
        bright = (_displayed(path) > 150).mean()
        assert 0.05 <= bright <= 0.35, (path.name, bright)


def test_exif_orientation_cases(dataset):
    root, summary, coco = dataset
    assert summary["exif_ids"] == {"IMG0000003": 8, "IMG0000005": 3, "IMG0000004": 6}
    coco_size = {im["file_name"]: (im["width"], im["height"]) for im in coco["images"]}
    rows = {r["image_id"]: r for r in _rows(root / "dataset.csv")}

    for stem, orientation in summary["exif_ids"].items():
        path = _image_path(root, f"{stem}.jpg")
        assert _orientation(path) == orientation
        with Image.open(path) as img:
            stored = img.size
            displayed = ImageOps.exif_transpose(img).size
        if orientation in (6, 8):
            assert displayed == stored[::-1]
        else:
            assert displayed == stored
        if rows[path.name]["fractured"] == "1":
            assert path.parent.name == "Fractured"
            assert coco_size[path.name] == displayed
        else:
            assert path.parent.name == "Non_fractured"
    assert {o for s, o in summary["exif_ids"].items() if rows[f"{s}.jpg"]["fractured"] == "1"} == {3, 8}

    others = [p for p in root.glob("images/*/*.jpg") if p.stem not in summary["exif_ids"]]
    assert others and all(_orientation(p) is None for p in others)


def test_exif_transpose_recovers_the_drawn_image(dataset):
    root, summary, _ = dataset
    rows = _rows(root / "dataset.csv")
    for i, row in enumerate(rows):
        path = _image_path(root, row["image_id"])
        shown = _displayed(path)
        drawn, polygons = render_radiograph(SEED, i, shown.shape[1], shown.shape[0], row["fractured"] == "1")
        assert len(polygons) == int(row["fracture_count"])
        assert np.abs(shown - drawn).mean() < 2.0, path.name  # JPEG noise only

        if path.stem in summary["exif_ids"]:
            # Ignoring the tag gives different pixels: a reader must apply it.
            with Image.open(path) as img:
                raw = np.asarray(img.convert("L"), dtype=np.float64)
            if raw.shape == drawn.shape:
                assert np.abs(raw - drawn).mean() > 10.0, path.name
            else:
                assert raw.shape == drawn.shape[::-1]


def test_mixed_channel_modes(dataset):
    root, _, _ = dataset
    modes = {}
    for path in sorted(root.glob("images/*/*.jpg")):
        with Image.open(path) as img:
            modes[path.name] = img.mode
            if img.mode == "RGB":
                rgb = np.asarray(img, dtype=np.int16)
                assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2
                assert np.abs(rgb[..., 0] - rgb[..., 2]).max() <= 2
    assert set(modes.values()) == {"L", "RGB"}
    assert list(modes.values()).count("L") > list(modes.values()).count("RGB")


def test_deterministic_per_seed(tmp_path):
    a = _all_files(Path(make_synthetic_fracatlas(tmp_path / "a", n=5, seed=7)["out_dir"]))
    b = _all_files(Path(make_synthetic_fracatlas(tmp_path / "b", n=5, seed=7)["out_dir"]))
    c = _all_files(Path(make_synthetic_fracatlas(tmp_path / "c", n=5, seed=8)["out_dir"]))
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 5 and all(a[k] != c[k] for k in images)


def test_rerun_into_same_dir_overwrites(tmp_path):
    out = tmp_path / "data"
    make_synthetic_fracatlas(out, n=7, seed=1)
    make_synthetic_fracatlas(out, n=4, seed=2)
    make_synthetic_fracatlas(tmp_path / "fresh", n=4, seed=2)
    assert _all_files(out) == _all_files(tmp_path / "fresh")


@pytest.mark.parametrize("n", [1, 2, 5])
def test_small_datasets(tmp_path, n):
    summary = make_synthetic_fracatlas(tmp_path, n=n, seed=3)
    rows = _rows(tmp_path / "dataset.csv")
    assert len(rows) == n
    flags = [r["fractured"] for r in rows]
    if n >= 2:
        assert "0" in flags and "1" in flags
    assert 8 in summary["exif_ids"].values()
    splits = {s: _rows(tmp_path / SPLIT_DIR / f"{s}.csv") for s in ("train", "valid", "test")}
    assert sum(map(len, splits.values())) == summary["n_fractured"]
    if summary["n_fractured"] >= 3:
        assert all(splits.values())


def test_rejects_empty_dataset(tmp_path):
    with pytest.raises(ValueError):
        make_synthetic_fracatlas(tmp_path, n=0)
