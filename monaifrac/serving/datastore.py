"""MONAI Label's DICOMweb datastore, for projection films: a PACS's DX/CR series in, DICOM SEG back.

``scripts/monailabel-serve --dicomweb URL`` starts MONAI Label with ``--studies URL``; the app
(:mod:`monaifrac.serving.app.main`) then builds :class:`FilmDICOMwebDatastore` with
:func:`from_settings` instead of MONAI Label's own ``DICOMWebDatastore``, which

* lists CT series (its default search filter), downloads a series as a folder of instances and
  converts it to NIfTI: a DX film would lose what the bundle's reader knows about it (a single
  frame is a 2D film, MONOCHROME1 is inverted, rows and columns are the displayed ones);
* writes a saved label back as a SEG with dcmqi's ``itkimage2segimage``, a binary it downloads
  from GitHub when it starts: nothing may be downloaded, and dcmqi knows no projection film;
* turns every failure of the PACS into a bare 500 and a traceback, ``/info/`` included.

What this one does
------------------
* **Images are series.** The image id is the film's Series Instance UID. The datastore lists
  the PACS's DX and CR series (two QIDO-RS searches; MONAI Label's search filter adds its other
  keys, a ``Modality`` other than DX/CR is ignored) that hold one instance, a film: a series of
  several films (AP and lateral in one series) has no single image to label and is left out
  of the list, and asked for by id it gets 422.
* **A film is a ``.dcm`` file.** :meth:`get_image_uri` retrieves the series' one instance by
  WADO-RS into the cache (``<cache>/<md5 of the URL>/<series uid>.dcm``, written atomically after
  :func:`monaifrac.io.dicom.check_dicom_film` accepted it) and returns that path; the bundle's
  own reader (:class:`monaifrac.io.RadiographReader`) reads it. No NIfTI conversion.
* **A saved label goes back as a DICOM SEG.** :meth:`save_label` reads the uploaded label (PNG
  in the film's displayed frame, NIfTI in MONAI's x-first frame, or OHIF's raw ``.bin``: Rows x
  Columns bytes, row-major), checks it (the film's Rows x Columns, values 0 background, 1 bone,
  2 fracture), writes it with :func:`monaifrac.dicom.seg.make_segmentation` (SEMIAUTOMATIC:
  monaifrac proposed it, a person corrected it; referencing the film, in its study) and stores
  it by STOW-RS. Only then is the label kept in MONAI Label's local bookkeeping (as
  ``labels/<tag>/<series uid>.png``, what retraining reads). Tags other than ``final`` stay local,
  as in MONAI Label.
* **A SEG in the PACS is a label, whoever wrote it.** A SEG series of the PACS referencing a listed
  film (one WADO-RS metadata request per SEG series, remembered) is read the first time it is
  seen with :func:`monaifrac.dicom.seg_read.read_seg_label` (any tool's: OHIF, Slicer, a script;
  segments by their codes, else their labels) and kept as the film's ``final`` label
  (``labels/final/<series uid>.png``, as a saved label is), so MONAI Label's Train sees it. A SEG
  without a bone segment gets bone as ``monaifrac prepare`` makes it (the Li pseudo-label of the
  film). The newest SEG of a film (Series Date/Time, else Content, else Instance Creation) is its
  label: an older one seen later does not replace it. A SEG that cannot be a label of its film (no
  fracture segment, another size, undecodable) is logged once, in one line, and leaves the film
  unlabelled.
* **Labelled** means: a SEG in the PACS that is a label of the series, or a label was saved here.
* **Errors are answers, not tracebacks.** An id that is not a UID gets 422, a series that is not
  in the PACS or not a DX/CR film 404/422, a bad label 422; a PACS that cannot be reached, refuses
  the credentials or answers an error gets **502**, one that does not answer in time **504**,
  each with the one line of :mod:`monaifrac.dicom.web` naming the URL and the problem. Nothing is
  half-written: a film is written only once retrieved and checked, a label kept only once its SEG
  is stored. ``/info/`` keeps answering with the PACS down: its datastore part says
  ``pacs_error`` (and retries the PACS at most every :data:`STATUS_RETRY_S` seconds).
* **Uploads and removals are refused** (405): the PACS is where films come from and go.

Credentials: MONAI Label's settings ``MONAI_LABEL_DATASTORE_USERNAME``/``_PASSWORD`` (or the
older ``MONAI_LABEL_DICOMWEB_USERNAME``/``_PASSWORD``) when set, else ``MONAIFRAC_PACS_USER`` /
``MONAIFRAC_PACS_PASSWORD`` (:func:`monaifrac.dicom.web.credentials`). Each request has the
timeout ``MONAI_LABEL_DICOMWEB_READ_TIMEOUT`` and :data:`monaifrac.dicom.web.ATTEMPTS` tries.

It runs in MONAI Label's environment only (it imports ``monailabel`` and ``fastapi``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.utils.others.generic import md5_digest

from monaifrac.compat.monailabel import (datastore_objects, image_folder, init_dicomweb_datastore, label_folder,
                                         updating_objects)
from monaifrac.dicom.web import Pacs, PacsError, connect, credentials
from monaifrac.io import InputError, atomic_path, from_monai_frame, read_label_map, read_nifti, suffix_of

logger = logging.getLogger(__name__)

MODALITIES = ("DX", "CR")
STATUS_RETRY_S = 30.0  # /info/ asks a PACS that just failed again only after this many seconds
FILM_SUFFIX = ".dcm"
LABEL_SUFFIX = ".png"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QIDO_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "PatientID", "StudyDate", "SeriesDescription",
                "NumberOfSeriesRelatedInstances")
_LABEL_SUFFIXES = (".png", ".nii", ".nii.gz", ".bin")
SEG_DESCRIPTION = "monaifrac label, reviewed in MONAI Label"  # LO: 64 characters at most


def _value(item: dict, keyword: str) -> Optional[str]:
    """One value of a QIDO/metadata answer (DICOM JSON) by keyword."""
    from pydicom.datadict import tag_for_keyword

    element = item.get(f"{tag_for_keyword(keyword):08X}") or {}
    values = element.get("Value") or []
    return str(values[0]) if values else None


def _refused(status: int, message: str) -> HTTPException:
    logger.warning("refused: %s", message)
    return HTTPException(status_code=status, detail=message)


class FilmDICOMwebDatastore(DICOMWebDatastore):
    """The DX/CR films of a DICOMweb PACS as MONAI Label images (see the module docstring).

    Args:
        pacs: the PACS (:func:`monaifrac.dicom.web.connect`).
        cache_path: the folder of the local copies; this PACS's are under ``<md5 of its URL>/``.
        modalities: the modalities listed (DX and CR).
        search_filter: further QIDO-RS keys every series search sends (e.g. ``{"StudyDate": "2024*"}``).
        listing_ttl: seconds a listing of the PACS is reused before it is asked again.
    """

    def __init__(self, pacs: Pacs, cache_path: str, modalities=MODALITIES, search_filter: Optional[dict] = None,
                 listing_ttl: float = 60.0):
        self._pacs = pacs
        self._filter = dict(search_filter or {})
        self._modalities = tuple(modalities)
        self._listing_ttl = float(listing_ttl)
        self._series: Optional[Dict[str, dict]] = None  # series uid -> what QIDO said of it
        self._series_at = 0.0
        self._segs: Optional[set] = None  # SEG series uids of the PACS (last listing)
        self._segs_at = 0.0
        self._seg_refs: Dict[str, Optional[str]] = {}  # SEG series uid -> the series it references
        self._not_labels: set = set()  # SEG series that cannot be labels of the film they reference
        self._failed_at: Optional[float] = None
        self._failure: Optional[HTTPException] = None
        self._skipped: set = set()
        datastore_path = os.path.join(cache_path, md5_digest(pacs.client.base_url))
        logger.info("DICOMweb datastore of projection films: %s (%s); cache %s", pacs.url,
                    "/".join(self._modalities), datastore_path)
        # not DICOMWebDatastore.__init__: it would start a file watcher on the cache and name the NIfTI conversion
        init_dicomweb_datastore(self, pacs.client, datastore_path, (f"*{FILM_SUFFIX}", f"*{LABEL_SUFFIX}"),
                                self._filter)

    # -- the PACS ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _pacs_call(self, what: str) -> Iterator[None]:
        """Run a DICOMweb request; its failure becomes HTTP 504 (no answer in time) or 502 (anything else)."""
        import requests

        timed_out = False
        try:
            with self._pacs.errors(what):
                try:
                    yield
                except requests.exceptions.Timeout:
                    timed_out = True
                    raise
        except PacsError as err:
            # the server's credentials come from the environment, not from options of a command
            message = str(err).replace("give --user and --password, or set ", "set ")
            failure = _refused(504 if timed_out else 502, f"PACS {message}")
            self._failed_at, self._failure = time.monotonic(), failure  # what /info/ says for a while
            raise failure from None
        self._failed_at = self._failure = None

    def _remembered(self, for_status: bool) -> None:
        """For ``/info/``: raise the last failure again while it is recent, instead of asking the PACS."""
        if for_status and self._failure is not None and time.monotonic() - self._failed_at < STATUS_RETRY_S:
            raise self._failure

    def check_pacs(self) -> Optional[str]:
        """None when the PACS answers a search, else why not (one line); for the log at start."""
        try:
            self._listing()
        except HTTPException as err:
            return str(err.detail)
        return None

    def _listing(self, for_status: bool = False) -> Dict[str, dict]:
        """The PACS's film series (uid -> QIDO fields), asked again after ``listing_ttl`` seconds."""
        now = time.monotonic()
        if self._series is not None and now - self._series_at < self._listing_ttl:
            return self._series
        self._remembered(for_status)
        series: Dict[str, dict] = {}
        for modality in self._modalities:
            with self._pacs_call(f"search for {modality} series"):
                found = self._pacs.client.search_for_series(search_filters={**self._filter, "Modality": modality},
                                                       fields=list(_QIDO_FIELDS), get_remaining=True)
            for item in found:
                uid = _value(item, "SeriesInstanceUID") or ""
                if not _UID.fullmatch(uid):
                    continue
                count = _value(item, "NumberOfSeriesRelatedInstances")
                if count is not None and count.isdigit() and int(count) != 1:
                    if uid not in self._skipped:
                        self._skipped.add(uid)
                        logger.warning("series %s (%s) holds %s instances, not one film: not listed", uid,
                                       modality, count)
                    continue
                series[uid] = {k: v for k in _QIDO_FIELDS if (v := _value(item, k)) is not None}
        self._series, self._series_at = series, now
        return series

    def _labelled_in_pacs(self, for_status: bool = False) -> set:
        """The series some SEG in the PACS references."""
        now = time.monotonic()
        if self._segs is None or now - self._segs_at >= self._listing_ttl:
            self._remembered(for_status)
            with self._pacs_call("search for SEG series"):
                found = self._pacs.client.search_for_series(search_filters={"Modality": "SEG"}, get_remaining=True)
            segs = {}
            for item in found:
                seg_uid, study_uid = _value(item, "SeriesInstanceUID"), _value(item, "StudyInstanceUID")
                if seg_uid and study_uid and _UID.fullmatch(seg_uid):
                    segs[seg_uid] = study_uid
            films = self._listing(for_status)
            for seg_uid, study_uid in segs.items():
                if seg_uid not in self._seg_refs:
                    with self._pacs_call(f"read the metadata of SEG series {seg_uid}"):
                        meta = self._pacs.client.retrieve_series_metadata(study_uid, seg_uid)
                    referenced = self._referenced_series(meta)
                    if referenced in films:
                        self._take_label(study_uid, seg_uid, referenced)
                    # remembered only once taken: a PACS failure meanwhile leaves it to the next listing
                    self._seg_refs[seg_uid] = referenced
            self._segs, self._segs_at = set(segs), now
        return {self._seg_refs.get(s) for s in self._segs - self._not_labels} - {None}

    def _take_label(self, study_uid: str, seg_uid: str, image_id: str) -> None:
        """SEG series ``seg_uid`` (any tool's) as the ``final`` label of film series ``image_id``, unless a newer
        SEG's is kept already; one that cannot be a label of the film is noted in :attr:`_not_labels` and logged."""
        import pydicom

        from monaifrac.dicom.seg_read import read_fracture_label

        tag = DefaultLabelTag.FINAL.value
        obj = datastore_objects(self).get(image_id)
        kept = obj.labels.get(tag) if obj is not None else None
        kept_info = dict(getattr(kept, "info", None) or {})
        if kept_info.get("SeriesInstanceUID") == seg_uid:
            return  # this SEG's label is kept already (saved here, or seen before a restart)
        film_path = self.get_image_uri(image_id)
        film = pydicom.dcmread(film_path, stop_before_pixels=True)
        with self._pacs_call(f"retrieve SEG series {seg_uid}"):
            instances = self._pacs.client.retrieve_series(study_uid, seg_uid)
        label, problems = None, []
        for ds in instances:
            try:
                label = read_fracture_label(ds, film, name=f"SEG series {seg_uid}")
                break
            except InputError as err:
                problems.append(err.problem)
        if label is None:
            self._not_labels.add(seg_uid)
            logger.warning("SEG series %s of series %s is no label: %s", seg_uid, image_id,
                           "; ".join(problems) or "no instance")
            return
        if label.when and str(kept_info.get("seg_time") or "") > label.when:
            logger.info("SEG series %s of series %s (%s) is older than the kept label's SEG (%s): not taken", seg_uid,
                        image_id, label.when, kept_info.get("seg_time"))
            return
        pixels = label.label
        if not label.has_bone:
            from monaifrac.data.masks import BACKGROUND, BONE, bone_pseudo_label
            from monaifrac.io import read_radiograph

            image, _info = read_radiograph(film_path)
            pixels = pixels.copy()
            pixels[bone_pseudo_label(image) & (pixels == BACKGROUND)] = BONE
        info = dict(SeriesInstanceUID=seg_uid, SOPInstanceUID=label.sop_uid, StudyInstanceUID=study_uid,
                    Modality="SEG", pacs=self._pacs.url, seg_time=label.when, from_pacs=True,
                    bone="SEG" if label.has_bone else "pseudo-label")
        self._keep_label(image_id, pixels, tag, info)
        logger.info("SEG series %s (%s) of series %s kept as its %s label%s", seg_uid, label.when or "undated",
                    image_id, tag, "" if label.has_bone else " (bone: the film's pseudo-label)")

    @staticmethod
    def _referenced_series(meta: list) -> Optional[str]:
        for instance in meta or []:
            sequence = (instance.get("00081115") or {}).get("Value") or []  # Referenced Series Sequence
            for item in sequence:
                uid = _value(item, "SeriesInstanceUID")
                if uid:
                    return uid
        return None

    # -- images --------------------------------------------------------------------------

    @staticmethod
    def _check_id(image_id: str) -> str:
        if not isinstance(image_id, str) or len(image_id) > 64 or not _UID.fullmatch(image_id):
            raise _refused(422, f"image id {str(image_id)[:80]!r}: not a Series Instance UID of the PACS "
                                "(digits and dots)")
        return image_id

    def _film_path(self, image_id: str) -> Path:
        return Path(image_folder(self)).resolve() / f"{image_id}{FILM_SUFFIX}"

    def list_images(self) -> List[str]:
        return sorted(self._listing())

    def get_image_uri(self, image_id: str) -> str:
        """The film of series ``image_id`` as a local ``.dcm`` file, retrieved from the PACS the first time."""
        image_id = self._check_id(image_id)
        path = self._film_path(image_id)
        if path.is_file() and image_id in datastore_objects(self):
            return str(path)
        with self._pacs_call(f"find series {image_id}"):
            found = self._pacs.client.search_for_series(search_filters={"SeriesInstanceUID": image_id},
                                                   fields=list(_QIDO_FIELDS))
        found = [s for s in found if _value(s, "SeriesInstanceUID") == image_id]
        if not found:
            raise _refused(404, f"image id {image_id}: no such series in the PACS")
        info = {k: v for k in _QIDO_FIELDS if (v := _value(found[0], k)) is not None}
        modality, study_uid = info.get("Modality", "?"), info.get("StudyInstanceUID", "")
        if modality not in self._modalities:
            raise _refused(422, f"image id {image_id}: a {modality} series, not a film ({'/'.join(self._modalities)})")
        if not _UID.fullmatch(study_uid):
            raise _refused(502, f"PACS {self._pacs.url}: series {image_id} has no Study Instance UID")
        with self._pacs_call(f"list the instances of series {image_id}"):
            instances = self._pacs.client.search_for_instances(study_instance_uid=study_uid,
                                                               series_instance_uid=image_id)
        if len(instances) != 1:
            raise _refused(422, f"image id {image_id}: the series holds {len(instances)} instances; an image here is "
                                "a series of one film")
        sop_uid = _value(instances[0], "SOPInstanceUID") or ""
        if not _UID.fullmatch(sop_uid):
            raise _refused(502, f"PACS {self._pacs.url}: series {image_id} names an instance {sop_uid!r}, not a UID")
        with self._pacs_call(f"retrieve instance {sop_uid}"):
            ds = self._pacs.client.retrieve_instance(study_uid, image_id, sop_uid)
        from monaifrac.io.dicom import check_dicom_film
        from monaifrac.dicom.seg import save_dataset

        try:
            with atomic_path(path) as tmp:
                save_dataset(ds, tmp)
                check_dicom_film(tmp)
        except InputError as err:
            raise _refused(422, f"image id {image_id}: the PACS's instance cannot be read as a film: "
                                f"{err.problem}") from None
        with updating_objects(self) as objects:
            old = objects.get(image_id)
            image_info = dict(info, SOPInstanceUID=sop_uid, ts=int(time.time()), name=path.name)
            objects[image_id] = ImageLabelModel(image=DataModel(info=image_info, ext=FILM_SUFFIX),
                                                labels=old.labels if old else {})
        logger.info("retrieved series %s (%s, instance %s) into %s", image_id, modality, sop_uid, path)
        return str(path)

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        """What the cache knows of the film, else what the last listing said (no request, no download)."""
        info = dict((self._series or {}).get(image_id) or {})
        info.update(LocalDatastore.get_image_info(self, image_id))
        return info

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        raise _refused(405, "this MONAI Label serves the films of a PACS: store a film in the PACS (e.g. "
                            "`monaifrac pacs-push FOLDER --films --url ...`), not in MONAI Label")

    def remove_image(self, image_id: str) -> None:
        raise _refused(405, "this MONAI Label serves the films of a PACS: remove a film in the PACS")

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise _refused(405, "this MONAI Label keeps its labels as SEG series in the PACS: remove a SEG there")

    # -- labels --------------------------------------------------------------------------

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        # the label kept here when it was saved; MONAI Label's would convert the PACS's SEG to NIfTI
        return LocalDatastore.get_label_uri(self, label_id, label_tag)

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        images = set(self.list_images())
        return sorted(images & (self._labelled_in_pacs() | set(LocalDatastore.get_labeled_images(self))))

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return sorted(set(self.list_images()) - set(self.get_labeled_images()))

    @staticmethod
    def _read_label(path: str, rows: int, columns: int, image_id: str) -> np.ndarray:
        """The uploaded label as (Rows, Columns) uint8 in the film's frame; 422 for anything else."""
        suffix = suffix_of(path)
        if suffix not in _LABEL_SUFFIXES:
            raise _refused(422, f"label for {image_id}: a {suffix or 'suffix-less'} file; expected "
                                f"{', '.join(_LABEL_SUFFIXES)}")
        try:
            if suffix == ".bin":  # OHIF: the label map's bytes, row-major
                raw = Path(path).read_bytes()
                if len(raw) != rows * columns:
                    raise _refused(422, f"label for {image_id}: {len(raw)} bytes for a film of {rows} x {columns} "
                                        "pixels (one byte each)")
                label = np.frombuffer(raw, np.uint8).reshape(rows, columns)
            elif suffix == ".png":
                label = read_label_map(path)
            else:
                label = np.squeeze(read_nifti(path))
                if label.ndim != 2:
                    raise _refused(422, f"label for {image_id}: a NIfTI of shape {label.shape}, not 2D")
                label = from_monai_frame(label)  # NIfTI: x (column) first
        except InputError as err:
            raise _refused(422, f"label for {image_id}: {err.problem}") from None
        if label.shape != (rows, columns):
            turned = " (turned: rows and columns swapped)" if label.shape == (columns, rows) else ""
            raise _refused(422, f"label for {image_id}: {label.shape[0]} x {label.shape[1]} pixels for a film of "
                                f"{rows} x {columns}{turned}")
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
            raise _refused(422, f"label for {image_id}: values that are not whole numbers")
        values = set(np.unique(label).astype(np.int64).tolist())
        if not values <= {0, 1, 2}:
            raise _refused(422, f"label for {image_id}: values {sorted(values)}; expected 0 background, 1 bone, "
                                "2 fracture")
        return label.astype(np.uint8)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any],
                   label_id: str = "") -> str:
        """Check the label, store its SEG in the PACS (tag ``final``), then keep it here; see the module docstring."""
        import pydicom

        from monaifrac.dicom.seg import make_segmentation, save_dataset

        label_tag = label_tag or DefaultLabelTag.FINAL.value
        if not _TAG.fullmatch(label_tag):  # it names a folder of the cache
            raise _refused(422, f"label tag {label_tag[:80]!r}: letters, digits, '_' and '-' only")
        film_path = self.get_image_uri(image_id)
        film = pydicom.dcmread(film_path, stop_before_pixels=True)
        label = self._read_label(label_filename, int(film.Rows), int(film.Columns), image_id)
        info = dict(label_info or {})
        if label_tag == DefaultLabelTag.FINAL:
            try:
                seg = make_segmentation(film, label, algorithm_type="SEMIAUTOMATIC")
            except (ValueError, AttributeError, TypeError, KeyError) as err:
                raise _refused(422, f"label for {image_id}: no DICOM SEG can be made of the film's header: "
                                    f"{' '.join(str(err).split())}") from None
            seg.SeriesDescription = SEG_DESCRIPTION
            buffer = io.BytesIO()
            save_dataset(seg, buffer)  # as a file (preamble, file meta), the way STOW-RS sends it
            buffer.seek(0)
            with self._pacs_call(f"store the SEG of series {image_id}"):
                answer = self._pacs.client.store_instances([pydicom.dcmread(buffer)])
            failed = answer.get("FailedSOPSequence") or []
            if failed:
                reason = failed[0].get("FailureReason", "not given")
                raise _refused(502, f"PACS {self._pacs.url}: refused the SEG of series {image_id} (failure reason "
                                    f"{reason})")
            from monaifrac.dicom.seg_read import seg_time

            info.update(SeriesInstanceUID=str(seg.SeriesInstanceUID), SOPInstanceUID=str(seg.SOPInstanceUID),
                        StudyInstanceUID=str(seg.StudyInstanceUID), Modality="SEG", pacs=self._pacs.url,
                        seg_time=seg_time(seg))
            self._seg_refs[str(seg.SeriesInstanceUID)] = image_id
            if self._segs is not None:
                self._segs.add(str(seg.SeriesInstanceUID))
            logger.info("stored SEG series %s of series %s in %s", seg.SeriesInstanceUID, image_id, self._pacs.url)
        self._keep_label(image_id, label, label_tag, info)
        return image_id

    def _keep_label(self, image_id: str, label: np.ndarray, label_tag: str, info: Dict[str, Any]) -> None:
        """MONAI Label's bookkeeping: ``labels/<tag>/<id>.png`` (written atomically) and the datastore file."""
        from monaifrac.io import write_png

        dest = Path(label_folder(self, label_tag)) / f"{image_id}{LABEL_SUFFIX}"
        with updating_objects(self) as objects:
            write_png(dest, label)
            obj = objects[image_id]
            obj.labels[label_tag] = DataModel(info=dict(info, ts=int(time.time()), name=dest.name), ext=LABEL_SUFFIX)

    def datalist(self, full_path=True) -> List[Dict[str, Any]]:
        # the films with a final label kept here: saved here, or a SEG of the PACS (MONAI Label's own would convert
        # every SEG of the PACS to NIfTI); the PACS is looked at first for SEGs not seen yet
        try:
            self._labelled_in_pacs()
        except HTTPException as err:
            logger.warning("training on the labels kept here; the PACS's new SEGs are not seen: %s", err.detail)
        return LocalDatastore.datalist(self, full_path)

    # -- what the endpoints show ---------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """``/info/``'s datastore part; with the PACS out of reach, what is known here and ``pacs_error``."""
        tags: Dict[str, int] = {}
        for obj in datastore_objects(self).values():
            for tag in obj.labels:
                tags[tag] = tags.get(tag, 0) + 1
        status: Dict[str, Any] = {"pacs": self._pacs.url}
        try:
            images = set(self._listing(for_status=True))
            labelled = self._labelled_in_pacs(for_status=True)
            status.update(total=len(images), completed=len(images & (labelled | set(LocalDatastore.get_labeled_images(
                self)))), label_tags=tags)
        except HTTPException as err:
            status.update(total=len(self._series or {}), completed=len(LocalDatastore.get_labeled_images(self)),
                          label_tags=tags, pacs_error=str(err.detail))
        return status

    def json(self):
        """``/datastore/?output=all``: every film series of the PACS, with what the cache holds of it."""
        listing = self._listing()
        local = LocalDatastore.json(self)
        objects = {}
        for uid in sorted(listing):
            obj = local["objects"].get(uid) or {"image": {"ext": FILM_SUFFIX, "info": {}}, "labels": {}}
            obj["image"]["info"] = {**listing[uid], **obj["image"]["info"]}
            objects[uid] = obj
        return dict(local, name=self._pacs.url, description="DX/CR films of a DICOMweb PACS", objects=objects)


def from_settings(url: str, app_dir: str) -> FilmDICOMwebDatastore:
    """The datastore for ``--studies URL`` as MONAI Label's settings and the environment say (module docstring)."""
    from monailabel.config import settings

    user = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME or None
    password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD or None
    if user is None and password is None:
        user_password = credentials()  # MONAIFRAC_PACS_USER / MONAIFRAC_PACS_PASSWORD
        user, password = user_password if user_password else (None, None)
    try:
        pacs = connect(url, user, password, timeout=float(settings.MONAI_LABEL_DICOMWEB_READ_TIMEOUT))
    except PacsError as err:
        raise ValueError(f"--studies {url}: {err}") from None
    cache = (settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    cache = cache or os.path.join(app_dir, "dicomweb-cache")
    search_filter = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER or {})
    modality = search_filter.pop("Modality", None)
    modalities = MODALITIES
    if modality in MODALITIES:
        modalities = (modality,)
    elif modality is not None:
        logger.info("search filter Modality %r ignored: this app labels %s films", modality, "/".join(MODALITIES))
    return FilmDICOMwebDatastore(pacs, cache, modalities=modalities, search_filter=search_filter,
                                 listing_ttl=float(settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
