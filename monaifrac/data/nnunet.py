"""A prepared dataset → a raw nnU-Net v2 dataset (``monaifrac export-nnunet``), same films, same split.

Output layout (``OUT/Dataset<ID>_<NAME>/``, e.g. ``Dataset501_Fracture``; ``OUT`` is meant to be
``$nnUNet_raw``)::

    imagesTr/<id>_0000.png   one grey channel, (H, W): rows are the film's height, the film as
                             displayed (EXIF applied), exactly the pixels ``monaifrac prepare`` stored
    labelsTr/<id>.png        uint8 label map of the same (H, W): 0 background, 1 bone, 2 fracture
    imagesTs/<id>_0000.png   the films of the datalist's ``test`` section (no labels: nnU-Net never
                             reads test labels; score predictions with ``monaifrac score``)
    dataset.json             nnU-Net v2 metadata (below)
    splits_final.json        the folds, as nnU-Net's trainer reads them (below)

``imagesTr`` holds the ``training`` *and* ``validation`` sections: nnU-Net validates on cases of
its training folder, chosen by ``splits_final.json``.

Frame. A prepared NIfTI is stored in MONAI's (W, H) frame; :func:`monaifrac.io.from_monai_frame`
turns it back into the (H, W) row-major frame of the displayed film, which is what a PNG stores
and what nnU-Net's ``NaturalImage2DIO`` reads. A PNG written here therefore has the width and
height of the film as shown in a viewer, and a prediction nnU-Net writes for it can be scored by
``monaifrac score`` against the prepared folder as it is.

Intensities (lossless; pixels are unitless grey levels, 1 pixel spacing):

* a uint8 film (every JPG) → 8-bit grey PNG, values unchanged;
* any other film whose values are all integers in 0..65535 → 16-bit grey PNG, values unchanged;
* anything else (negative, larger or fractional values) → rescaled linearly, its minimum to 0 and
  its maximum to 65535, as a 16-bit PNG; such films are listed under ``rescaled`` in the
  returned summary and in ``dataset.json``. nnU-Net z-scores every film on its own, which a linear
  rescaling leaves unchanged but for rounding.

``dataset.json``: ``channel_names`` ``{"0": "zscore"}`` (nnU-Net picks the normalisation from the
channel name; ``zscore``, per-film z-scoring, is its scheme for non-CT images and is spelled the
same in every nnU-Net v2 release), ``labels`` ``{"background": 0, "bone": 1, "fracture": 2}``,
``numTraining`` (= the files in ``imagesTr``), ``file_ending`` ``".png"``,
``overwrite_image_reader_writer`` ``"NaturalImage2DIO"``, and, ignored by nnU-Net, ``name``,
``description``, ``converted_by`` and ``monaifrac`` (source folder, fold meaning, rescaled films).

``splits_final.json``: a list of ``{"train": [ids], "val": [ids]}``, nnU-Net fold ``k`` at index ``k``:

* fold 0: the official split, what the bundle trains with ``fold = -1``: train on every
  ``training`` case, validate on every ``validation`` case;
* fold ``k + 1`` (when the training cases carry at least two folds 0..K-1): monaifrac's
  cross-validation fold ``k`` (``monaifrac train --fold k``, ``monaifrac cv``): train on the
  ``training`` cases whose fold is not ``k``, validate on those whose fold is ``k``;
  ``validation`` cases take no part, exactly as in :func:`monaifrac.datalist.load_split`.

So every ``imagesTr`` case is validated on in exactly one fold: a ``validation`` case in fold 0,
a ``training`` case in the fold of its ``fold`` index. (A ``training`` case with fold -1 is then
never validated on; ``prepare`` writes none.)

nnU-Net reads ``splits_final.json`` from ``$nnUNet_preprocessed/Dataset<ID>_<NAME>/``; recent
releases (2.8.1 checked) copy it there from the raw folder in ``nnUNetv2_plan_and_preprocess``,
older ones need it copied by hand before ``nnUNetv2_train``.

Atomicity. The dataset is written into a hidden temporary folder beside the final one
(``OUT/.Dataset<ID>_<NAME>.partial-*``) and renamed into place only once complete; any error
removes it (and ``OUT`` itself when this run created it), so ``OUT`` never holds a half-written
dataset. A folder of the same name that an earlier export of the same prepared folder wrote is
replaced (old one renamed aside, new one renamed in, old one removed); any other dataset already
in ``OUT`` under that name or id is an error, never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from monaifrac.data.cases import DataError
from monaifrac.io import InputError, from_monai_frame, read_nifti, suffix_of, write_json, write_png

DATALIST_NAME = "datalist.json"
CHANNEL = "_0000"
FILE_ENDING = ".png"
LABELS = {"background": 0, "bone": 1, "fracture": 2}
CHANNEL_NAMES = {"0": "zscore"}
READER_WRITER = "NaturalImage2DIO"
SPLITS_NAME = "splits_final.json"
MARKER_KEY = "monaifrac"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
UINT16_MAX = 65535


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<ID>_<NAME>`` as nnU-Net spells it (three-digit id, 1..999).

    Raises:
        DataError: an id outside 1..999 or a name nnU-Net cannot use in a folder name.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise DataError(f"nnU-Net dataset id must be an integer in 1..999 (custom datasets: 500..999), "
                        f"got {dataset_id!r}")
    if not NAME_PATTERN.fullmatch(name or ""):
        raise DataError(f"nnU-Net dataset name must be letters, digits, '_' or '-' (e.g. Fracture), got {name!r}")
    return f"Dataset{dataset_id:03d}_{name}"


# ----------------------------------------------------------------------------- reading the datalist


def _case_id(item: dict, path: Path, where: str) -> str:
    image = str(item["image"])
    stem = Path(image).name
    suffix = suffix_of(image)
    stem = stem[: -len(suffix)] if suffix and stem.lower().endswith(suffix) else stem
    case = str(item.get("id") or stem)
    if case.startswith(".") or any(c in case for c in "/\\") or any(ord(c) < 32 for c in case):
        raise InputError(path, f"{where}: id {case!r} cannot name an nnU-Net file")
    return case


def load_datalist(prepared_dir: Path) -> dict[str, list[dict]]:
    """The sections of ``prepared_dir/datalist.json``, each item with ``case`` (its nnU-Net
    identifier) and absolute ``image``/``label`` paths added.

    Raises:
        InputError: naming ``datalist.json``: missing, not JSON, no ``training`` list, an item
            without ``image`` (or without ``label`` in ``training``/``validation``), a bad fold,
            or an id used twice.
    """
    path = prepared_dir / DATALIST_NAME
    if not path.is_file():
        raise InputError(path, f"not found; run `monaifrac prepare FRACATLAS_DIR --out {prepared_dir}` first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read the datalist: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("training"), list):
        raise InputError(path, "has no 'training' list; not a datalist written by `monaifrac prepare`")
    sections: dict[str, list[dict]] = {}
    seen: dict[str, str] = {}
    for section in ("training", "validation", "test"):
        items = raw.get(section) or []
        if not isinstance(items, list):
            raise InputError(path, f"'{section}' is not a list")
        sections[section] = []
        for n, item in enumerate(items):
            where = f"item {n} of '{section}'"
            if not isinstance(item, dict) or not item.get("image"):
                raise InputError(path, f"{where} has no 'image'")
            if section != "test" and not item.get("label"):
                raise InputError(path, f"{where} has no 'label' (nnU-Net needs one for every training case)")
            fold = item.get("fold", -1)
            if isinstance(fold, bool) or not isinstance(fold, int) or fold < -1:
                raise InputError(path, f"{where} has fold {fold!r}; expected an integer >= -1")
            case = _case_id(item, path, where)
            if case in seen:
                raise InputError(path, f"id {case} appears twice (in '{seen[case]}' and '{section}')")
            seen[case] = section
            resolved = dict(item, case=case, fold=fold, image=prepared_dir / str(item["image"]))
            if item.get("label"):
                resolved["label"] = prepared_dir / str(item["label"])
            sections[section].append(resolved)
    if not sections["training"]:
        raise InputError(path, "'training' is empty: nothing for nnU-Net to train on")
    if not sections["validation"]:
        raise InputError(path, "'validation' is empty: nnU-Net fold 0 (the official split) would validate on "
                               "nothing")
    return sections


def build_splits(training: list[dict], validation: list[dict], path: Path | str = DATALIST_NAME) -> list[dict]:
    """nnU-Net's ``splits_final.json`` list (see the module docstring): fold 0 the official split,
    fold k + 1 monaifrac's cross-validation fold k.

    Raises:
        InputError: naming ``path``, when the training folds are not 0..K-1.
    """
    train_ids = sorted(d["case"] for d in training)
    splits = [{"train": train_ids, "val": sorted(d["case"] for d in validation)}]
    folds = sorted({d["fold"] for d in training if d["fold"] >= 0})
    if folds and folds != list(range(len(folds))):
        raise InputError(path, f"training folds {folds} are not 0..{len(folds) - 1}")
    if len(folds) >= 2:
        for k in folds:
            splits.append({"train": sorted(d["case"] for d in training if d["fold"] != k),
                           "val": sorted(d["case"] for d in training if d["fold"] == k)})
    return splits


# ----------------------------------------------------------------------------- pixels


def film_png_array(film: np.ndarray) -> tuple[np.ndarray, bool]:
    """The array to store as PNG for a film: ``(uint8 or uint16 array, rescaled?)``.

    uint8 stays uint8; integer values in 0..65535 become uint16 unchanged; anything else is
    rescaled linearly to 0..65535 (``rescaled`` True). ``film`` must be finite and non-empty.
    """
    film = np.asarray(film)
    if film.dtype == np.uint8:
        return film, False
    if np.issubdtype(film.dtype, np.integer) or film.dtype == np.bool_:
        exact = True
    else:
        exact = bool(np.all(film == np.rint(film)))
    lo, hi = film.min(), film.max()
    if exact and lo >= 0 and hi <= UINT16_MAX:
        return film.astype(np.uint16), False
    lo, hi = float(lo), float(hi)
    scaled = (film.astype(np.float64) - lo) * (UINT16_MAX / (hi - lo)) if hi > lo else np.zeros(film.shape)
    return np.rint(scaled).astype(np.uint16), True


def _read_plane(path: Path) -> np.ndarray:
    """A prepared NIfTI as its (H, W) array (displayed frame)."""
    array = read_nifti(path)
    if array.ndim != 2:
        raise InputError(path, f"not a 2D film (array of shape {array.shape})")
    if array.size == 0:
        raise InputError(path, "empty film (no pixels)")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(path, f"{int((~np.isfinite(array)).sum())} non-finite pixel(s) (NaN or inf)")
    return from_monai_frame(array)


def _label_plane(path: Path, image_shape: tuple[int, int]) -> np.ndarray:
    label = _read_plane(path)
    if label.shape != image_shape:
        raise InputError(path, f"label is {label.shape[1]} x {label.shape[0]} (W x H) but its image is "
                               f"{image_shape[1]} x {image_shape[0]}")
    values = np.unique(label)
    bad = [v for v in values.tolist() if v not in LABELS.values()]
    if bad:
        raise InputError(path, f"label values {bad[:5]} outside {{0, 1, 2}}")
    return label.astype(np.uint8)


def _write_case(item: dict, images_dir: Path, labels_dir: Path | None) -> tuple[int, bool]:
    """Write one case's PNG(s); returns (bits of the image PNG, rescaled?)."""
    image = _read_plane(item["image"])
    png, rescaled = film_png_array(image)
    if labels_dir is not None:
        label = _label_plane(item["label"], image.shape)
        write_png(labels_dir / f"{item['case']}{FILE_ENDING}", label)
    write_png(images_dir / f"{item['case']}{CHANNEL}{FILE_ENDING}", png)
    return png.dtype.itemsize * 8, rescaled


# ----------------------------------------------------------------------------- the output folder


def _check_out(out: Path, folder_name: str, dataset_id: int, prepared_dir: Path) -> bool:
    """Whether ``out/folder_name`` exists and may be replaced (an earlier export of ``prepared_dir``).

    Raises:
        InputError: ``out`` is a file, or holds another dataset with this id or under this name.
    """
    if out.exists() and not out.is_dir():
        raise InputError(out, "is a file; the output must be a folder (your nnUNet_raw)")
    if not out.is_dir():
        return False
    prefix = f"Dataset{dataset_id:03d}_"
    for other in sorted(out.glob(f"{prefix}*")):
        if other.name != folder_name:
            raise InputError(other, f"already holds nnU-Net dataset id {dataset_id}; nnU-Net needs ids to be unique "
                                    f"in nnUNet_raw: remove it or pick another --id")
    target = out / folder_name
    if not target.exists():
        return False
    if not target.is_dir():
        raise InputError(target, "exists and is not a folder")
    if not any(target.iterdir()):
        return True
    dataset_json = target / "dataset.json"
    try:
        source = json.loads(dataset_json.read_text(encoding="utf-8"))[MARKER_KEY]["prepared_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        source = None
    if source != str(prepared_dir):
        what = f"an export of {source}" if source else "a dataset that `monaifrac export-nnunet` did not write"
        raise InputError(target, f"already holds {what}, not of {prepared_dir}; remove it or pick another --id/--name")
    return True


def _dataset_json(folder_name: str, prepared_dir: Path, n_training: int, n_folds: int, rescaled: list[str]) -> dict:
    folds = {"0": "official split: train on 'training', validate on 'validation'"}
    folds.update({str(k + 1): f"monaifrac cross-validation fold {k} (`monaifrac train --fold {k}`)"
                  for k in range(n_folds - 1)})
    return {
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(LABELS),
        "numTraining": n_training,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": READER_WRITER,
        "name": folder_name,
        "description": "X-ray fracture and bone segmentation exported by `monaifrac export-nnunet` from a folder "
                       "written by `monaifrac prepare`; films as displayed, one grey channel.",
        "converted_by": "monaifrac export-nnunet",
        MARKER_KEY: {"prepared_dir": str(prepared_dir), "splits_final": folds, "rescaled": rescaled},
    }


def _make_dir_public(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)  # mkdtemp makes 0700


def export_nnunet(prepared_dir: str | Path, out: str | Path, dataset_id: int = 501, name: str = "Fracture") -> dict:
    """Write the raw nnU-Net v2 dataset ``out/Dataset<ID>_<NAME>`` for a prepared folder.

    Args:
        prepared_dir: a folder written by ``monaifrac prepare`` (holds ``datalist.json``).
        out: where the dataset folder goes, normally ``$nnUNet_raw``; created if needed.
        dataset_id: nnU-Net dataset id, 1..999 (custom datasets 500..999).
        name: nnU-Net dataset name.

    Returns:
        a summary: ``dataset_dir``, ``dataset_name``, ``training`` (cases in imagesTr), ``test``
        (cases in imagesTs), ``folds`` (per nnU-Net fold: what it is, train and val counts),
        ``png_bits`` (``{"8": n, "16": m}``), ``rescaled`` (ids), ``replaced`` (an earlier export
        was replaced), ``splits_final`` (its path).

    Raises:
        InputError: a missing or bad ``datalist.json``, an unreadable or inconsistent NIfTI, an
            output folder holding another dataset; the message names the file.
        DataError: a bad id or name.
        OSError: the disk failing us (full, read-only); nothing is left in ``out``.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    prepared_dir = Path(prepared_dir).resolve()
    out = Path(out)
    sections = load_datalist(prepared_dir)
    training_items = sections["training"] + sections["validation"]
    splits = build_splits(sections["training"], sections["validation"], prepared_dir / DATALIST_NAME)
    replace = _check_out(out, folder_name, dataset_id, prepared_dir)

    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder_name}.partial-", dir=out))
    target = out / folder_name
    done = False
    try:
        _make_dir_public(tmp)
        bits = {"8": 0, "16": 0}
        rescaled = []
        for item in training_items:
            n_bits, was_rescaled = _write_case(item, tmp / "imagesTr", tmp / "labelsTr")
            bits[str(n_bits)] += 1
            if was_rescaled:
                rescaled.append(item["case"])
        for item in sections["test"]:
            n_bits, was_rescaled = _write_case(item, tmp / "imagesTs", None)
            bits[str(n_bits)] += 1
            if was_rescaled:
                rescaled.append(item["case"])
        write_json(tmp / "dataset.json", _dataset_json(folder_name, prepared_dir, len(training_items), len(splits),
                                                       sorted(rescaled)))
        write_json(tmp / SPLITS_NAME, splits)
        if replace:
            old = Path(tempfile.mkdtemp(prefix=f".{folder_name}.old-", dir=out))
            os.replace(target, old / folder_name)
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old / folder_name, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        done = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if created_out and not done:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty

    fold_rows = [{"fold": 0, "is": "official split (training vs validation)", "train": len(splits[0]["train"]),
                  "val": len(splits[0]["val"])}]
    fold_rows += [{"fold": k, "is": f"monaifrac cross-validation fold {k - 1}", "train": len(s["train"]),
                   "val": len(s["val"])} for k, s in enumerate(splits) if k > 0]
    return {
        "dataset_dir": str(target),
        "dataset_name": folder_name,
        "training": len(training_items),
        "test": len(sections["test"]),
        "folds": fold_rows,
        "png_bits": bits,
        "rescaled": sorted(rescaled),
        "replaced": replace,
        "splits_final": str(target / SPLITS_NAME),
    }
