"""The bad-input corpus (issue 8, item 7): every file is made here, nothing is copied from anywhere.

``make_bad_inputs(out_dir)`` writes one file (or one small folder) per case and returns
``{case name: Path | dict}``; ``scripts/make_bad_inputs.py`` is its command line (default
``tests/data/bad/``, git-ignored); the tests write the corpus into pytest's tmp dir. Layout::

    films/              one film per case, good and bad side by side: the folder inference runs over
                        (JPG/PNG cases, DICOM MONOCHROME1, EXIF 1-8, odd names, NIfTI films)
    dataset/            a prepared-style folder (datalist.json + images/ + labels/): the NIfTI pair
                        cases and a datalist naming missing files, for check, training and evaluate
    atlas/films/        a FracAtlas layout (the mini atlas of tests/conftest.py) whose
                        images/Non_fractured also holds every JPG/PNG film case, for prepare and score
    atlas/coco_*/       one FracAtlas layout per broken COCO JSON
    labelme/            a Labelme folder whose JSON has a label the mapping does not know
    huge/               the 6000 x 6000 film (only with ``huge=True``: 36 Mpixel, written in ~1 s)

``DESCRIPTION`` says in words what each case is; the tests hold what each stage must make of it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import (
    COCO_REL,
    EXIF_ORIENTATION_TAG,
    FILM_H,
    FILM_W,
    box_polygon,
    draw_film,
    make_mini_fracatlas,
    save_image,
)

# Films read by read_radiograph (and the FracAtlas layout, which takes .jpg/.jpeg/.png).
RASTER_FILMS = {
    "good_jpg": "good.jpg",
    "truncated_jpg": "truncated.jpg",
    "zero_byte_jpg": "zero_byte.jpg",
    "text_as_jpg": "text.jpg",
    "png_as_jpg": "png_named.jpg",
    "png_16bit": "deep16.png",
    "png_rgb": "rgb.png",
    "png_rgba": "rgba.png",
    "tiny_8x8": "tiny_8x8.png",
    "line_1x4000": "line_1x4000.png",
    **{f"exif_{k}": f"exif_{k}.jpg" for k in range(1, 9)},
    "name_spaces": "film with spaces.jpg",
    "name_non_ascii": "röntgen_çatlak_骨.jpg",
}
OTHER_FILMS = {
    "dicom_monochrome1": "mono1.dcm",
    "nifti_singleton_3d": "singleton3d.nii.gz",
    "nifti_nan": "nan.nii.gz",
}
DATASET_CASES = ("good_pair_fractured", "good_pair_normal", "nifti_singleton_3d", "nifti_nan", "label_value_7",
                 "pair_shape_mismatch", "datalist_missing_files")
COCO_CASES = ("coco_empty", "coco_invalid", "coco_no_annotations", "coco_two_point_polygon", "coco_polygon_outside",
              "coco_category_1")
HUGE_SIDE = 6000

DESCRIPTION = {
    "good_jpg": "a plain 8-bit JPG (the control)",
    "truncated_jpg": "a JPG cut to 70 % of its bytes",
    "zero_byte_jpg": "a zero-byte file named .jpg",
    "text_as_jpg": "a text file named .jpg",
    "png_as_jpg": "a PNG named .jpg",
    "png_16bit": "a 16-bit grey PNG using the full range 0..65535",
    "png_rgb": "an RGB PNG with three different channels",
    "png_rgba": "an RGBA PNG (grey RGB, alpha ramp)",
    "tiny_8x8": "an 8 x 8 film",
    "line_1x4000": "a 1 x 4000 (height x width) film",
    **{f"exif_{k}": f"a JPG stored so that EXIF orientation {k} displays the reference pattern" for k in range(1, 9)},
    "name_spaces": "a JPG whose name has spaces",
    "name_non_ascii": "a JPG whose name has non-ASCII letters",
    "dicom_monochrome1": "a DICOM with Photometric Interpretation MONOCHROME1 (bone stored dark)",
    "nifti_singleton_3d": "a NIfTI film (and pair) of shape (W, H, 1)",
    "nifti_nan": "a float NIfTI film (and pair) with NaN pixels",
    "good_pair_fractured": "a correct prepared pair with fracture pixels (the control)",
    "good_pair_normal": "a correct prepared pair without fracture pixels (the control)",
    "label_value_7": "a label map with a pixel of value 7",
    "pair_shape_mismatch": "an image/label pair of different shapes",
    "datalist_missing_files": "datalist items whose image, or label, does not exist",
    "coco_empty": "a COCO JSON of zero bytes",
    "coco_invalid": "a COCO JSON cut short (invalid JSON)",
    "coco_no_annotations": "a COCO JSON without 'annotations'",
    "coco_two_point_polygon": "a COCO polygon of two points",
    "coco_polygon_outside": "a COCO polygon lying wholly outside its film",
    "coco_category_1": "a COCO JSON whose only (fracture) category has id 1, not FracAtlas's 0",
    "labelme_unknown_label": "a Labelme JSON with a label the mapping does not know",
    "huge_6000": "a 6000 x 6000 JPG film",
}

# The reference pattern of the EXIF cases: 24 x 40 (H x W) displayed, 3 x 5 blocks of 8 x 8 pixels
# of distinct grey levels, so every turn and mirror gives a different picture (and JPEG, which
# codes 8 x 8 blocks, keeps uniform aligned blocks almost exactly).
EXIF_BLOCKS = np.array([[20, 60, 100, 140, 180], [40, 80, 120, 160, 200], [230, 10, 250, 90, 170]], np.uint8)


def exif_displayed() -> np.ndarray:
    return np.kron(EXIF_BLOCKS, np.ones((8, 8), np.uint8))


# What a viewer does to the stored pixels for each EXIF orientation (EXIF 2.3, tag 0x0112),
# written with numpy alone so that the tests do not take PIL's word for it:
#   1 as stored; 2 mirrored left-right; 3 turned 180°; 4 mirrored top-bottom;
#   5 transposed (stored row 0 = displayed column 0); 6 turned 90° clockwise;
#   7 anti-transposed (stored row 0 = displayed right column, read bottom-up); 8 turned 90° counter-clockwise.
DISPLAY = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}
# ... and its inverse: the pixels to store so that the viewer shows ``displayed``.
STORE = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, -1),
}


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def deep16_film() -> np.ndarray:
    """The 16-bit case: the film scaled to 16 bits, with the extremes 0 and 65535 and a pixel of 1
    (which an 8-bit reduction would merge with 0)."""
    deep = draw_film().astype(np.uint16) * 257
    deep[0, 0], deep[0, 1], deep[0, 2] = 0, 65535, 1
    return deep


def rgb_film() -> np.ndarray:
    film = draw_film()
    return np.stack([film, film // 2, 255 - film], axis=-1)


def rgba_film() -> np.ndarray:
    film = draw_film()
    alpha = np.linspace(0, 255, film.size).reshape(film.shape).astype(np.uint8)
    return np.stack([film, film, film, alpha], axis=-1)


def tiny_film() -> np.ndarray:
    return draw_film(8, 8)


def line_film() -> np.ndarray:
    return (np.arange(4000) % 251).astype(np.uint8)[None, :]


def nifti_film_wh() -> np.ndarray:
    """The NIfTI film cases in MONAI's (W, H) frame: draw_film transposed."""
    return np.ascontiguousarray(draw_film().T)


def write_dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2") -> Path:
    """``stored`` (H, W) uint16 as a DICOM written by ITK (pydicom is not a dependency), its
    Photometric Interpretation then set in place: ITK always writes MONOCHROME2, and both names
    have 11 characters, so no element length changes."""
    import itk

    path.parent.mkdir(parents=True, exist_ok=True)
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(stored)), str(path))
    data = path.read_bytes()
    if data.count(b"MONOCHROME2") != 1:
        raise RuntimeError(f"{path}: ITK wrote {data.count(b'MONOCHROME2')} MONOCHROME2 tags")
    path.write_bytes(data.replace(b"MONOCHROME2", photometric.encode("ascii")))
    return path


def mono1_stored() -> np.ndarray:
    """MONOCHROME1: high values display black. Background stored 3000 (black), the bone bar stored
    low (white on screen)."""
    bar = draw_film() >= 150
    stored = np.full(bar.shape, 3000, np.uint16)
    stored[bar] = 200
    return stored


def _write_nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))
    return path


def make_huge_film(path: Path, side: int = HUGE_SIDE) -> Path:
    """A ``side`` x ``side`` JPG film (air, soft tissue, a bone bar), built without a float copy of it."""
    from monaifrac.benchmark.big_film import make_film

    return make_film(Path(path), side, side)


def _films(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / file for name, file in {**RASTER_FILMS, **OTHER_FILMS}.items()}
    film = draw_film()
    save_image(paths["good_jpg"], film)
    big = draw_film(64, 96)
    data = _jpeg_bytes(big)
    paths["truncated_jpg"].write_bytes(data[: int(len(data) * 0.7)])
    paths["zero_byte_jpg"].write_bytes(b"")
    paths["text_as_jpg"].write_text("this is a text file, not a radiograph\n")
    paths["png_as_jpg"].write_bytes(_png_bytes(film))
    paths["png_16bit"].write_bytes(_png_bytes(deep16_film()))
    paths["png_rgb"].write_bytes(_png_bytes(rgb_film(), "RGB"))
    paths["png_rgba"].write_bytes(_png_bytes(rgba_film(), "RGBA"))
    paths["tiny_8x8"].write_bytes(_png_bytes(tiny_film()))
    paths["line_1x4000"].write_bytes(_png_bytes(line_film()))
    for k in range(1, 9):
        img = Image.fromarray(np.ascontiguousarray(STORE[k](exif_displayed())))
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = k
        img.save(paths[f"exif_{k}"], format="JPEG", quality=100, exif=exif)
    save_image(paths["name_spaces"], draw_film(shade=3))
    save_image(paths["name_non_ascii"], draw_film(shade=5))
    write_dicom(paths["dicom_monochrome1"], mono1_stored(), "MONOCHROME1")
    _write_nifti(paths["nifti_singleton_3d"], nifti_film_wh()[..., None])
    nan = nifti_film_wh().astype(np.float32)
    nan[3:6, 4:9] = np.nan
    _write_nifti(paths["nifti_nan"], nan)
    return paths


def reference_label_hw() -> np.ndarray:
    """A 3-class label of draw_film (H, W): the bone bar, with a fracture box in it."""
    label = np.zeros((FILM_H, FILM_W), np.uint8)
    label[12:20, 4:44] = 1
    label[13:17, 20:24] = 2
    return label


def _dataset(root: Path) -> dict[str, dict]:
    """The prepared-style folder. Every item is in ``validation``, what ``evaluate`` reads by default."""
    image = nifti_film_wh()
    label = np.ascontiguousarray(reference_label_hw().T)
    normal = np.where(label == 2, 1, label).astype(np.uint8)
    pairs = {
        "good_pair_fractured": (image, label, True),
        "good_pair_normal": (image, normal, False),
        "nifti_singleton_3d": (image[..., None], normal[..., None], False),
        "nifti_nan": (np.where(label == 2, np.nan, image.astype(np.float32)).astype(np.float32), label, True),
        "label_value_7": (image, np.where(label == 2, 7, label).astype(np.uint8), False),
        "pair_shape_mismatch": (image, np.pad(normal, ((0, 4), (0, 0))), False),
    }
    cases: dict[str, dict] = {}
    items = []
    for name, (img, lab, fractured) in pairs.items():
        item = {"id": name, "image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz",
                "fractured": fractured, "body_part": "hand", "fold": -1}
        _write_nifti(root / item["image"], img)
        _write_nifti(root / item["label"], lab)
        items.append(item)
        cases[name] = {"image": root / item["image"], "label": root / item["label"], "item": item}
    missing = [
        {"id": "missing_image", "image": "images/missing_image.nii.gz", "label": "labels/missing_image.nii.gz",
         "fractured": False, "body_part": "hand", "fold": -1},
        {"id": "missing_label", "image": "images/missing_label.nii.gz", "label": "labels/missing_label.nii.gz",
         "fractured": False, "body_part": "hand", "fold": -1},
    ]
    _write_nifti(root / missing[0]["label"], normal)  # the label is there, the image is not
    _write_nifti(root / missing[1]["image"], image)  # the image is there, the label is not
    items += missing
    cases["datalist_missing_files"] = {"datalist": root / "datalist.json", "items": missing,
                                       "missing": [root / missing[0]["image"], root / missing[1]["label"]]}
    (root / "datalist.json").write_text(json.dumps({"training": [], "validation": items, "test": []}, indent=1))
    return cases


def _atlas_with_films(root: Path, films: dict[str, Path]) -> dict:
    """The mini atlas with every JPG/PNG film case added under images/Non_fractured (and to dataset.csv)."""
    make_mini_fracatlas(root)
    ids = {}
    with (root / "dataset.csv").open("a", newline="") as f:
        for name in RASTER_FILMS:
            src = films[name]
            shutil.copyfile(src, root / "images" / "Non_fractured" / src.name)
            ids[name] = src.stem
            f.write(f"{src.name},1,0,0,0,0,0,0,0,0,1,0,0\n")
    return {"root": root, "ids": ids, "files": {n: root / "images" / "Non_fractured" / films[n].name
                                                  for n in RASTER_FILMS}}


def _coco_atlases(root: Path) -> dict[str, dict]:
    """One mini atlas per broken COCO JSON; ``case`` is the film the damage touches (None: all)."""
    cases = {}
    for name in COCO_CASES:
        atlas = make_mini_fracatlas(root / name)
        coco_path = atlas.root / COCO_REL
        coco = json.loads(coco_path.read_text())
        case = None
        if name == "coco_empty":
            coco_path.write_bytes(b"")
        elif name == "coco_invalid":
            coco_path.write_text(json.dumps(coco)[:-20])
        elif name == "coco_no_annotations":
            del coco["annotations"]
            coco_path.write_text(json.dumps(coco))
        elif name == "coco_two_point_polygon":
            case = "IMG0000003"
            _set_polygon(coco, case, [30.0, 14.0, 36.0, 18.0])
            coco_path.write_text(json.dumps(coco))
        elif name == "coco_polygon_outside":
            case = "IMG0000002"  # 48 x 32 film; this polygon is right of and below it
            _set_polygon(coco, case, box_polygon(60, 40, 70, 50))
            coco_path.write_text(json.dumps(coco))
        elif name == "coco_category_1":
            coco["categories"] = [{"id": 1, "name": "fractured"}]
            for ann in coco["annotations"]:
                ann["category_id"] = 1
            coco_path.write_text(json.dumps(coco))
        cases[name] = {"root": atlas.root, "coco": coco_path, "case": case, "boxes": dict(atlas.boxes)}
    return cases


def _set_polygon(coco: dict, stem: str, polygon: list[float]) -> None:
    image_id = next(im["id"] for im in coco["images"] if im["file_name"] == f"{stem}.jpg")
    for ann in coco["annotations"]:
        if ann["image_id"] == image_id:
            ann["segmentation"] = [polygon]


def _labelme(folder: Path) -> dict:
    """A Labelme JSON with a bone polygon, a fracture polygon and a shape labelled 'tumour'."""
    folder.mkdir(parents=True, exist_ok=True)
    film = save_image(folder / "lm001.jpg", draw_film())

    def shape(label, x0, y0, x1, y1):
        return {"label": label, "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "group_id": None,
                "shape_type": "polygon", "flags": {}}

    doc = {"version": "5.4.1", "flags": {}, "imagePath": "lm001.jpg", "imageData": None, "imageWidth": FILM_W,
           "imageHeight": FILM_H,
           "shapes": [shape("bone", 4, 22, 40, 30), shape("fracture", 10, 24, 14, 28), shape("tumour", 2, 2, 6, 6)]}
    path = folder / "lm001.json"
    path.write_text(json.dumps(doc))
    return {"folder": folder, "json": path, "film": film, "id": "lm001"}


def make_bad_inputs(out_dir: str | Path, *, huge: bool = False) -> dict[str, Path | dict]:
    """Write the corpus under ``out_dir`` (created; files of the same names replaced).

    Returns:
        ``{case: value}``: a Path for a one-file film case (under ``films/``); for the NIfTI
        cases ``{"film", "image", "label", "item"}``; for the other pair cases ``{"image", "label",
        "item"}``; ``{"datalist", "items", "missing"}`` for the missing files; ``{"root", "coco",
        "case", "boxes"}`` for the COCO cases; ``{"folder", "json", "film", "id"}`` for Labelme;
        ``huge_6000`` a Path when ``huge``. Three more keys hold the folders: ``_films``,
        ``_dataset`` and ``_atlas`` (``{"root", "ids", "files"}``: the FracAtlas layout holding the
        JPG/PNG film cases, their case ids, and their paths in it).
    """
    out = Path(out_dir)
    films = _films(out / "films")
    cases: dict[str, Path | dict] = dict(films)
    dataset = _dataset(out / "dataset")
    for name, value in dataset.items():
        cases[name] = {"film": films[name], **value} if name in OTHER_FILMS else value
    cases.update(_coco_atlases(out / "atlas"))
    cases["labelme_unknown_label"] = _labelme(out / "labelme")
    if huge:
        cases["huge_6000"] = make_huge_film(out / "huge" / f"huge_{HUGE_SIDE}x{HUGE_SIDE}.jpg")
    cases["_films"] = out / "films"
    cases["_dataset"] = out / "dataset"
    cases["_atlas"] = _atlas_with_films(out / "atlas" / "films", films)
    return cases


def write_manifest(out_dir: str | Path, cases: dict) -> Path:
    """``manifest.json`` beside the corpus: each case, what it is, and where."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    manifest = {name: {"what": DESCRIPTION.get(name, ""), "where": plain(value)} for name, value in cases.items()}
    path = Path(out_dir) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
