"""Ground truth for scoring: the label map of every film of a FracAtlas-layout or prepared folder.

FracAtlas layout: the fracture polygons are rasterised at the film's original size in its
displayed (EXIF) frame, with the reader and rasteriser of the data stage, over the bone
pseudo-label, exactly as ``monaifrac prepare`` builds its labels. Prepared folder: the label
NIfTI files, turned back into the displayed (H, W) frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from monaifrac.data.cases import DataError
from monaifrac.data.fracatlas import BODY_PARTS, is_fracatlas_dir, read_fracatlas
from monaifrac.io import InputError, from_monai_frame, read_nifti, read_radiograph


@dataclass
class TruthFilm:
    """One film of the truth folder; its label map is read on demand by :meth:`label`."""

    id: str
    image: Path
    body_part: str
    split: str | None
    _load: Callable[[], tuple[np.ndarray, np.ndarray]]

    @property
    def body_parts(self) -> list[str]:
        """The parts the film shows (``"hand+shoulder"`` → both), among :data:`BODY_PARTS`."""
        return [p for p in self.body_part.split("+") if p in BODY_PARTS]

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``(image, label)``: the grey film and its 3-class label map, both (H, W)."""
        return self._load()


def _fracatlas_loader(case) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load():
        from monaifrac.data.masks import PolygonError
        from monaifrac.data.prepare import build_label

        # a case prepare would refuse (a 2-point polygon, say) has lost polygons: scoring it would
        # count a fractured film as normal
        fatal = [p for p in case.problems if p.fatal]
        if fatal:
            raise InputError(fatal[0].file, f"film {case.id}: {fatal[0].message}")
        image, _ = read_radiograph(case.image)  # a DICOM film too (pacs-pull --labels)
        try:
            label, _ = build_label(case, image)
        except PolygonError as err:
            raise InputError(case.annotation_file or case.image, f"film {case.id}: {err}") from None
        return image, label

    return load


def _plane(array: np.ndarray, path: Path) -> np.ndarray:
    """The (W, H) array of a prepared NIfTI, without trailing singleton axes ((W, H, 1) from other
    tools); a film one pixel high keeps both of its axes."""
    if array.ndim > 2 and all(n == 1 for n in array.shape[2:]):
        array = array.reshape(array.shape[:2])
    if array.ndim != 2:
        raise InputError(path, f"not a 2D film (array of shape {array.shape})")
    return array


def _prepared_loader(image_path: Path, label_path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load():
        image = from_monai_frame(_plane(read_nifti(image_path), image_path))
        label = _plane(read_nifti(label_path), label_path)
        outside = [v.item() for v in np.unique(label) if v not in (0, 1, 2)]  # NaN too
        if outside:
            raise InputError(label_path, f"label values {outside} outside {{0, 1, 2}}")
        label = from_monai_frame(label)
        if image.shape != label.shape:
            raise InputError(label_path, f"label {label.shape} and image {image.shape} differ in shape")
        return image, label.astype(np.uint8)

    return load


def load_truth(data_dir: str | Path) -> list[TruthFilm]:
    """Every film of ``data_dir`` with its body part and split, sorted by id.

    Args:
        data_dir: a FracAtlas-layout folder (``images/``, ``dataset.csv``, COCO JSON) or a
            folder written by ``monaifrac prepare`` (``datalist.json``).

    Raises:
        DataError: the folder is neither, or its layout is unusable.
    """
    root = Path(data_dir)
    if is_fracatlas_dir(root):
        cases, _ = read_fracatlas(root)
        return [TruthFilm(c.id, Path(c.image), c.body_part, c.official_split, _fracatlas_loader(c)) for c in cases]
    datalist = root / "datalist.json"
    if datalist.is_file():
        import json

        try:
            sections = json.loads(datalist.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{datalist}: not valid JSON ({err})") from None
        films = []
        for section, items in sections.items():
            for item in items if isinstance(items, list) else []:
                image, label = root / item["image"], root / item["label"]
                films.append(TruthFilm(item.get("id") or Path(item["image"]).name.split(".")[0], image,
                                       item.get("body_part", "unknown"), section, _prepared_loader(image, label)))
        return sorted(films, key=lambda f: f.id)
    raise DataError(f"{root}: neither a FracAtlas-layout folder (images/ + dataset.csv) nor a prepared folder "
                    f"(datalist.json)")
