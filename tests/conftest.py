"""Shared fixtures: tiny films drawn by hand and a mini dataset in the FracAtlas layout.

Nothing here is copied from FracAtlas; every file is written into pytest's tmp_path.

The mini dataset (:func:`make_mini_fracatlas`) has 12 films of 32 x 48 pixels (H x W,
displayed frame):

* ``IMG0000001``-``IMG0000004`` in ``images/Fractured`` with one rectangular fracture
  polygon each (:data:`FRACTURE_BOXES`); ``IMG0000001`` is stored rotated with EXIF
  orientation 8, exactly like FracAtlas's ``IMG0002628``, and its polygon is given in
  the displayed frame; ``IMG0000002`` is stored as RGB with R = G = B.
* ``IMG0000005``-``IMG0000012`` in ``images/Non_fractured``.
* official split of the fractured films: train 1, 2; valid 3; test 4.

``defect=`` injects one bad input and the returned :class:`MiniAtlas` names the case and
the file that is bad.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FILM_H, FILM_W = 32, 48
EXIF_ORIENTATION_TAG = 0x0112
COCO_REL = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_REL = Path("Utilities") / "Fracture Split"
CSV_HEADER = ["image_id", "hand", "leg", "hip", "shoulder", "mixed", "hardware", "multiscan", "fractured",
              "fracture_count", "frontal", "lateral", "oblique"]

# Displayed-frame rectangles (x0, y0, x1, y1) of the fracture polygons, all on the bright bar
# of draw_film (rows 12-19, cols 4-43). With COCO's convention a rectangle covers columns
# x0 .. x1-1 and rows y0 .. y1-1, i.e. (x1-x0)*(y1-y0) pixels.
FRACTURE_BOXES = {
    "IMG0000001": (10, 12, 18, 16),  # 8 x 4 = 32 pixels, rows 12-15, cols 10-17
    "IMG0000002": (20, 13, 24, 17),  # 4 x 4 = 16 pixels
    "IMG0000003": (30, 14, 36, 18),  # 6 x 4 = 24 pixels
    "IMG0000004": (6, 15, 9, 19),  # 3 x 4 = 12 pixels
}
FRACTURED_IDS = sorted(FRACTURE_BOXES)
NON_FRACTURED_IDS = [f"IMG{i:07d}" for i in range(5, 13)]
ALL_IDS = FRACTURED_IDS + NON_FRACTURED_IDS
OFFICIAL = {"train": ["IMG0000001", "IMG0000002"], "valid": ["IMG0000003"], "test": ["IMG0000004"]}
BODY_PART_OF = {i: ("hand", "leg")[n % 2] for n, i in enumerate(ALL_IDS)}

DEFECTS = ("truncated", "zero_byte", "not_image", "clipped_polygon", "short_polygon", "missing_image",
           "not_in_csv", "empty_coco", "malformed_coco")


def box_polygon(x0, y0, x1, y1) -> list[float]:
    """Flat COCO polygon of an axis-aligned rectangle."""
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def draw_film(h: int = FILM_H, w: int = FILM_W, shade: int = 0) -> np.ndarray:
    """(H, W) uint8 film: dark air, a mid-grey soft-tissue band (rows h/4 .. 3h/4) and a bright
    bone bar (rows 3h/8 .. 5h/8, columns w/12 .. 11w/12); a gentle ramp makes it asymmetric."""
    yy, xx = np.mgrid[0:h, 0:w]
    film = np.full((h, w), 20.0)
    film[h // 4: 3 * h // 4, :] = 100
    film[3 * h // 8: 5 * h // 8, w // 12: 11 * w // 12] = 200
    film += 0.3 * xx + 0.2 * yy + shade
    return np.clip(np.rint(film), 0, 255).astype(np.uint8)


def stored_for_orientation(displayed: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels to store so that a viewer applying EXIF ``orientation`` shows ``displayed``.

    A viewer rotates the stored image 90° clockwise for 6, 90° counter-clockwise for 8 and
    180° for 3, so the stored pixels are the displayed ones turned the other way.
    """
    k = {1: 0, 6: 1, 8: -1, 3: 2}[orientation]  # np.rot90 turns counter-clockwise for k > 0
    return np.ascontiguousarray(np.rot90(displayed, k))


def save_image(path: Path, stored: np.ndarray, orientation: int = 1, rgb: bool = False, fmt: str | None = None,
               quality: int = 95) -> Path:
    """Write ``stored`` (H, W) uint8 as it is, with an EXIF orientation tag when it is not 1."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(stored)
    if rgb:
        img = img.convert("RGB")
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = orientation
        kwargs["exif"] = exif
    fmt = fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG")
    if fmt == "JPEG":
        kwargs["quality"] = quality
    img.save(path, format=fmt, **kwargs)
    return path


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def hidden_or_temp_files(folder: Path) -> list[Path]:
    """Files a crashed or interrupted writer would leave: hidden names or ``.tmp`` suffixes."""
    return [p for p in Path(folder).rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


@dataclass
class MiniAtlas:
    root: Path
    coco: Path
    displayed: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: dict[str, tuple] = field(default_factory=dict)
    bad_id: str | None = None
    bad_file: Path | None = None

    def image_path(self, case_id: str) -> Path:
        folder = "Fractured" if case_id in FRACTURED_IDS else "Non_fractured"
        return self.root / "images" / folder / f"{case_id}.jpg"


def make_mini_fracatlas(root: Path, defect: str | None = None) -> MiniAtlas:
    """Write the mini dataset described in the module docstring, with at most one defect."""
    if defect is not None and defect not in DEFECTS:
        raise ValueError(defect)
    root = Path(root)
    atlas = MiniAtlas(root=root, coco=root / COCO_REL)
    for n, case_id in enumerate(ALL_IDS):
        displayed = draw_film(shade=n)
        atlas.displayed[case_id] = displayed
        orientation = 8 if case_id == "IMG0000001" else 1
        save_image(atlas.image_path(case_id), stored_for_orientation(displayed, orientation), orientation,
                   rgb=(case_id == "IMG0000002"))

    polygons = {i: [box_polygon(*b)] for i, b in FRACTURE_BOXES.items()}
    atlas.boxes = dict(FRACTURE_BOXES)
    coco_images = [{"id": n + 1, "width": FILM_W, "height": FILM_H, "file_name": f"{i}.jpg"}
                   for n, i in enumerate(FRACTURED_IDS)]
    csv_ids = list(ALL_IDS)

    if defect == "truncated":
        atlas.bad_id = "IMG0000005"
        data = jpeg_bytes(atlas.displayed["IMG0000005"])
        atlas.image_path("IMG0000005").write_bytes(data[: int(len(data) * 0.7)])
    elif defect == "zero_byte":
        atlas.bad_id = "IMG0000006"
        atlas.image_path("IMG0000006").write_bytes(b"")
    elif defect == "not_image":
        atlas.bad_id = "IMG0000007"
        atlas.image_path("IMG0000007").write_text("this is a text file, not a radiograph\n")
    elif defect == "clipped_polygon":
        # x 40..52 on a 48-wide film: columns 40-47 stay, 8 x 4 = 32 pixels (rows 13-16).
        atlas.bad_id = "IMG0000002"
        atlas.boxes["IMG0000002"] = (40, 13, 52, 17)
        polygons["IMG0000002"] = [box_polygon(40, 13, 52, 17)]
    elif defect == "short_polygon":
        atlas.bad_id = "IMG0000003"
        polygons["IMG0000003"] = [[30.0, 14.0, 36.0, 18.0]]  # two points
    elif defect == "missing_image":
        atlas.bad_id = "IMG0000004"
        atlas.image_path("IMG0000004").unlink()
    elif defect == "not_in_csv":
        atlas.bad_id = "IMG0000008"
        csv_ids.remove("IMG0000008")
    if defect in ("zero_byte", "not_image", "truncated"):
        atlas.bad_file = atlas.image_path(atlas.bad_id)
    elif defect in ("clipped_polygon", "short_polygon", "missing_image", "empty_coco", "malformed_coco"):
        # a film missing under images/ is reported against the annotation file that names it
        atlas.bad_file = atlas.coco
    elif defect == "not_in_csv":
        atlas.bad_file = root / "dataset.csv"

    annotations = []
    for image in coco_images:
        stem = image["file_name"][:-4]
        for polygon in polygons[stem]:
            xs, ys = polygon[0::2], polygon[1::2]
            annotations.append({"id": len(annotations), "iscrowd": 0, "image_id": image["id"], "category_id": 0,
                                "segmentation": [polygon],
                                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], "area": 0.0})
    coco = {"info": {"description": "mini test set"}, "images": coco_images, "annotations": annotations,
            "categories": [{"id": 0, "name": "fractured"}]}
    atlas.coco.parent.mkdir(parents=True, exist_ok=True)
    if defect == "empty_coco":
        atlas.coco.write_text("")
    elif defect == "malformed_coco":
        atlas.coco.write_text(json.dumps(coco)[:-20])
    else:
        atlas.coco.write_text(json.dumps(coco))

    with (root / "dataset.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for case_id in csv_ids:
            part = BODY_PART_OF[case_id]
            fractured = int(case_id in FRACTURED_IDS)
            w.writerow([f"{case_id}.jpg", int(part == "hand"), int(part == "leg"), 0, 0, 0, 0, 0, fractured,
                        fractured, 1, 0, 0])
    (root / SPLIT_REL).mkdir(parents=True, exist_ok=True)
    for split, ids in OFFICIAL.items():
        (root / SPLIT_REL / f"{split}.csv").write_text("image_id\n" + "".join(f"{i}.jpg\n" for i in ids))
    return atlas


@pytest.fixture
def mini_atlas(tmp_path) -> MiniAtlas:
    return make_mini_fracatlas(tmp_path / "fracatlas")


@pytest.fixture
def atlas_factory(tmp_path):
    """``atlas_factory(defect)`` → a fresh mini dataset with that defect, in its own folder."""
    counter = iter(range(1000))

    def make(defect: str | None = None) -> MiniAtlas:
        return make_mini_fracatlas(tmp_path / f"fracatlas_{defect}_{next(counter)}", defect)

    return make


@pytest.fixture(scope="module")
def dciodvfy():
    """dicom3tools' validator, installed with apt where it is missing and we may (as Orthanc is)."""
    import shutil

    from monaifrac.dicom.orthanc import apt_install

    if shutil.which("dciodvfy") is None:
        apt_install("dicom3tools")
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools' dciodvfy not installed and not installable here (`apt-get install dicom3tools`)")
    return shutil.which("dciodvfy")
