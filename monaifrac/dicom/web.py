"""DICOMweb with a PACS: the one place that builds the client and turns its failures into one line.

``monaifrac pacs-push`` stores the DICOM results of an inference run (``*.sr.dcm``, ``*.sc.dcm``,
``*.seg.dcm``: :mod:`monaifrac.dicom.results`; and with ``--films`` the DICOM films of a folder) by STOW-RS; ``monaifrac pacs-pull`` retrieves the
DX films of a PACS (all studies, or one) by QIDO-RS + WADO-RS into a folder that
``monaifrac infer`` runs on. Both go through :func:`connect`:

* **credentials**: ``--user``/``--password``, else ``MONAIFRAC_PACS_USER`` /
  ``MONAIFRAC_PACS_PASSWORD`` (:mod:`monaifrac.dicom.settings`; the names the test PACS of
  :mod:`monaifrac.dicom.orthanc` is configured with), else none;
  HTTP basic authentication. The environment is the better place: a command line is visible
  to every user of the machine (``ps``).
* **a timeout** on every request (``--timeout``, 30 s by default): connecting and each read.
  dicomweb-client tries a request :data:`ATTEMPTS` times (a second, then two, apart) when it
  cannot connect, gets no answer in time, or is answered 429/408/503/504: a PACS restarting or
  busy for a moment is no failure. A dead server is reported after about 3 s, a silent one
  after 3 timeouts and 3 s.
* **no proxy for a PACS on loopback**, whatever ``http_proxy`` says; other URLs follow the
  environment as ``requests`` does.

Every failure to use the PACS (nothing listening, no answer in time, credentials refused,
an instance refused, an answer that is not DICOMweb) raises :class:`PacsError`, one line
naming the URL and the problem; the command prints it and exits with status 2. Files are
read and checked before the first request, and pulled files are written atomically, so a
failure changes nothing but the instances already stored or files already written.
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from monaifrac.dicom.settings import PASSWORD_ENV, USER_ENV
from monaifrac.io import InputError, atomic_path, is_dicom_file

DEFAULT_TIMEOUT = 30.0
ATTEMPTS = 3
SEG_SUFFIX = ".seg.dcm"
RESULT_SUFFIXES = (".sr.dcm", ".sc.dcm", SEG_SUFFIX)  # monaifrac.dicom.results.SUFFIXES, without importing monai
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # a UID names a file: digits and dots only, nothing like ../


class PacsError(InputError):
    """The PACS could not be used; ``path`` is its URL and ``problem`` says why, in one line."""


def credentials(user: str | None = None, password: str | None = None) -> tuple[str, str] | None:
    """``(user, password)`` from the arguments, else from the environment, else None (no authentication).

    Raises:
        PacsError: only one of the two is given (``path`` is then the name of what is missing).
    """
    if user is None and password is None:
        user, password = os.environ.get(USER_ENV) or None, os.environ.get(PASSWORD_ENV) or None
        where = f"{USER_ENV} / {PASSWORD_ENV}"
    else:
        where = "--user / --password"
    if (user is None) != (password is None):
        raise PacsError(where, "give both the user and the password, or neither")
    return None if user is None else (user, password)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Pacs:
    """A DICOMweb client and what its errors need: the URL, the timeout, whether it sends credentials."""

    client: object  # dicomweb_client.DICOMwebClient
    url: str
    timeout: float
    authenticated: bool

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn what requests and dicomweb-client raise while doing ``what`` into one :class:`PacsError` line."""
        import requests

        url = self.url
        try:
            yield
        except requests.exceptions.Timeout:
            raise PacsError(url, f"no answer within {self.timeout:g} s while trying to {what} (timeout, "
                                 f"{ATTEMPTS} tries)") from None
        except requests.exceptions.SSLError as err:
            raise PacsError(url, f"TLS error while trying to {what}: {_connection_reason(err)}") from None
        except requests.exceptions.ConnectionError as err:
            raise PacsError(url, f"cannot reach the PACS to {what}: {_connection_reason(err)} ({ATTEMPTS} tries; is "
                                 "it running, and is this its DICOMweb URL?)") from None
        except requests.exceptions.HTTPError as err:
            status = err.response.status_code if err.response is not None else "?"
            if status == 401:
                hint = "the credentials were refused" if self.authenticated else "it needs credentials"
                raise PacsError(url, f"HTTP 401 Unauthorized while trying to {what}: {hint}; give --user and "
                                     "--password, or set MONAIFRAC_PACS_USER and MONAIFRAC_PACS_PASSWORD") from None
            reason = err.response.reason if err.response is not None else ""
            raise PacsError(url, f"HTTP {status} {reason} while trying to {what}") from None
        except requests.exceptions.RequestException as err:
            raise PacsError(url, f"request failed while trying to {what}: {err}") from None


def connect(url: str, user: str | None = None, password: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Pacs:
    """A :class:`Pacs` whose client talks to the DICOMweb root ``url`` (e.g.
    ``http://127.0.0.1:8042/dicom-web``), authenticated as :func:`credentials` says, with
    ``timeout`` seconds for every request. Nothing is sent yet.

    Raises:
        PacsError: ``url`` is not an http(s) URL, or only half the credentials are given.
    """
    from dicomweb_client.api import DICOMwebClient

    auth = credentials(user, password)
    url = url.rstrip("/")
    session = _timeout_session(timeout)
    session.auth = auth
    # a proxy from the environment would see (and mostly refuse) requests meant for this machine
    session.trust_env = not _is_loopback(url)
    # dicomweb-client 0.60 (the last for pydicom 2, MONAI Label's environment) has no timeout of its
    # own: the session above gives every request one there
    extra = {"timeout": timeout} if "timeout" in inspect.signature(DICOMwebClient.__init__).parameters else {}
    try:
        client = DICOMwebClient(url=url, session=session, **extra)
    except ValueError as err:
        raise PacsError(url, f"not a DICOMweb URL ({err}); expected e.g. http://127.0.0.1:8042/dicom-web") from None
    # dicomweb-client's retrying retries every exception too (refused, timed out), not only those codes
    client.set_http_retry_params(retry=True, max_attempts=ATTEMPTS, wait_exponential_multiplier=500)
    return Pacs(client, url, float(timeout), auth is not None)


def _timeout_session(timeout: float):
    """A :class:`requests.Session` whose requests without a timeout get ``timeout`` seconds."""
    import requests

    class TimeoutSession(requests.Session):
        def request(self, method, url, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().request(method, url, **kwargs)

    return TimeoutSession()


def _connection_reason(err: Exception) -> str:
    """``Connection refused`` out of requests' ``HTTPConnectionPool(...): Max retries exceeded ... [Errno 111]
    Connection refused'))``."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
    return found[-1].strip() if found else "cannot connect"


# ------------------------------------------------------------------------------------------- STOW-RS


def files_to_push(folder: os.PathLike | str, films: bool = False) -> list[Path]:
    """The DICOM results (``*.sr.dcm``, ``*.sc.dcm``, ``*.seg.dcm``) in ``folder``, and with ``films`` its other DICOM files
    (by suffix or by the ``DICM`` marker), sorted; hidden files (a writer's temporaries) are skipped.

    Raises:
        InputError: ``folder`` is not a folder, or holds nothing to push.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    paths = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name.lower().endswith(RESULT_SUFFIXES) or (films and is_dicom_file(path)):
            paths.append(path)
    if not paths:
        what = "no *.sr.dcm, *.sc.dcm or *.seg.dcm file and no DICOM film" if films else \
            "no *.sr.dcm, *.sc.dcm or *.seg.dcm file (write them with `monaifrac infer ... --dicom sr,sc`)"
        raise InputError(folder, f"nothing to push: {what}")
    return paths


def push(folder: os.PathLike | str, url: str, user: str | None = None, password: str | None = None,
         films: bool = False, timeout: float = DEFAULT_TIMEOUT, report: Callable[[str], None] | None = None
         ) -> list[dict]:
    """Store the files :func:`files_to_push` finds in ``folder`` by STOW-RS, one request per file.

    Every file is read before the first request (a bad file stops the command with nothing
    sent), then again, one at a time, to be sent (films can be large). ``report`` (e.g.
    ``print``) gets one line per instance stored.

    Returns:
        One ``{"file", "study", "series", "sop"}`` per instance stored, in order.

    Raises:
        InputError: a file is not readable DICOM. PacsError: the PACS could not be used, or
            refused an instance (the instances stored before it stay stored).
    """
    import pydicom

    paths = files_to_push(folder, films)
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            _ = ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.get("PixelData")
        except MemoryError:
            raise
        except Exception as err:
            raise InputError(path, f"not a DICOM instance that can be stored: {' '.join(str(err).split())}") from None
    pacs = connect(url, user, password, timeout)
    stored = []
    for path in paths:
        ds = pydicom.dcmread(path)
        with pacs.errors(f"store {path.name}"):
            answer = pacs.client.store_instances([ds])
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            reason = failed[0].get("FailureReason", "not given")
            raise PacsError(pacs.url, f"the PACS refused {path} (failure reason {reason})")
        item = {"file": str(path), "study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
                "sop": ds.SOPInstanceUID}
        stored.append(item)
        if report:
            report(f"stored {path} ({ds.get('Modality', '?')}, SOP Instance {ds.SOPInstanceUID})")
    return stored


# ------------------------------------------------------------------------------------ QIDO-RS + WADO-RS


def _value(item: dict, keyword: str) -> str | None:
    """One value of a QIDO answer (DICOM JSON) by keyword."""
    from pydicom.datadict import tag_for_keyword

    element = item.get(f"{tag_for_keyword(keyword):08X}") or {}
    values = element.get("Value") or []
    return str(values[0]) if values else None


def pull(url: str, out_dir: os.PathLike | str, study: str | None = None, modalities: tuple[str, ...] = ("DX",),
         user: str | None = None, password: str | None = None, timeout: float = DEFAULT_TIMEOUT,
         report: Callable[[str], None] | None = None) -> list[Path]:
    """Retrieve every instance of the series of ``modalities`` (all studies, or ``study``) into
    ``out_dir`` as ``<SOP Instance UID>.dcm``, each written atomically; an existing file of the
    same instance is replaced. ``report`` gets one line per file written.

    Returns:
        The files written, in the PACS's order.

    Raises:
        PacsError: the PACS could not be used, or named an instance by something that is not a UID.
    """
    pacs = connect(url, user, password, timeout)
    out = Path(out_dir)
    written = []
    for ds in films_of(pacs, study, modalities):
        path = out / f"{ds.SOPInstanceUID}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(path)
        if report:
            report(f"wrote {path} ({ds.get('Modality', '?')}, {ds.get('Rows')} x {ds.get('Columns')})")
    return written


def instances_of(pacs: Pacs, study: str | None, modalities: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """``(study, series, SOP instance)`` UIDs of every instance of the series of ``modalities`` (all studies, or
    ``study``), in the PACS's order, by QIDO-RS.

    Raises:
        PacsError: the PACS could not be used, or named an instance by something that is not a UID.
    """
    series_items = []
    for modality in modalities:
        with pacs.errors(f"search for {modality} series"):
            series_items += pacs.client.search_for_series(study_instance_uid=study,
                                                          search_filters={"Modality": modality}, get_remaining=True)
    for series in series_items:
        study_uid, series_uid = _value(series, "StudyInstanceUID") or study, _value(series, "SeriesInstanceUID")
        with pacs.errors(f"list the instances of series {series_uid}"):
            instances = pacs.client.search_for_instances(study_instance_uid=study_uid,
                                                         series_instance_uid=series_uid, get_remaining=True)
        for instance in instances:
            sop_uid = _value(instance, "SOPInstanceUID") or ""
            if not _UID.fullmatch(sop_uid) or not _UID.fullmatch(str(study_uid)) or not _UID.fullmatch(str(series_uid)):
                raise PacsError(pacs.url, f"the PACS named an instance {sop_uid!r} of series {series_uid!r}: not UIDs")
            yield str(study_uid), str(series_uid), sop_uid


def films_of(pacs: Pacs, study: str | None, modalities: tuple[str, ...]):
    """Every instance of :func:`instances_of`, retrieved by WADO-RS (a :class:`pydicom.Dataset` each), one at a time."""
    for study_uid, series_uid, sop_uid in instances_of(pacs, study, modalities):
        with pacs.errors(f"retrieve instance {sop_uid}"):
            yield pacs.client.retrieve_instance(study_uid, series_uid, sop_uid)
