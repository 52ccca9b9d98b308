"""A film's result as DICOM objects of its own study: which kinds, built and written together.

Three kinds, each a new series of the film's study that references the film:

==== =============== ======================================================= =================================
kind file            object                                                  what shows it
==== =============== ======================================================= =================================
sr   <stem>.sr.dcm   Structured Report (TID 1500): the score, the call, the  OHIF, Slicer, PACS report views
                     fracture regions as polylines (:mod:`monaifrac.dicom.sr`)
sc   <stem>.sc.dcm   Secondary Capture: the film, fractures outlined, a      every viewer that shows images
                     banner (:mod:`monaifrac.dicom.sc`)
seg  <stem>.seg.dcm  Segmentation, pixel-exact bone and fracture             highdicom, Slicer (QuantitativeReporting);
                     (:mod:`monaifrac.dicom.seg`)                            OHIF 3.10 fails on a projection SEG
==== =============== ======================================================= =================================

:data:`DEFAULT_KINDS` are the objects that break no viewer (``sr,sc``); ``seg`` is opt-in (see
:mod:`monaifrac.dicom.seg` for why OHIF cannot show it). ``monaifrac infer --dicom sr,sc,seg``
sets ``save_dicom`` in ``inference.json``; ``--dicom-seg`` (``save_dicom_seg``) is kept and means
``seg`` on top of whatever ``--dicom`` names.

:func:`write_results` builds every kind first, in memory, and only then writes each file
atomically (a temporary name, then ``os.replace``): a kind that cannot be built (a header a
builder refuses) is logged in one line naming the film and the kind, and the others are
written all the same.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monaifrac.io import InputError, atomic_path, film_stem, from_monai_frame, is_dicom_file

logger = logging.getLogger(__name__)

KINDS = ("sr", "sc", "seg")
DEFAULT_KINDS = ("sr", "sc")
SUFFIXES = {"sr": ".sr.dcm", "sc": ".sc.dcm", "seg": ".seg.dcm"}
# what a builder raises on a header it cannot use (highdicom's refusals are ValueError/AttributeError/TypeError)
BUILD_ERRORS = (InputError, ValueError, AttributeError, TypeError, KeyError)


def parse_kinds(kinds: str | Iterable[str] | None, seg: bool = False) -> tuple[str, ...]:
    """The kinds named by ``kinds`` (``"sr,sc"``, a list, ``""``/``"none"``/None for none), plus ``seg``
    when ``seg`` is true (``--dicom-seg``), in :data:`KINDS` order, each once.

    Raises:
        ValueError: a name that is not one of :data:`KINDS`.
    """
    if kinds is None or kinds is False:
        names: list[str] = []
    elif isinstance(kinds, str):
        names = [k.strip().lower() for k in kinds.split(",") if k.strip()]
    else:
        names = [str(k).strip().lower() for k in kinds]
    names = [k for k in names if k != "none"]
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown DICOM result kind(s) {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    if seg and str(seg).lower() not in ("false", "0", "none"):
        names.append("seg")
    return tuple(k for k in KINDS if k in names)


def _builders() -> dict[str, Callable]:
    """kind -> ``build(film, label_hw, score, threshold) -> Dataset``, each module imported when used."""

    def sr(film, label_hw, score, threshold):
        from monaifrac.dicom.sr import build_report

        return build_report(film, label_hw, score, threshold)

    def sc(film, label_hw, score, threshold):
        from monaifrac.dicom.sc import build_capture

        return build_capture(film, label_hw, score, threshold)

    def seg(film, label_hw, score, threshold):
        from monaifrac.dicom.seg import make_segmentation

        return make_segmentation(film, label_hw, score, threshold)

    return {"sr": sr, "sc": sc, "seg": seg}


def build_results(film, label_hw: np.ndarray, score: float | None, threshold: float, kinds: Iterable[str],
                  name: str = "") -> dict:
    """``{kind: Dataset}`` for each of ``kinds`` that could be built; a refusal is one logged error line.

    Args:
        film: the film's :class:`pydicom.Dataset` with its pixels (the SC draws on them).
        label_hw: (Rows, Columns) uint8 label map in the film's stored pixel frame, values {0, 1, 2}.
        score: the film's fracture score in [0, 1], or None. threshold: the presence threshold.
        kinds: a subset of :data:`KINDS`. name: the film's name for log lines.
    """
    builders = _builders()
    built = {}
    for kind in kinds:
        try:
            built[kind] = builders[kind](film, label_hw, score, threshold)
        except ImportError as err:  # e.g. a build without monaifrac.dicom.sr
            logger.error("no DICOM %s for %s: %s", kind.upper(), name or film.get("SOPInstanceUID"), err)
        except BUILD_ERRORS as err:
            logger.error("no DICOM %s for %s: %s", kind.upper(), name or film.get("SOPInstanceUID"),
                         " ".join(str(err).split()))
    return built


def write_results(output_dir: os.PathLike | str, stem: str, built: Mapping[str, object]) -> dict[str, Path]:
    """Write each built object to ``output_dir/<stem><suffix>`` atomically; ``{kind: path}`` in :data:`KINDS` order."""
    from monaifrac.dicom.seg import save_dataset

    written = {}
    for kind in KINDS:
        if kind in built:
            path = Path(output_dir) / f"{stem}{SUFFIXES[kind]}"
            with atomic_path(path) as tmp:
                save_dataset(built[kind], tmp)
            written[kind] = path
    return written


def pin_uids(ds, film_sop_uid: str, kind: str, model: str) -> None:
    """Give ``ds`` (a built object of ``kind``) Series and SOP Instance UIDs derived from the film's SOP
    Instance UID, the kind and ``model`` (e.g. the weights' hash), in place.

    The same film labelled by the same model twice (a watcher restarted after storing and before
    recording it) then yields the same instances, which a PACS keeps once; another model, other UIDs.
    """
    from pydicom.uid import generate_uid

    sources = ["monaifrac result", str(model), str(film_sop_uid), str(kind)]
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=sources + ["series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=sources + ["instance"])
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def read_film(path: os.PathLike | str):
    """The DICOM film at ``path`` with its pixels, or None for a file that is not DICOM.

    Raises:
        InputError: a DICOM file pydicom cannot read.
    """
    import pydicom

    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path)
    except MemoryError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot read the DICOM film: {' '.join(str(err).split())}") from None


class SaveDicomResults:
    """Write the chosen kinds of DICOM result of one film beside its label map (see the module docstring).

    Args:
        output_dir: folder of the objects (the label maps' folder).
        kinds: which objects (:func:`parse_kinds`), default :data:`DEFAULT_KINDS`.
        threshold: the bundle's ``presence_threshold``, for the call.

    ``__call__(label, source, score)``: label (1, W, H) or (W, H) in the MONAI frame, values
    {0, 1, 2}; source the film's path; score its ``fracture_score`` or None. Returns ``{kind:
    path}`` written, empty for a film that is not DICOM (a JPG: nothing to refer to).
    """

    def __init__(self, output_dir: str | Path, kinds: str | Iterable[str] | None = DEFAULT_KINDS,
                 threshold: float = 0.5):
        self.output_dir = Path(output_dir)
        self.kinds = parse_kinds(kinds)
        self.threshold = float(threshold)

    def __call__(self, label, source, score: float | None = None) -> dict[str, Path]:
        if not self.kinds:
            return {}
        film = read_film(source)
        if film is None:
            return {}
        lab = np.asarray(label.detach().cpu() if hasattr(label, "detach") else label)
        lab = from_monai_frame(lab[0] if lab.ndim == 3 else lab).astype(np.uint8)
        built = build_results(film, lab, score, self.threshold, self.kinds, name=str(source))
        return write_results(self.output_dir, film_stem(source), built)


class SaveDicomResultsd(MapTransform):
    """Dictionary form of :class:`SaveDicomResults` (``inference.json``'s postprocessing): the label map
    under ``keys``, the film's path from the ``filename_or_obj`` metadata of ``image_key``, the score
    from ``score_key``. ``kinds`` as :func:`parse_kinds` reads it, with ``seg`` added when ``seg`` is
    true (``save_dicom_seg``, the older switch). The paths written go under ``written_key``.

    A film that cannot be read or whose objects cannot be built is logged (one line naming the
    film and the problem) and the run goes on: its label map is written all the same.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | Path = "./",
                 kinds: str | Iterable[str] | None = DEFAULT_KINDS, seg: bool = False, threshold: float = 0.5,
                 score_key: str = "fracture_score", written_key: str = "dicom_results",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.score_key, self.written_key = image_key, score_key, written_key
        self.saver = SaveDicomResults(output_dir, parse_kinds(kinds, seg=seg), threshold)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        meta = getattr(d.get(self.image_key), "meta", {}) or {}
        source = meta.get("filename_or_obj")
        if source is None or not self.saver.kinds:
            return d
        source = source[0] if isinstance(source, (list, tuple)) else source
        score = d.get(self.score_key)
        for key in self.key_iterator(d):
            try:
                d[self.written_key] = self.saver(d[key], source, None if score is None else float(score))
            except InputError as err:
                logger.error("no DICOM result: %s", err)
        return d


def enabled(kinds: str | Iterable[str] | None, seg: bool = False) -> bool:
    """Whether ``inference.json``'s DICOM writer runs: any kind named, or ``save_dicom_seg``."""
    return bool(parse_kinds(kinds, seg=seg))


__all__ = ("DEFAULT_KINDS", "KINDS", "SUFFIXES", "SaveDicomResults", "SaveDicomResultsd", "build_results",
           "enabled", "parse_kinds", "pin_uids", "read_film", "write_results")
