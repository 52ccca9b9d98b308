"""The SEGs of a PACS as training data: ``monaifrac pacs-pull --labels OUT`` writes a FracAtlas-layout folder.

A correction saved in any tool that stores a DICOM Segmentation of a film in the PACS (OHIF,
Slicer, MONAI Label, ``monaifrac infer --dicom seg`` then corrected) is a label: this module finds,
for every DX film (all studies, or one), the SEGs that reference it, reads the newest that can be
a label of it with :func:`monaifrac.dicom.seg_read.read_fracture_label`, and writes what
``monaifrac prepare OUT --out PREPARED`` reads (:mod:`monaifrac.data.fracatlas`)::

    images/Fractured/<SOP Instance UID>.dcm       a film whose SEG marks fracture pixels (the film as retrieved)
    images/Non_fractured/<SOP Instance UID>.dcm   a film whose SEG has a fracture segment with no pixel in it
    Annotations/COCO JSON/COCO_fracture_masks.json   the fracture pixels as COCO polygons, category 0
    dataset.csv                                   image_id, fractured, body-part flags (Body Part Examined)

Decisions
---------
* **A film is a label only where a SEG says something about its fractures**: a fracture segment,
  empty or not. A film without a SEG is not written (nobody said it has no fracture); nor is a
  film whose SEGs have only a bone segment, or cannot be labels of it (each said in one line).
* **The newest SEG wins** (Series Date/Time, else Content, else Instance Creation: :func:`seg_time`),
  the others are named in the report; a newer SEG that cannot be a label of the film is passed over.
* **Fracture only.** The FracAtlas layout carries fracture polygons; ``prepare`` makes bone the Li
  pseudo-label of the film, as for FracAtlas itself, so a SEG's bone segment is not written.
* **Polygons are exact**: the outlines of the fracture mask (``skimage.measure.find_contours`` at
  0.5 on the mask, shifted to COCO's pixel-corner coordinates, collinear vertices dropped by
  ``approximate_polygon`` with tolerance 0) rasterise back (pycocotools, as ``prepare`` does) to
  the same pixels, but for holes in a fracture, which COCO polygons cannot carry: they are filled
  and counted in the report.
* The folder is this pull's: files are written atomically, and a film of an earlier pull into the
  same folder that is no label now is removed from ``images/`` (its file would stay a case).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from monaifrac.dicom.seg_read import FRACTURE, SegLabel, read_fracture_label, seg_time
from monaifrac.dicom.web import DEFAULT_TIMEOUT, Pacs, connect, films_of, instances_of
from monaifrac.errors import InputError
from monaifrac.io import atomic_path

logger = logging.getLogger(__name__)

FRACTURED_DIR, NORMAL_DIR = "Fractured", "Non_fractured"
COCO_RELPATH = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"  # monaifrac.data.fracatlas'
FRACTURE_CATEGORY = 0  # FracAtlas's own id for its one category
# Body Part Examined (DICOM PS3.16 Annex L, as upper-case text) → FracAtlas's body-part columns
BODY_PARTS = {"hand": ("HAND", "FINGER", "THUMB", "WRIST", "FOREARM", "ARM", "ELBOW", "UPRARM", "UPPER ARM"),
              "leg": ("LEG", "LOWER LIMB", "KNEE", "ANKLE", "FOOT", "TOE", "FEMUR", "THIGH", "TIBIA", "FIBULA",
                      "CALCANEUS", "LOWERLEG"),
              "hip": ("HIP", "PELVIS"),
              "shoulder": ("SHOULDER", "CLAVICLE", "SCAPULA")}


@dataclass
class PulledLabels:
    """What :func:`pull_labels` did, for the report and the tests."""

    films: int = 0
    fractured: list = field(default_factory=list)  # SOP instance UIDs
    normal: list = field(default_factory=list)
    without_seg: list = field(default_factory=list)
    not_labels: list = field(default_factory=list)  # (film, why) where SEGs were there but none is a label
    passed_over: list = field(default_factory=list)  # (film, SEG, why): older SEGs, SEGs that cannot be labels
    holes_filled: dict = field(default_factory=dict)  # film → pixels the polygons add to its fracture
    removed: list = field(default_factory=list)  # files of an earlier pull that are no labels now


def body_part_flags(film) -> dict:
    """FracAtlas's 0/1 body-part columns from the film's Body Part Examined (all 0 when it names none)."""
    part = str(film.get("BodyPartExamined", "") or "").upper().strip()
    return {name: int(any(word in part for word in words)) for name, words in BODY_PARTS.items()}


def fracture_polygons(mask: np.ndarray) -> tuple[list[list[float]], int]:
    """COCO polygons (flat ``[x1, y1, ...]``, pixel-corner coordinates) of a (H, W) bool mask.

    Returns:
        ``(polygons, added)``: ``added`` is the number of pixels the polygons cover beyond the mask
        (holes, which a union of polygons cannot leave out), checked by rasterising them back.
    """
    from skimage import measure

    from monaifrac.data.masks import rasterize_polygons

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return [], 0
    polygons = []
    # padded: an outline along the film's edge closes; 8-connected pixels share one outline
    for contour in measure.find_contours(np.pad(mask, 1).astype(np.uint8), 0.5, fully_connected="high"):
        contour = measure.approximate_polygon(contour, tolerance=0)
        # (row, column) of pixel centres in the padded mask → (x, y) of pixel corners in the film
        xy = np.stack([contour[:, 1] - 0.5, contour[:, 0] - 0.5], axis=1)
        if len(xy) >= 3:
            polygons.append([round(float(v), 2) for v in xy.ravel()])
    back, _stats = rasterize_polygons(polygons, *mask.shape)
    missing = int((mask & ~back).sum())
    if missing:  # pragma: no cover - the outlines above always cover the mask; a change that breaks that must say so
        raise AssertionError(f"fracture polygons miss {missing} pixel(s) of the mask")
    return polygons, int((back & ~mask).sum())


def _segs_by_film(pacs: Pacs, study: str | None, films: set) -> dict[str, list]:
    """film SOP instance UID → the SEG instances (pydicom datasets) referencing it, of the PACS (or ``study``)."""
    by_film: dict[str, list] = {}
    for study_uid, series_uid, sop_uid in instances_of(pacs, study, ("SEG",)):
        with pacs.errors(f"retrieve SEG instance {sop_uid}"):
            seg = pacs.client.retrieve_instance(study_uid, series_uid, sop_uid)
        referenced = {str(instance.get("ReferencedSOPInstanceUID", ""))
                      for series in seg.get("ReferencedSeriesSequence", []) or []
                      for instance in series.get("ReferencedInstanceSequence", []) or []}
        for film in referenced & films:
            by_film.setdefault(film, []).append(seg)
    return by_film


def _newest_label(film, segs: list, result: PulledLabels) -> SegLabel | None:
    """The label of the newest SEG of ``segs`` that can be one of ``film``; the rest noted in ``result``."""
    sop = str(film.SOPInstanceUID)
    ordered = sorted(segs, key=lambda s: (seg_time(s), str(s.get("SOPInstanceUID", ""))), reverse=True)
    chosen = None
    for seg in ordered:
        name = f"SEG {seg.get('SOPInstanceUID', '?')} ({seg.get('Manufacturer', '') or 'no manufacturer'}, " \
               f"{seg_time(seg) or 'undated'})"
        if chosen is not None:
            result.passed_over.append((sop, name, f"older than {chosen.sop_uid}"))
            continue
        try:
            chosen = read_fracture_label(seg, film, name=name)
        except InputError as err:
            result.passed_over.append((sop, name, err.problem))
    if chosen is None:
        result.not_labels.append((sop, f"{len(segs)} SEG(s), none a label of it"))
    return chosen


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _dicom_bytes(ds) -> bytes:
    from monaifrac.dicom.seg import save_dataset

    buffer = io.BytesIO()
    save_dataset(ds, buffer)
    return buffer.getvalue()


def pull_labels(url: str, labels_dir: os.PathLike | str, study: str | None = None,
                modalities: tuple[str, ...] = ("DX",), user: str | None = None, password: str | None = None,
                timeout: float = DEFAULT_TIMEOUT, films_dir: os.PathLike | str | None = None,
                report: Callable[[str], None] | None = None) -> PulledLabels:
    """Write the FracAtlas-layout folder of the PACS's labelled films (module docstring) in ``labels_dir``.

    Args:
        url, study, modalities, user, password, timeout: as for :func:`monaifrac.dicom.web.pull`.
        films_dir: also write every film retrieved there as ``<SOP Instance UID>.dcm`` (``--out``).
        report: gets one line per film written and per SEG passed over.

    Raises:
        PacsError: the PACS could not be used (files already written stay, each complete).
    """
    say = report or (lambda line: None)
    pacs = connect(url, user, password, timeout)
    out = Path(labels_dir)
    if films_dir is not None:
        for ds in films_of(pacs, study, modalities):
            path = Path(films_dir) / f"{ds.SOPInstanceUID}.dcm"
            _write_bytes(path, _dicom_bytes(ds))
            say(f"wrote {path} ({ds.get('Modality', '?')}, {ds.get('Rows')} x {ds.get('Columns')})")
    films = {sop: (study_uid, series_uid) for study_uid, series_uid, sop in instances_of(pacs, study, modalities)}
    segs = _segs_by_film(pacs, study, set(films))
    result = PulledLabels(films=len(films))
    rows, coco_images, coco_annotations = [], [], []
    kept = set()
    for sop, (study_uid, series_uid) in films.items():
        if sop not in segs:
            result.without_seg.append(sop)
            continue
        # one film in memory at a time: a PACS's films do not fit in it together
        with pacs.errors(f"retrieve instance {sop}"):
            film = pacs.client.retrieve_instance(study_uid, series_uid, sop)
        label = _newest_label(film, segs[sop], result)
        if label is None:
            continue
        fracture = label.label == FRACTURE
        polygons, added = fracture_polygons(fracture)
        fractured = bool(polygons)
        folder = FRACTURED_DIR if fractured else NORMAL_DIR
        path = out / "images" / folder / f"{sop}.dcm"
        _write_bytes(path, _dicom_bytes(film))
        other = out / "images" / (NORMAL_DIR if fractured else FRACTURED_DIR) / f"{sop}.dcm"
        if other.exists():  # an earlier pull's call of the same film
            other.unlink()
        kept.add(path)
        (result.fractured if fractured else result.normal).append(sop)
        if added:
            result.holes_filled[sop] = added
        rows.append({"image_id": path.name, "fractured": int(fractured), **body_part_flags(film)})
        if fractured:
            image_id = len(coco_images)
            coco_images.append({"id": image_id, "file_name": path.name, "width": int(film.Columns),
                                "height": int(film.Rows)})
            for polygon in polygons:
                xs, ys = polygon[0::2], polygon[1::2]
                coco_annotations.append({"id": len(coco_annotations), "image_id": image_id,
                                         "category_id": FRACTURE_CATEGORY, "segmentation": [polygon], "iscrowd": 0,
                                         "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
        say(f"wrote {path} ({'fracture: ' + str(int(fracture.sum())) + ' pixel(s)' if fractured else 'no fracture'}"
            f", from SEG {label.sop_uid} of {label.when or 'no date'}"
            f"{'; segments recognised by their labels' if label.by_text else ''})")
    for sop, name, why in result.passed_over:
        say(f"film {sop}: {name} passed over: {why}")
    for sop, why in result.not_labels:
        say(f"film {sop}: not a label ({why})")
    for sop, added in result.holes_filled.items():
        say(f"film {sop}: holes of {added} pixel(s) in its fracture filled (COCO polygons carry no holes)")
    if result.without_seg:
        say(f"{len(result.without_seg)} film(s) have no SEG referencing them: not labels (a film is a label where "
            "a SEG says where its fractures are, or that it has none)")
    for folder in (FRACTURED_DIR, NORMAL_DIR):
        for stale in sorted((out / "images" / folder).glob("*.dcm")):
            if stale not in kept:
                stale.unlink()
                result.removed.append(str(stale))
                say(f"removed {stale}: no label in this pull")
    _write_table(out / "dataset.csv", rows)
    categories = [{"id": FRACTURE_CATEGORY, "name": "fractured", "supercategory": "fracture"}]
    _write_bytes(out / COCO_RELPATH, json.dumps({"images": coco_images, "annotations": coco_annotations,
                                                 "categories": categories}).encode())
    return result


def _write_table(path: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["image_id", "fractured", *BODY_PARTS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["image_id"]))  # the same PACS, the same file
    _write_bytes(path, text.getvalue().encode())


__all__ = ("PulledLabels", "body_part_flags", "fracture_polygons", "pull_labels")
