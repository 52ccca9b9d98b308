"""A small HTTP client for the MONAI Label server that ``scripts/monailabel-serve`` starts (stdlib only).

Just enough HTTP for MONAI Label 0.8.5: GET, and PUT/POST with a multipart form (fields and files)
or a JSON body. Used by the integration tests and ``monaifrac benchmark serve``; it needs nothing beyond
the standard library, so it runs in either environment (monaifrac's or MONAI Label's).

    client = MonaiLabelClient("http://127.0.0.1:8000")
    status, content_type, body = client.infer("output=image", files={"file": "film.jpg"})

Every request opens its own connection (``urllib``), so one client may be shared by threads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Mapping, Tuple, Union

#: the model ``scripts/monailabel-serve`` serves (the bundle's name in the app folder)
MODEL = "fracture_xray_segmentation"

#: a file to upload: a path (read when the request is made), or (file name, content) already in memory
Upload = Union[str, os.PathLike, Tuple[str, bytes]]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` right now (the OS picks it; free until someone binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def multipart(fields: Mapping[str, str] | None = None, files: Mapping[str, Upload] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a ``multipart/form-data`` form with ``fields`` and ``files``."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, upload in (files or {}).items():
        if isinstance(upload, tuple):
            filename, content = upload
        else:
            filename, content = Path(upload).name, Path(upload).read_bytes()
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class MonaiLabelClient:
    """Requests to one MONAI Label server at ``base_url`` (e.g. ``http://127.0.0.1:8000``, no trailing slash)."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")

    def request(self, method: str, path: str, fields: Mapping[str, str] | None = None,
                files: Mapping[str, Upload] | None = None, body: dict | None = None,
                timeout: float = 300) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body bytes) of one request.

        ``path`` is appended to the base URL (query string included). ``body``: sent as JSON; else
        ``fields``/``files``: sent as a multipart form; else no body. ``timeout`` in seconds, for the
        connection and each read. An HTTP error status is returned, not raised; a connection that
        fails (refused, reset, timed out) raises ``OSError`` (``urllib.error.URLError`` is one).
        """
        headers, data = {}, None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif fields is not None or files is not None:
            data, headers["Content-Type"] = multipart(fields, files)
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers.get("content-type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("content-type", ""), err.read()

    def infer(self, query: str, files: Mapping[str, Upload] | None = None, model: str = MODEL,
              timeout: float = 300) -> tuple[int, str, bytes]:
        """``POST /infer/{model}?{query}`` with empty params: a study by id (``query`` ``image=ID&output=image``)
        or an uploaded film (``files={"file": path}``, ``query`` ``output=image``). See :meth:`request`."""
        return self.request("POST", f"/infer/{model}?{query}", fields={"params": "{}"}, files=files, timeout=timeout)

    def info(self, timeout: float = 30) -> dict:
        """``GET /info/`` as a dict; raises ``RuntimeError`` on a status other than 200."""
        status, _ctype, body = self.request("GET", "/info/", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET /info/: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def wait_ready(self, proc: subprocess.Popen | None = None, timeout: float = 240, poll: float = 1.0,
                   log: str | os.PathLike | None = None) -> float:
        """Wait until ``GET /info/`` answers 200; return the seconds waited.

        Raises ``RuntimeError`` if ``proc`` (the server's process, when given) ends first, or after
        ``timeout`` seconds; the message ends with the last 4,000 characters of ``log`` when given.
        """
        start = time.monotonic()
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before answering /info/"
                                   + _tail(log))
            try:
                if self.request("GET", "/info/", timeout=5)[0] == 200:
                    return time.monotonic() - start
            except OSError:
                pass
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"the server did not answer /info/ within {timeout:.0f} s" + _tail(log))
            time.sleep(poll)


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a server started in its own session (``start_new_session=True``): SIGTERM to the session's
    process group (MONAI Label and its children), SIGKILL after ``timeout`` seconds; nothing if it has
    already gone."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def _tail(log: str | os.PathLike | None) -> str:
    if log is None:
        return ""
    try:
        return "\n--- server log (tail) ---\n" + Path(log).read_text(errors="replace")[-4000:]
    except OSError:
        return ""
