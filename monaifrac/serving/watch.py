"""Results arrive by themselves: a DICOMweb watcher that labels each new DX/CR film of a PACS once.

``monaifrac pacs-watch --url URL --state DIR`` polls the PACS by QIDO-RS for the instances of
DX and CR series, and for each film it has not seen: retrieves it (WADO-RS), labels it with the
bundle's model held in this process (:class:`monaifrac.serving.labeller.Labeller`), builds its
DICOM results (:mod:`monaifrac.dicom.results`, SR and SC by default) and stores them in the
film's study (STOW-RS, one request per film), then records the film as done.

Why a DICOMweb watcher and not Orthanc's Python plugin
-----------------------------------------------------
* It needs nothing of the PACS but the DICOMweb it already serves to viewers: Orthanc, dcm4chee,
  a cloud PACS alike; the plugin would tie the feature to Orthanc and to Debian's system Python,
  where torch, MONAI and the bundle would have to be installed beside the PACS.
* The model runs in its own process: a slow or crashing model never stalls or takes down the
  PACS, and the watcher can run on another machine (a GPU) than the PACS.
* The cost is polling: a new film waits up to one poll interval (``--poll``, 0.5 s by default)
  before it is seen, and each poll lists the PACS's DX/CR instances (one QIDO request per
  modality), which grows with the archive.

Exactly once, across restarts and a kill -9
-------------------------------------------
* **State on disk**: ``DIR/films.jsonl``, one JSON line per film handled (``done``,
  ``unreadable``, ``gone``), appended, flushed and ``fsync``-ed after the film's objects are
  stored. A line is whole or, after a kill mid-write, a torn tail that is ignored. A film is
  skipped when its SOP Instance UID has a line. ``DIR/lock`` (``flock``) keeps a second
  watcher off the same state.
* **Idempotent objects**: a film's SR/SC/SEG get Series and SOP Instance UIDs derived from the
  film's SOP Instance UID, the kind and the weights' hash (:func:`monaifrac.dicom.results.pin_uids`).
  A watcher killed after storing a film's objects and before writing its line does the film
  again at restart and stores the *same* instances: the PACS keeps one of each (Orthanc answers
  "already stored"), so no duplicate appears and nothing is lost. New weights give new UIDs: a
  film labelled by another model gets other objects, never an overwrite.

Faults
------
* **A film that cannot be read** (pydicom or the bundle's reader refuses it): one log line
  naming it, a ``unreadable`` line in the state, no object. Never retried.
* **A film gone** between listing and retrieval (404): one log line, a ``gone`` line.
* **A PACS down, slow or refusing** (no connection, timeout, 5xx, 429, 401): the step is retried
  with exponential backoff (``--backoff``, doubling up to ``--max-backoff``), one warning per
  outage and one line when it is back; the film is neither recorded nor skipped meanwhile, so
  nothing is lost. Each request has ``--timeout`` seconds and dicomweb-client's own 3 tries.
* **Not ours**: SEG, SR, SC and every other modality's series are not listed (QIDO filters on
  Modality DX and CR); an instance of such a series whose SOP class is not CR or DX (an SC
  filed under DX) is skipped as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

logger = logging.getLogger(__name__)

MODALITIES = ("DX", "CR")
# CR Image Storage; Digital X-Ray Image Storage - For Presentation / - For Processing
FILM_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1")
STATE_NAME = "films.jsonl"
DEFAULT_POLL = 0.5
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0


class Stopped(Exception):
    """The watcher was asked to stop while it waited."""


class StateLocked(RuntimeError):
    """Another watcher holds the state folder."""


@dataclass
class Film:
    study: str
    series: str
    sop: str
    found: float = field(default_factory=time.time)  # when a poll first listed it (time.time(), seconds)


class WatchState:
    """The films handled, on disk (``films.jsonl``; see the module docstring), and the folder's lock.

    Attributes:
        records: SOP Instance UID -> the last JSON record of that film.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STATE_NAME
        self._lock = open(self.folder / "lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise StateLocked(f"{self.folder}: another `monaifrac pacs-watch` uses this state folder") from None
        self.records: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, "rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            for line in lines[:-1] if not data.endswith(b"\n") else lines:
                try:
                    record = json.loads(line)
                    self.records[record["sop"]] = record
                except (ValueError, KeyError, TypeError):
                    continue  # the torn last line of a kill mid-write, or a blank one
            if data and not data.endswith(b"\n"):
                # drop a torn tail so that the next line starts on a line of its own
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self._file = open(self.path, "ab")
        self._write_lock = threading.Lock()  # the fetching, labelling and storing threads all record

    def __contains__(self, sop: str) -> bool:
        return sop in self.records

    def record(self, film: Film, status: str, **info) -> dict:
        """Append the film's line and make it durable (flush + fsync) before returning it."""
        record = {"sop": film.sop, "study": film.study, "series": film.series, "status": status,
                  "found": round(film.found, 6), **info}
        with self._write_lock:
            self._file.write(json.dumps(record, sort_keys=True).encode() + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.records[film.sop] = record
        return record

    def close(self) -> None:
        self._file.close()
        self._lock.close()


def _value(item: dict, keyword: str) -> str | None:
    from monaifrac.dicom.web import _value as value

    return value(item, keyword)


class Watcher:
    """Poll a PACS and give each new film its DICOM results (see the module docstring).

    Args:
        url: the DICOMweb root. state_dir: the state folder (created).
        labeller: the model in this process (:class:`~monaifrac.serving.labeller.Labeller`).
        kinds: which objects (:func:`monaifrac.dicom.results.parse_kinds`), default SR and SC.
        user, password, timeout: as ``monaifrac pacs-push``.
        poll: seconds between polls. backoff, max_backoff: the first and the longest wait after a
            PACS failure (doubling in between).
    """

    def __init__(self, url: str, state_dir: str | os.PathLike, labeller, kinds: str | Iterable[str] | None = None,
                 user: str | None = None, password: str | None = None, timeout: float | None = None,
                 poll: float = DEFAULT_POLL, backoff: float = DEFAULT_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF):
        import highdicom  # noqa: F401 - imported now (seconds), not at the first film

        from monaifrac.dicom.results import DEFAULT_KINDS, parse_kinds
        from monaifrac.dicom.web import DEFAULT_TIMEOUT, connect

        self.kinds = parse_kinds(kinds) if kinds is not None else DEFAULT_KINDS
        if not self.kinds:
            raise ValueError("no DICOM result kind to write: name at least one of sr, sc, seg")
        self.pacs = connect(url, user, password, DEFAULT_TIMEOUT if timeout is None else timeout)
        self.state = WatchState(state_dir)
        self.work = self.state.folder / "work"
        self.work.mkdir(exist_ok=True)
        self.labeller = labeller
        self.poll, self.backoff, self.max_backoff = float(poll), float(backoff), float(max_backoff)
        self.stop_event = threading.Event()
        self._outage: str | None = None
        self._outage_lock = threading.Lock()

    # -- the PACS, with backoff --------------------------------------------------------------

    def _call(self, what: str, fn: Callable):
        """``fn()`` inside the PACS's error translation; a PacsError waits and tries again until it succeeds
        or the watcher is stopped (:class:`Stopped`)."""
        from monaifrac.dicom.web import PacsError

        wait = self.backoff
        while True:
            try:
                with self.pacs.errors(what):
                    result = fn()
            except PacsError as err:
                with self._outage_lock:  # one warning per outage, whichever thread meets it first
                    if self._outage is None:
                        logger.warning("PACS failure, retrying with backoff (up to %g s apart): %s",
                                       self.max_backoff, err)
                    self._outage = str(err)
                if self.stop_event.wait(wait):
                    raise Stopped() from None
                wait = min(wait * 2, self.max_backoff)
                continue
            with self._outage_lock:
                if self._outage is not None:
                    logger.warning("PACS %s answers again", self.pacs.url)
                    self._outage = None
            return result

    # -- finding films ---------------------------------------------------------------------

    def find_new(self) -> list[Film]:
        """The DX/CR films of the PACS without a line in the state, in the PACS's order."""
        from monaifrac.dicom.web import _UID

        films, seen = [], set()
        for modality in MODALITIES:
            items = self._call(f"search for {modality} instances", lambda m=modality: self.pacs.client.search_for_instances(
                search_filters={"Modality": m}, fields=["SOPClassUID"], get_remaining=True))
            for item in items:
                sop, study, series = (_value(item, k) for k in ("SOPInstanceUID", "StudyInstanceUID",
                                                                  "SeriesInstanceUID"))
                if not (sop and study and series) or sop in self.state or sop in seen:
                    continue
                if not all(_UID.fullmatch(u) for u in (sop, study, series)):
                    continue  # not UIDs: nothing we could name a file by or ask for
                sop_class = _value(item, "SOPClassUID")
                if sop_class is not None and sop_class not in FILM_SOP_CLASSES:
                    continue  # an SC, SR or other object filed under DX/CR: not a film
                seen.add(sop)
                films.append(Film(study, series, sop))
        return films

    # -- one film ----------------------------------------------------------------------------

    def _retrieve(self, film: Film):
        """The film's Dataset, or None when the PACS no longer has it (404)."""
        import requests

        def fetch():
            try:
                return self.pacs.client.retrieve_instance(film.study, film.series, film.sop)
            except requests.exceptions.HTTPError as err:
                if err.response is not None and err.response.status_code == 404:
                    return None
                raise

        return self._call(f"retrieve film {film.sop}", fetch)

    def _fetch(self, film: Film):
        """Stage 1: the film retrieved and written to the work folder: ``(ds, path, started, retrieved)``, or
        its state record when it is unreadable or gone."""
        from monaifrac.dicom.seg import save_dataset

        started = time.time()
        try:
            ds = self._retrieve(film)
        except Stopped:
            raise
        except Exception as err:  # the PACS answered, but not with a DICOM file we can parse
            return self._unreadable(film, err)
        if ds is None:
            logger.error("film %s (study %s) is gone from the PACS: no object", film.sop, film.study)
            return self.state.record(film, "gone")
        path = self.work / f"{film.sop}.dcm"
        try:
            save_dataset(ds, path)
        except MemoryError:
            raise
        except Exception as err:
            path.unlink(missing_ok=True)
            return self._unreadable(film, err)
        return ds, path, started, time.time()

    def _label(self, film: Film, fetched):
        """Stage 2: the model on the fetched film: ``(ds, answer, times)``, or its record when unreadable."""
        ds, path, started, retrieved = fetched
        try:
            answer = self.labeller.label(path)
        except MemoryError:
            raise
        except Exception as err:
            return self._unreadable(film, err)
        finally:
            path.unlink(missing_ok=True)
        return ds, answer, (started, retrieved, time.time())

    def _deliver(self, film: Film, labelled) -> dict:
        """Stage 3: build the objects, store them in the film's study, record the film."""
        from monaifrac.dicom.results import build_results, pin_uids

        ds, answer, (started, retrieved, labelled_at) = labelled
        built = build_results(ds, answer.label_hw, answer.score, answer.threshold, self.kinds, name=f"film {film.sop}")
        if not built:
            logger.error("film %s: no DICOM object could be built", film.sop)
            return self.state.record(film, "no-objects", score=answer.score)
        for kind, obj in built.items():
            pin_uids(obj, film.sop, kind, self.labeller.identity)
        objects = {kind: str(obj.SOPInstanceUID) for kind, obj in built.items()}
        answer_ds = self._call(f"store the results of film {film.sop}", lambda: self.pacs.client.store_instances(
            list(built.values()), study_instance_uid=film.study))
        failed = answer_ds.get("FailedSOPSequence") or []  # an instance stored before is no failure (Orthanc)
        if failed:
            reasons = ", ".join(str(item.get("FailureReason", "?")) for item in failed)
            logger.error("film %s: the PACS refused its results (failure reason %s): recorded, not retried",
                         film.sop, reasons)
            return self.state.record(film, "refused", reasons=reasons)
        stored = time.time()
        call = "" if answer.score is None else \
            f", fracture score {answer.score:.2f} ({'fractured' if answer.score >= answer.threshold else 'not fractured'})"
        logger.info("film %s: stored %s in study %s%s (label %.2f s, %.2f s after it was listed)", film.sop,
                    ", ".join(k.upper() for k in objects), film.study, call, labelled_at - retrieved,
                    stored - film.found)
        # times (time.time(), s): listed by a poll, taken up, retrieved, labelled, results stored
        return self.state.record(film, "done", objects=objects, score=answer.score, started=round(started, 6),
                                 retrieved=round(retrieved, 6), labelled=round(labelled_at, 6), stored=round(stored, 6))

    def process(self, film: Film) -> dict:
        """Retrieve, label, build, store, record one film, one stage after the other; returns its record."""
        if film.sop in self.state:
            return self.state.records[film.sop]
        fetched = self._fetch(film)
        if isinstance(fetched, dict):
            return fetched
        labelled = self._label(film, fetched)
        return labelled if isinstance(labelled, dict) else self._deliver(film, labelled)

    def process_all(self, films: list[Film]) -> None:
        """:meth:`process` for ``films`` as a pipeline: the next film is retrieved while one is labelled and the
        one before has its objects built and stored (one thread each side of the model; the model stays
        on this thread). Returns once every film is recorded, or the watcher is stopped (a film taken up
        but not recorded is simply done again later, with the same UIDs)."""
        import queue
        from concurrent.futures import ThreadPoolExecutor

        films = [f for f in films if f.sop not in self.state]
        if not films:
            return
        deliveries: queue.Queue = queue.Queue(maxsize=2)
        errors: list[BaseException] = []

        def deliver_loop():
            while True:
                item = deliveries.get()
                if item is None:
                    return
                try:
                    self._deliver(*item)
                except Stopped:
                    return
                except BaseException as err:  # surfaced on the main thread below
                    errors.append(err)
                    return

        deliverer = threading.Thread(target=deliver_loop, name="pacs-watch-store", daemon=True)
        deliverer.start()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pacs-watch-fetch") as fetcher:
            ahead = [fetcher.submit(self._fetch, f) for f in films[:2]]
            try:
                for i, film in enumerate(films):
                    if self.stop_event.is_set() or errors or not deliverer.is_alive():
                        break
                    fetched = ahead[i].result()
                    if i + 2 < len(films):
                        ahead.append(fetcher.submit(self._fetch, films[i + 2]))
                    if isinstance(fetched, dict):
                        continue
                    labelled = self._label(film, fetched)
                    if not isinstance(labelled, dict):
                        while deliverer.is_alive():
                            try:
                                deliveries.put((film, labelled), timeout=0.2)
                                break
                            except queue.Full:
                                continue
            except Stopped:
                pass
            finally:
                for future in ahead:
                    future.cancel()
                while deliverer.is_alive():
                    try:
                        deliveries.put(None, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                deliverer.join()
        for path in self.work.glob("*.dcm"):  # fetched, never labelled: done again later
            path.unlink(missing_ok=True)
        if errors:
            raise errors[0]

    def _unreadable(self, film: Film, err: Exception) -> dict:
        problem = getattr(err, "problem", None) or " ".join(str(err).split()) or type(err).__name__
        logger.error("film %s (study %s) cannot be read: %s; no object", film.sop, film.study, problem)
        return self.state.record(film, "unreadable", problem=problem)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, once: bool = False) -> int:
        """Poll and process until :meth:`stop` (or, with ``once``, until a poll finds nothing new).
        Returns the number of films handled."""
        handled = 0
        try:
            while not self.stop_event.is_set():
                films = self.find_new()
                before = len(self.state.records)
                self.process_all(films)
                handled += len(self.state.records) - before
                if once and not films:
                    break
                if not films:
                    self.stop_event.wait(self.poll)
        except Stopped:
            pass
        return handled

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.state.close()


def watch(url: str, state_dir: str | os.PathLike, kinds: str | None = None, once: bool = False,
          bundle_root: str | None = None, model_file: str | None = None, configs: tuple[str, ...] = (), user: str | None = None,
          password: str | None = None, timeout: float | None = None, poll: float = DEFAULT_POLL,
          backoff: float = DEFAULT_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF, overrides: dict | None = None,
          ready: Callable[[], None] | None = None) -> int:
    """``monaifrac pacs-watch``: load the model, then watch until SIGTERM/SIGINT (or, with ``once``, until
    nothing is new). ``ready`` is called once the model is loaded. Returns the number of films handled."""
    import signal

    from monaifrac.serving.labeller import Labeller

    labeller = Labeller(bundle_root, model_file, tuple(configs), **(overrides or {}))
    watcher = Watcher(url, state_dir, labeller, kinds, user, password, timeout, poll, backoff, max_backoff)
    previous = {}

    def _stop(signum, _frame):
        logger.info("stopping after the current film (signal %d)", signum)
        watcher.stop()

    with contextlib.ExitStack() as stack:
        stack.callback(watcher.close)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, _stop)
            stack.callback(lambda: [signal.signal(s, h) for s, h in previous.items()])
        logger.info("watching %s for DX/CR films (every %g s); results: %s; state: %s", watcher.pacs.url, poll,
                    ", ".join(k.upper() for k in watcher.kinds), watcher.state.path)
        if ready:
            ready()
        return watcher.run(once=once)


__all__ = ("FILM_SOP_CLASSES", "Film", "MODALITIES", "StateLocked", "WatchState", "Watcher", "watch")
