"""Labelme JSON annotations → cases, for users who draw bones (or fractures) in Labelme.

A Labelme file (one per film) holds ``shapes`` with a ``label`` name, a ``shape_type`` and
``points`` in the displayed frame of its film (Labelme applies EXIF orientation when it
opens a JPG, as FracAtlas does). A small mapping file says which label names are which
class, case-insensitively, e.g. ``{"bone": 1, "femur": 1, "fracture": 2}``.

A film with at least one bone polygon takes its bone from the polygons; a film without
one (a fracture-only annotation) keeps the Li pseudo-label. Labelme cases can stand alone or be merged into FracAtlas cases of the
same id (:func:`merge_cases`): FracAtlas keeps its fracture polygons and official split,
Labelme adds its polygons.
"""

from __future__ import annotations

from pathlib import Path

from monaifrac.data.cases import Case, DataError, Problem
from monaifrac.data.fracatlas import load_json
from monaifrac.data.masks import BONE, FRACTURE, PolygonError, check_polygon

DEFAULT_MAPPING = {"bone": BONE, "fracture": FRACTURE, "fractured": FRACTURE}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def read_mapping(path: Path | str | None) -> dict[str, int]:
    """Label name (lower case) → class index (1 bone, 2 fracture); the default when ``path`` is None."""
    if path is None:
        return dict(DEFAULT_MAPPING)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mapping file not found")
    raw = load_json(path)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: mapping must be a JSON object of label name → class (1 bone, 2 fracture)")
    mapping = {}
    for name, value in raw.items():
        if value not in (BONE, FRACTURE):
            raise DataError(f"{path}: label {name!r} maps to {value!r}; classes are 1 (bone) and 2 (fracture)")
        mapping[str(name).strip().lower()] = int(value)
    return mapping


def _shape_polygon(shape: dict) -> list[float] | None:
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points") or []
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        points = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    elif kind != "polygon":
        return None
    return [float(v) for p in points for v in p]


def _find_image(json_path: Path, doc: dict) -> Path | None:
    named = doc.get("imagePath")
    if named:
        candidate = (json_path.parent / str(named).replace("\\", "/")).resolve()
        if candidate.is_file():
            return candidate
    for suffix in IMAGE_SUFFIXES:
        for candidate in (json_path.with_suffix(suffix), json_path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def read_labelme(folder: Path | str, mapping: dict[str, int]) -> tuple[list[Case], list[Problem]]:
    """Read every ``*.json`` under ``folder`` (recursively) as one Labelme case.

    A malformed file, a missing film or a bad polygon becomes a fatal problem of that case;
    labels absent from the mapping and non-polygon shapes are warnings.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: Labelme folder not found")
    cases: list[Case] = []
    problems: list[Problem] = []
    for path in sorted(folder.rglob("*.json")):
        case = Case(id=path.stem, image=path, annotation_file=str(path))
        cases.append(case)
        try:
            doc = load_json(path)
        except DataError as err:
            case.problems.append(Problem(str(path), str(err).split(": ", 1)[-1], case.id))
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            case.problems.append(Problem(str(path), "not a Labelme file (no 'shapes' list)", case.id))
            continue
        image = _find_image(path, doc)
        if image is None:
            case.problems.append(Problem(str(path), f"its film {doc.get('imagePath')!r} is not found", case.id))
            continue
        case.image = image
        try:
            if doc.get("imageWidth") and doc.get("imageHeight"):
                case.expected_size = (int(doc["imageWidth"]), int(doc["imageHeight"]))
        except (TypeError, ValueError):
            case.problems.append(Problem(str(path), "imageWidth/imageHeight are not integers", case.id))
            continue
        for n, shape in enumerate(doc["shapes"]):
            if not isinstance(shape, dict):
                case.problems.append(Problem(str(path), f"shape {n}: not a Labelme shape object", case.id))
                continue
            name = str(shape.get("label", "")).strip().lower()
            if name not in mapping:
                case.problems.append(Problem(str(path), f"shape {n}: label {name!r} is not in the mapping; ignored",
                                             case.id, fatal=False))
                continue
            try:
                polygon = _shape_polygon(shape)
            except (TypeError, ValueError) as err:  # points that are not [x, y] number pairs
                case.problems.append(Problem(str(path), f"shape {n} ({name}): malformed points ({err})", case.id))
                continue
            if polygon is None:
                case.problems.append(Problem(str(path), f"shape {n}: {shape.get('shape_type')} is not a polygon; "
                                             "ignored", case.id, fatal=False))
                continue
            try:
                check_polygon(polygon)
            except PolygonError as err:
                case.problems.append(Problem(str(path), f"shape {n} ({name}): {err}", case.id))
                continue
            case.polygons.setdefault(mapping[name], []).append(polygon)
        case.fractured = bool(case.polygons.get(FRACTURE))
        case.bone_annotated = bool(case.polygons.get(BONE))
    return cases, problems


def merge_cases(base: list[Case], extra: list[Case]) -> list[Case]:
    """Add Labelme cases to FracAtlas cases: same id → polygons added, else a new case."""
    by_id = {c.id: c for c in base}
    for case in extra:
        target = by_id.get(case.id)
        if target is None:
            by_id[case.id] = case
            continue
        for cls, polygons in case.polygons.items():
            target.polygons.setdefault(cls, []).extend(polygons)
        target.bone_annotated = target.bone_annotated or case.bone_annotated
        target.fractured = target.fractured or case.fractured
        target.problems += case.problems
    return [by_id[k] for k in sorted(by_id)]
