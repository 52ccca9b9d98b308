"""Cases → prepared dataset: NIfTI image + 3-class label per film, ``datalist.json``, a report.

Output layout (``OUT_DIR``)::

    images/<id>.nii.gz        grey film, MONAI (W, H) frame, source dtype (uint8 for JPG)
    labels/<id>.nii.gz        uint8 label map, same shape and affine: 0 background, 1 bone, 2 fracture
    datalist.json             Decathlon style: {"training": [...], "validation": [...], "test": [...]}
    prepare_report.json       counts, skipped cases, warnings, polygon and fracture-size statistics

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written file, and running again over the same ``OUT_DIR`` simply replaces it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from monaifrac.data.cases import ON_ERROR_CHOICES, Case, DataError, Problem
from monaifrac.data.masks import BONE, FRACTURE, PolygonError, RasterStats, bone_pseudo_label, compose_label, \
    rasterize_polygons
from monaifrac.data.splits import DATALIST_SECTIONS, NO_FOLD, assign_folds, assign_sections
from monaifrac.io import InputError, read_radiograph, remove_temporaries, to_monai_frame, write_json, write_nifti

IMAGE_DIR, LABEL_DIR = "images", "labels"
DATALIST_NAME, REPORT_NAME = "datalist.json", "prepare_report.json"


def build_label(case: Case, image: np.ndarray) -> tuple[np.ndarray, RasterStats]:
    """The 3-class label map of a case, (H, W) uint8 in the film's displayed frame: fracture
    polygons rasterised at the film's own size over bone (annotated polygons, else the Li
    pseudo-label of ``image``).

    Raises:
        PolygonError: a polygon that cannot be rasterised, or one that covers no pixel of the film
            (all its vertices outside it: drawn for another film, or in the stored frame).
    """
    height, width = image.shape
    fracture, stats = rasterize_polygons(case.polygons.get(FRACTURE, []), height, width)
    if case.bone_annotated:
        bone, bone_stats = rasterize_polygons(case.polygons.get(BONE, []), height, width)
        stats += bone_stats
    else:
        bone = bone_pseudo_label(image)
    if stats.nonempty < stats.polygons:  # only a polygon with no vertex on the film stays empty
        raise PolygonError(f"{stats.polygons - stats.nonempty} polygon(s) cover no pixel of the {width}x{height} "
                           f"film (every vertex outside it)")
    return compose_label(bone, fracture), stats


def prepare_case(case: Case, out_dir: Path, skip_truncated: bool = False) -> dict:
    """Read one film, build its label map and write both NIfTI files.

    Returns:
        a result dict: ``{"id", "shape", "fracture_pixels", "bone_pixels", "raster": RasterStats,
        "warnings": [...]}``, or ``{"id", "error": Problem}`` when the case cannot be used.
    """
    try:
        image, info = read_radiograph(case.image)  # a JPG/PNG, or a DICOM film (pacs-pull --labels)
    except InputError as err:
        return {"id": case.id, "error": Problem(err.path, err.problem, case.id)}
    if info.truncated and skip_truncated:
        return {"id": case.id, "error": Problem(str(case.image), "truncated file (its last bytes are missing)",
                                               case.id)}
    height, width = image.shape
    if case.expected_size and tuple(case.expected_size) != (width, height):
        w, h = case.expected_size
        return {"id": case.id, "error": Problem(case.annotation_file or str(case.image),
                                               f"annotation is for a {w}x{h} film, but the film is {width}x{height} "
                                               f"after EXIF orientation {info.exif_orientation}", case.id)}
    try:
        label, stats = build_label(case, image)
    except PolygonError as err:
        return {"id": case.id, "error": Problem(case.annotation_file or str(case.image), str(err), case.id)}
    write_nifti(out_dir / IMAGE_DIR / f"{case.id}.nii.gz", to_monai_frame(image))
    write_nifti(out_dir / LABEL_DIR / f"{case.id}.nii.gz", to_monai_frame(label))
    warnings = [Problem(str(case.image), w, case.id, fatal=False) for w in info.warnings]
    if stats.clipped:
        warnings.append(Problem(case.annotation_file or str(case.image),
                                f"{stats.clipped} polygon(s) reach outside the film; clipped to it", case.id, False))
    if stats.enlarged:
        warnings.append(Problem(case.annotation_file or str(case.image),
                                f"{stats.enlarged} polygon(s) thinner than a pixel; their vertex pixels marked",
                                case.id, False))
    counts = np.bincount(label.ravel(), minlength=3)
    return {
        "id": case.id,
        "shape": [width, height],
        "fracture_pixels": int(counts[FRACTURE]),
        "bone_pixels": int(counts[BONE]),
        "label_values": sorted(int(v) for v in np.flatnonzero(counts)),
        "exif_orientation": info.exif_orientation,
        "raster": stats,
        "warnings": warnings,
    }


def _prepare_case_star(args):
    return prepare_case(*args)


def _results(cases: list[Case], out_dir: Path, skip_truncated: bool, workers: int) -> Iterable[dict]:
    tasks = [(c, out_dir, skip_truncated) for c in cases]
    if workers <= 1 or len(cases) < 8:
        yield from map(_prepare_case_star, tasks)
        return
    # fork keeps start-up cheap: the workers inherit the imported libraries.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(workers)
    try:
        yield from pool.imap(_prepare_case_star, tasks, chunksize=4)
    except BaseException:
        # one case failed (or the caller stopped): the other workers are killed wherever they are,
        # possibly inside a write, where atomic_path's cleanup cannot run; sweep up after them
        pool.terminate()
        pool.join()
        for sub in ("images", "labels"):
            remove_temporaries(out_dir / sub)
        raise
    pool.close()
    pool.join()


def prepare_cases(cases: list[Case], problems: list[Problem], out_dir: Path | str, *, folds: int = 5,
                  seed: int = 0, on_error: str = "fail", workers: int | None = None, progress: bool = True,
                  source: str = "") -> dict:
    """Write the prepared dataset for ``cases`` (see the module docstring) and return the report.

    Args:
        cases, problems: what a source reader returned.
        out_dir: where to write; created if needed, files in it replaced.
        folds: number of cross-validation folds over ``training``.
        seed: seed of the placement of films without an official split, and of the folds.
        on_error: ``fail`` stops at the first problem and names the file (a truncated JPG is
            recovered with a warning, as it decodes but for its tail); ``skip`` leaves the
            case out (truncated JPGs too) and lists it in the report.
        workers: processes; defaults to the CPUs available.
        progress: show a tqdm bar.

    Raises:
        DataError: under ``fail``, for the first problem found.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[Problem] = []
    warnings: list[Problem] = [p for p in problems if not p.fatal]
    for p in problems:
        if p.fatal:
            if on_error == "fail":
                raise DataError(str(p))
            skipped.append(p)
    usable: list[Case] = []
    for case in cases:
        fatal = [p for p in case.problems if p.fatal]
        warnings += [p for p in case.problems if not p.fatal]
        if fatal and on_error == "fail":
            raise DataError(str(fatal[0]))
        if fatal:
            skipped.append(fatal[0])
        else:
            usable.append(case)

    workers = workers or available_cpus()
    results: dict[str, dict] = {}
    iterator = _results(usable, out_dir, on_error == "skip", workers)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(usable), desc="prepare", unit="film")
    for result in iterator:
        if "error" in result:
            if on_error == "fail":
                raise DataError(str(result["error"]))
            skipped.append(result["error"])
            continue
        warnings += result.pop("warnings")
        results[result["id"]] = result

    by_id = {c.id: c for c in usable if c.id in results}
    fractions = {i: r["fracture_pixels"] / (r["shape"][0] * r["shape"][1]) for i, r in results.items()}
    datalist = build_datalist(by_id, folds=folds, seed=seed, fracture_fractions=fractions)
    write_json(out_dir / DATALIST_NAME, datalist)
    report = _report(by_id, results, datalist, skipped, warnings, source=source, out_dir=out_dir, folds=folds,
                     seed=seed, on_error=on_error, seconds=time.perf_counter() - start)
    write_json(out_dir / REPORT_NAME, report)
    return report


def build_datalist(cases: dict[str, Case], folds: int, seed: int,
                   fracture_fractions: dict[str, float] | None = None) -> dict[str, list[dict]]:
    """Decathlon-style datalist; paths are relative to the folder of ``datalist.json``.

    ``fracture_fractions`` (id → fraction of the film's pixels labelled fracture, 0 to 1) adds a
    ``fracture_fraction`` to each item: a size that does not depend on the film's resolution, which
    :class:`monaifrac.samplers.FracturedAndNormalsSampler` reads to draw small fractures more often.
    """
    section = assign_sections({i: c.official_split for i, c in cases.items()}, seed)
    training = [i for i in sorted(cases) if section[i] == "training"]
    fold = assign_folds(training, {i: str(cases[i].fractured) for i in training},
                        {i: cases[i].body_part for i in training}, folds, seed) if len(training) >= folds else \
        {i: n % folds for n, i in enumerate(training)}
    datalist: dict[str, list[dict]] = {s: [] for s in DATALIST_SECTIONS}
    for i in sorted(cases):
        c = cases[i]
        datalist[section[i]].append({
            "id": i,
            "image": f"{IMAGE_DIR}/{i}.nii.gz",
            "label": f"{LABEL_DIR}/{i}.nii.gz",
            "fractured": bool(c.fractured),
            "body_part": c.body_part,
            "fold": fold.get(i, NO_FOLD),
        })
        if fracture_fractions is not None and i in fracture_fractions:
            datalist[section[i]][-1]["fracture_fraction"] = round(float(fracture_fractions[i]), 7)
    return datalist


def _report(cases, results, datalist, skipped, warnings, *, source, out_dir, folds, seed, on_error, seconds):
    raster = RasterStats()
    for r in results.values():
        raster += r["raster"]
    fractions = [r["fracture_pixels"] / (r["shape"][0] * r["shape"][1]) for i, r in results.items()
                 if cases[i].fractured]
    n_fractured = sum(bool(c.fractured) for c in cases.values())
    return {
        "source": source,
        "out_dir": str(out_dir),
        "options": {"folds": folds, "seed": seed, "on_error": on_error},
        "cases_written": len(results),
        "fractured": n_fractured,
        "non_fractured": len(results) - n_fractured,
        "fractured_without_fracture_pixels": sorted(i for i, r in results.items()
                                                    if cases[i].fractured and r["fracture_pixels"] == 0),
        "non_fractured_with_fracture_pixels": sorted(i for i, r in results.items()
                                                     if not cases[i].fractured and r["fracture_pixels"] > 0),
        "polygons": {"total": raster.polygons, "nonempty": raster.nonempty, "clipped": raster.clipped,
                     "enlarged": raster.enlarged},
        "label_values": sorted({v for r in results.values() for v in r["label_values"]}),
        "fracture_fraction_of_film": _summary(fractions),
        "bone_fraction_of_film": _summary([r["bone_pixels"] / (r["shape"][0] * r["shape"][1])
                                           for r in results.values()]),
        "exif_rotated": sorted(i for i, r in results.items() if r["exif_orientation"] != 1),
        "sections": {s: len(v) for s, v in datalist.items()},
        "skipped": [p.to_json() for p in skipped],
        "warnings": [p.to_json() for p in warnings],
        "seconds": round(seconds, 2),
        "films_per_second": round(len(results) / seconds, 1) if seconds > 0 else None,
    }


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": len(v), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def read_sources(fracatlas: Path | str | Sequence[Path | str] | None = None, labelme: Path | str | None = None,
                 labelme_map: Path | str | None = None) -> tuple[list[Case], list[Problem], str]:
    """Read FracAtlas folder(s), a Labelme folder, or both (merged by film id).

    Several FracAtlas-layout folders (the main copy and a folder of extra normal films, say)
    are read one after the other; a film id found in two of them is an error naming both files.
    """
    from monaifrac.data.fracatlas import read_fracatlas
    from monaifrac.data.labelme import merge_cases, read_labelme, read_mapping

    folders = [] if fracatlas is None else [fracatlas] if isinstance(fracatlas, (str, Path)) else list(fracatlas)
    if not folders and labelme is None:
        raise DataError("nothing to prepare: give a FracAtlas folder, --labelme DIR, or both")
    cases: list[Case] = []
    problems: list[Problem] = []
    names = []
    seen: dict[str, Case] = {}
    for folder in folders:
        found, found_problems = read_fracatlas(folder)
        for case in found:
            if case.id in seen:
                raise DataError(f"film id {case.id} is in two sources: {seen[case.id].image} and {case.image}")
            seen[case.id] = case
        cases += found
        problems += found_problems
        names.append(str(folder))
    if labelme is not None:
        extra, extra_problems = read_labelme(labelme, read_mapping(labelme_map))
        cases = merge_cases(cases, extra)
        problems += extra_problems
        names.append(f"labelme:{labelme}")
    return sorted(cases, key=lambda c: c.id), problems, " + ".join(names)


def prepare(fracatlas: Path | str | Sequence[Path | str] | None, out_dir: Path | str, *, labelme: Path | str | None = None,
            labelme_map: Path | str | None = None, **options) -> dict:
    """Read the source(s) and write the prepared dataset; ``options`` as for :func:`prepare_cases`."""
    cases, problems, source = read_sources(fracatlas, labelme, labelme_map)
    return prepare_cases(cases, problems, out_dir, source=source, **options)
