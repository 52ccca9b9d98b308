"""The official FracAtlas layout → cases.

Abedeen et al., "FracAtlas: A Dataset for Fracture Classification, Localization and
Segmentation of Musculoskeletal Radiographs", Sci Data 10, 521 (2023), CC BY 4.0,
https://doi.org/10.6084/m9.figshare.22363012 .

Layout read (as in the archive)::

    images/Fractured/*.jpg, images/Non_fractured/*.jpg    (also .png, and .dcm: DICOM films)
    Annotations/COCO JSON/COCO_fracture_masks.json     fracture polygons, category id 0
    dataset.csv                                        one row per film: body-part flags, fractured
    Utilities/Fracture Split/{train,valid,test}.csv    official split of the fractured films; any may be missing

Quirks handled here: the only COCO category has id 0 (many COCO tools take 0 for
background; here it *is* the fracture), and polygons are in the displayed (EXIF-rotated)
frame, which :mod:`monaifrac.io` reproduces when it reads the film.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from monaifrac.data.cases import Case, DataError, Problem
from monaifrac.data.masks import FRACTURE, PolygonError, check_polygon

COCO_RELPATH = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_DIR = Path("Utilities") / "Fracture Split"
OFFICIAL_SPLITS = ("train", "valid", "test")
IMAGE_DIRS = {"Fractured": True, "Non_fractured": False}
BODY_PARTS = ("hand", "leg", "hip", "shoulder")
CSV_REQUIRED = ("image_id", "fractured") + BODY_PARTS
# DICOM films: the layout ``monaifrac pacs-pull --labels`` writes (the films of a PACS as retrieved)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm")


def is_fracatlas_dir(root: Path | str) -> bool:
    root = Path(root)
    return (root / "images").is_dir() and (root / "dataset.csv").is_file()


def read_fracatlas(root: Path | str) -> tuple[list[Case], list[Problem]]:
    """Read a FracAtlas-layout folder.

    Returns:
        ``(cases, problems)``: one case per film found under ``images/``, sorted by id, each
        with its own problems attached; ``problems`` holds those tied to no usable film
        (an annotation whose film is missing, a ``dataset.csv`` row with no file).

    Raises:
        DataError: the layout itself is unusable (no ``images/``, no or malformed
            ``dataset.csv``, an empty or malformed COCO JSON).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    problems: list[Problem] = []
    cases = _scan_images(root)
    rows = _read_dataset_csv(root / "dataset.csv")
    for case in cases.values():
        row = rows.get(case.id)
        if row is None:
            case.problems.append(Problem(str(root / "dataset.csv"), "film not listed in dataset.csv", case.id))
            continue
        case.body_part = row["body_part"]
        if row["fractured"] != case.fractured:
            where = "images/Fractured" if case.fractured else "images/Non_fractured"
            case.problems.append(
                Problem(str(root / "dataset.csv"), f"fractured={int(row['fractured'])} but the film is in {where}",
                        case.id, fatal=False)
            )
    for image_id in sorted(set(rows) - set(cases)):
        problems.append(Problem(str(root / "dataset.csv"), "row has no film under images/", image_id, fatal=False))

    coco_path = root / COCO_RELPATH
    if coco_path.exists():
        problems += _attach_coco(coco_path, cases)
    elif any(c.fractured for c in cases.values()):
        raise DataError(f"{coco_path}: not found, but images/Fractured holds films (their polygons are in it)")

    split_of = _read_official_splits(root / SPLIT_DIR, problems)
    for case in cases.values():
        case.official_split = split_of.get(case.id)
        if case.fractured and not case.polygons.get(FRACTURE):
            case.problems.append(Problem(str(coco_path), "film is in images/Fractured but has no polygon", case.id,
                                         fatal=False))
    return [cases[k] for k in sorted(cases)], problems


def _scan_images(root: Path) -> dict[str, Case]:
    image_root = root / "images"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: not found (expected images/Fractured and images/Non_fractured)")
    cases: dict[str, Case] = {}
    for folder, fractured in IMAGE_DIRS.items():
        d = image_root / folder
        if not d.is_dir():
            continue
        for path in sorted(d.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                cases[path.stem] = Case(id=path.stem, image=path, fractured=fractured)
    if not cases:
        raise DataError(f"{image_root}: no .jpg/.png/.dcm films under Fractured/ or Non_fractured/")
    return cases


def _read_dataset_csv(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = {}
            for line_no, row in enumerate(reader, start=2):
                try:
                    parts = [p for p in BODY_PARTS if int(row[p] or 0)]
                    rows[Path(row["image_id"].strip()).stem] = {
                        "fractured": bool(int(row["fractured"] or 0)),
                        "body_part": "+".join(parts) or "unknown",
                    }
                except (ValueError, TypeError, AttributeError) as err:
                    raise DataError(f"{path}: line {line_no}: not a 0/1 flag ({err})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text CSV ({err})") from None
    return rows


def load_json(path: Path) -> object:
    """Parse a JSON file, raising DataError naming the file for empty or malformed content."""
    text = path.read_bytes()
    if not text.strip():
        raise DataError(f"{path}: empty file")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: malformed JSON ({err})") from None


def _fracture_category_ids(coco: dict, path: Path) -> set:
    categories = coco.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{path}: no 'categories' list")
    if len(categories) == 1:
        return {categories[0].get("id")}
    ids = {c.get("id") for c in categories if "fract" in str(c.get("name", "")).lower()}
    if not ids:
        raise DataError(f"{path}: none of {len(categories)} categories is named like 'fractured'")
    return ids


def _attach_coco(path: Path, cases: dict[str, Case]) -> list[Problem]:
    coco = load_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(
        coco.get("annotations"), list
    ):
        raise DataError(f"{path}: not COCO instance format (needs 'images' and 'annotations' lists)")
    fracture_ids = _fracture_category_ids(coco, path)
    problems: list[Problem] = []
    images = {}
    for im in coco["images"]:
        try:
            images[im["id"]] = (Path(str(im["file_name"])).stem, (int(im["width"]), int(im["height"])))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: image entry without id/file_name/width/height: {str(im)[:120]}") from None
    for ann in coco["annotations"]:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(f"{path}: annotation without image_id: {str(ann)[:120]}")
        if ann.get("category_id") not in fracture_ids:
            problems.append(Problem(str(path), f"annotation {ann_id}: category {ann.get('category_id')} is not the "
                                    "fracture category; ignored", fatal=False))
            continue
        entry = images.get(ann["image_id"])
        if entry is None:
            problems.append(Problem(str(path), f"annotation {ann_id}: image id {ann['image_id']} is not in 'images'"))
            continue
        stem, size = entry
        case = cases.get(stem)
        if case is None:
            problems.append(Problem(str(path), f"annotation {ann_id}: its film {stem} is missing under images/", stem))
            continue
        case.expected_size = size
        case.annotation_file = str(path)
        segmentation = ann.get("segmentation")
        if not isinstance(segmentation, list) or not segmentation:
            case.problems.append(Problem(str(path), f"annotation {ann_id}: segmentation is not a polygon list "
                                         "(RLE is not supported)", stem))
            continue
        for polygon in segmentation:
            try:
                check_polygon(polygon)
            except (PolygonError, TypeError, ValueError) as err:
                case.problems.append(Problem(str(path), f"annotation {ann_id}: {err}", stem))
                continue
            case.polygons.setdefault(FRACTURE, []).append([float(v) for v in polygon])
        case.fractured = True
    return problems


def _read_official_splits(split_dir: Path, problems: list[Problem]) -> dict[str, str]:
    split_of: dict[str, str] = {}
    for split in OFFICIAL_SPLITS:
        path = split_dir / f"{split}.csv"
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if "image_id" not in (reader.fieldnames or []):
                raise DataError(f"{path}: missing column image_id")
            for row in reader:
                stem = Path((row["image_id"] or "").strip()).stem
                if not stem:
                    continue
                if stem in split_of and split_of[stem] != split:
                    problems.append(Problem(str(path), f"also listed in {split_of[stem]}.csv; kept in "
                                            f"{split_of[stem]}", stem, fatal=False))
                    continue
                split_of[stem] = split
    return split_of


FRACATLAS_ENV = "MONAIFRAC_FRACATLAS"


def default_fracatlas_dir() -> Path | None:
    """Where the FracAtlas copy is: ``$MONAIFRAC_FRACATLAS``, else ``../shared/data/fracatlas``
    beside this checkout; None when neither holds the layout."""
    import os

    env = os.environ.get(FRACATLAS_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "fracatlas")
    for c in candidates:
        if is_fracatlas_dir(c):
            return c
    return None
