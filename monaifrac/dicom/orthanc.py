"""A private Orthanc PACS, started and stopped from Python: for tests and ``scripts/pacs-serve``.

:class:`OrthancServer` runs Debian's ``Orthanc`` binary (1.10) with the DICOMweb plugin (1.7)
on a configuration it writes itself, into one folder::

    folder/
        orthanc.json       the configuration (mode 0600: it holds the password)
        credentials.json   {"user": ..., "password": ...} (mode 0600) when they were generated
        orthanc.log        Orthanc's own log (stdout and stderr)
        storage/           the DICOM files and the SQLite index (mode 0700)

A folder given by the caller is kept, with its films and credentials, for the next start; without
one a temporary folder is used and deleted by :meth:`OrthancServer.stop`.

What the configuration allows, and why
--------------------------------------
* **HTTP on loopback only, as far as Orthanc 1.10 can.** Orthanc 1.10.1 has no option for the
  address its HTTP server binds (its options name only ``HttpPort``; civetweb is given a bare
  port), so the port is open on every interface. ``"RemoteAccessAllowed": false`` makes Orthanc
  answer every request whose peer is not ``127.0.0.1`` with 401, before any handler or password
  check runs. The port is a free one, chosen at start unless given.
* **No DICOM (DIMSE) port.** ``"DicomServerEnabled": false``: C-STORE/C-FIND/C-MOVE from the
  network would bypass the HTTP password entirely. Films come and go through DICOMweb.
* **A password, even on loopback.** ``"AuthenticationEnabled": true`` with one user in
  ``"RegisteredUsers"``: other users and processes of the same machine reach 127.0.0.1 too.
  The user and password come from ``MONAIFRAC_PACS_USER`` / ``MONAIFRAC_PACS_PASSWORD``, else
  from the folder's ``credentials.json`` of an earlier start, else they are generated (a 32
  character random password) and written there. HTTP basic authentication sends them in clear
  text, which is acceptable on loopback only.
* **Nothing else that writes or runs code.** WebDAV off, Lua scripts and REST writes to the
  server's file system off, no modalities or peers configured.
* **DICOMweb at** ``/dicom-web/`` (QIDO-RS, WADO-RS, STOW-RS), the plugin found on disk by
  :func:`find_dicomweb_plugin`.

Orthanc runs in its own session (a Ctrl-C in the caller's terminal reaches only the caller, who
stops it) and, on Linux, receives SIGTERM when the thread that started it ends, so a killed
test run or ``pacs-serve`` does not leave a PACS behind. Start and stop it from a thread that
lives as long as the server (the main thread, in tests and scripts).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from monaifrac.dicom.settings import DICOMWEB_ROOT, PASSWORD_ENV, USER_ENV

INSTALL_HINT = "install it with `apt-get install orthanc orthanc-dicomweb` (Debian/Ubuntu, as root)"
DEFAULT_USER = "monaifrac"

# Debian puts the server in /usr/sbin, which is not on a normal user's PATH
_ORTHANC_PLACES = ("/usr/sbin/Orthanc", "/usr/local/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/bin/Orthanc")
_PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                  "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
                  "/usr/lib/orthanc/libOrthancDicomWeb.so*")


class OrthancError(RuntimeError):
    """Orthanc is missing, would not start, or was configured inconsistently; the message says which."""


def find_orthanc() -> str | None:
    """The path of the ``Orthanc`` server binary, or None when it is not installed."""
    found = shutil.which("Orthanc")
    if found:
        return found
    return next((p for p in _ORTHANC_PLACES if os.access(p, os.X_OK)), None)


def find_dicomweb_plugin() -> str | None:
    """The path of the DICOMweb plugin (``libOrthancDicomWeb.so``, package orthanc-dicomweb), or None."""
    for pattern in _PLUGIN_PLACES:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


def apt_install(*packages: str) -> bool:
    """``apt-get install -y PACKAGES`` where apt exists and we are root (after ``apt-get update`` if the
    first try fails, as on a machine whose package lists were never fetched). False where apt could not
    be used or failed; the caller checks for what it needs."""
    if not (shutil.which("apt-get") and os.geteuid() == 0):
        return False
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    # noninteractive: no debconf questions; Debian's policy-rc.d in containers keeps the
    # system-wide Orthanc service from starting, and where it does start it is not this one
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
    return subprocess.run(install, env=env, capture_output=True, timeout=900).returncode == 0


def ensure_orthanc_installed() -> bool:
    """True when Orthanc and its DICOMweb plugin are installed, installing them with apt if we may.

    For tests and set-up scripts: when either is missing, installs ``orthanc orthanc-dicomweb`` with
    :func:`apt_install`. False when they are still missing; the caller decides whether that skips or fails.
    """
    if find_orthanc() and find_dicomweb_plugin():
        return True
    apt_install("orthanc", "orthanc-dicomweb")
    return bool(find_orthanc() and find_dicomweb_plugin())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (a temporary file, then ``os.replace``).

    Not :func:`monaifrac.io.atomic_path`: that one gives the file the usual umask mode, and
    these files hold a password.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mkstemp: 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send SIGTERM to this child when its parent thread ends (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except Exception:
        pass  # not Linux: the caller's finally/stop() is the only guard


class OrthancServer:
    """A private Orthanc with DICOMweb, on a free loopback port, password protected.

    ``with OrthancServer() as pacs:`` starts it and stops it at the end of the block;
    :meth:`start` / :meth:`stop` do the same by hand (``stop`` may be called any number of
    times). See the module docstring for what the configuration allows.

    Args:
        folder: where the configuration, log, credentials and ``storage/`` live; created if
            missing and kept. ``None``: a temporary folder, deleted by :meth:`stop`.
        port: the HTTP port; ``None`` picks a free one (and another if Orthanc loses it to a
            race before it binds).
        user, password: the one registered user; both or neither. Neither: the environment
            variables ``MONAIFRAC_PACS_USER`` / ``MONAIFRAC_PACS_PASSWORD``, then the folder's
            ``credentials.json``, then generated (and written there).
        orthanc, plugin: the server binary and the DICOMweb plugin; ``None`` finds them.
        start_timeout: seconds to wait for ``GET /system`` to answer 200 with the credentials.
        stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.

    Attributes (after :meth:`start`):
        url: ``http://127.0.0.1:PORT`` (no trailing slash).
        dicomweb_url: ``url + "/dicom-web"``, the root for QIDO-RS / WADO-RS / STOW-RS clients.
        auth: ``(user, password)``, e.g. for ``requests`` or
            ``dicomweb_client.session_utils.create_session_from_user_pass``.
        credentials_path: the ``credentials.json`` holding them, or None when they came from the
            arguments or the environment.
        config_path, log_path, storage: the files and folder listed in the module docstring.
    """

    def __init__(self, folder: os.PathLike | str | None = None, *, port: int | None = None,
                 user: str | None = None, password: str | None = None, orthanc: str | None = None,
                 plugin: str | None = None, start_timeout: float = 60.0, stop_timeout: float = 20.0):
        if (user is None) != (password is None):
            raise OrthancError("give both user and password, or neither")
        self._folder_arg = Path(folder) if folder is not None else None
        self._port_arg = port
        self._user_arg, self._password_arg = user, password
        self._orthanc_arg, self._plugin_arg = orthanc, plugin
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.folder: Path | None = None
        self.port: int | None = None
        self.auth: tuple[str, str] | None = None
        self.credentials_path: Path | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._temporary = False

    # -- where things are ------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise OrthancError("Orthanc is not started: call start() or use `with OrthancServer() as pacs:`")
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + DICOMWEB_ROOT.rstrip("/")

    @property
    def config_path(self) -> Path:
        return self._require_folder() / "orthanc.json"

    @property
    def log_path(self) -> Path:
        return self._require_folder() / "orthanc.log"

    @property
    def storage(self) -> Path:
        return self._require_folder() / "storage"

    @property
    def pid(self) -> int | None:
        """The Orthanc process id while it is running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _require_folder(self) -> Path:
        if self.folder is None:
            raise OrthancError("Orthanc is not started: its folder is chosen by start()")
        return self.folder

    def _failure(self, what: str) -> str:
        """``what`` went wrong, followed by the end of Orthanc's log (read now: stop() may delete it)."""
        where = "" if self._temporary else f" {self.log_path}"
        return f"{what}; the end of Orthanc's log{where}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of Orthanc's log, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # -- starting ------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str, Path | None]:
        """(user, password, file they are kept in or None), by the precedence in the class docstring."""
        if self._user_arg is not None:
            return self._user_arg, self._password_arg, None
        env_user, env_password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        if env_user or env_password:
            if not (env_user and env_password):
                missing = PASSWORD_ENV if env_user else USER_ENV
                raise OrthancError(f"{missing} is not set: set both {USER_ENV} and {PASSWORD_ENV}, or neither "
                                   "(then a password is generated)")
            return env_user, env_password, None
        path = self.folder / "credentials.json"
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                return str(saved["user"]), str(saved["password"]), path
            except (ValueError, KeyError, TypeError):
                raise OrthancError(f"{path}: not a credentials file of monaifrac (expected JSON with \"user\" and "
                                   "\"password\"); delete it to have new ones generated") from None
        # hex, not token_urlsafe: one password in 64 of those starts with "-", and `--password -x...` then reads
        # as an option to every argparse command line it is pasted into
        user, password = DEFAULT_USER, secrets.token_hex(24)
        _write_private(path, json.dumps({"user": user, "password": password}, indent=2) + "\n")
        return user, password, path

    def _config(self, port: int, plugin: str) -> dict:
        storage = str(self.storage)
        return {
            "Name": "monaifrac",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpServerEnabled": True,
            "HttpPort": port,
            "RemoteAccessAllowed": False,  # Orthanc 1.10 has no HTTP bind address: peers other than 127.0.0.1 get 401
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.auth[0]: self.auth[1]},
            "SslEnabled": False,  # loopback only; basic auth in clear text never leaves the machine
            "DicomServerEnabled": False,  # no DIMSE port: it has no password
            "DicomModalities": {},
            "OrthancPeers": {},
            "WebDavEnabled": False,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
            "LuaScripts": [],
            "HttpThreadsCount": 8,  # Orthanc's 50 are meant for a hospital; this is one user
            "Plugins": [plugin],
            # Host: without it the plugin (1.7) writes Retrieve URLs in STOW/QIDO answers with no port
            # ("http://127.0.0.1/dicom-web/..."), which a client following them cannot reach
            "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "Host": f"127.0.0.1:{port}", "Ssl": False,
                         "EnableWado": True, "WadoRoot": "/wado"},
        }

    def start(self) -> "OrthancServer":
        """Write the configuration, start Orthanc and wait until it answers; returns self.

        Raises:
            OrthancError: Orthanc or the plugin is not installed (with the install command), the
                credentials are inconsistent, or Orthanc exited or did not answer within
                ``start_timeout`` seconds (with the end of its log). Nothing is left running then.
        """
        if self._proc is not None:
            raise OrthancError("this Orthanc is already started")
        orthanc = self._orthanc_arg or find_orthanc()
        if not orthanc:
            raise OrthancError(f"Orthanc is not installed: {INSTALL_HINT}")
        plugin = self._plugin_arg or find_dicomweb_plugin()
        if not plugin:
            raise OrthancError("the DICOMweb plugin of Orthanc (libOrthancDicomWeb.so) is not installed: "
                               + INSTALL_HINT)
        if self._folder_arg is None:
            self.folder, self._temporary = Path(tempfile.mkdtemp(prefix="monaifrac-orthanc-")), True
        else:
            self.folder = self._folder_arg.resolve()
            self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.storage.mkdir(mode=0o700, exist_ok=True)  # films of patients: the owner's alone
            user, password, self.credentials_path = self._credentials()
            if not user or ":" in user:
                raise OrthancError(f"PACS user name {user!r} cannot be used: it must be non-empty and without ':'")
            self.auth = (user, password)
            attempts = 1 if self._port_arg is not None else 3
            for attempt in range(attempts):
                self.port = self._port_arg if self._port_arg is not None else _free_port()
                _write_private(self.config_path, json.dumps(self._config(self.port, plugin), indent=2) + "\n")
                self._launch(orthanc)
                exited = self._wait_ready()
                if exited is None:
                    return self
                # an exit at start with a port we picked is most likely another process taking it first
                if attempt == attempts - 1:
                    raise OrthancError(self._failure(f"Orthanc exited with code {exited} while starting "
                                                     f"(port {self.port})"))
        except BaseException:
            self.stop()
            raise
        return self  # pragma: no cover

    def _launch(self, orthanc: str) -> None:
        self._close_log()
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [orthanc, str(self.config_path)], cwd=self.folder, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def _wait_ready(self) -> int | None:
        """None once ``GET /system`` answers 200 with the credentials; Orthanc's exit code if it exits first."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._close_log()
                return code
            try:
                status = self.status("/system")
            except OSError:
                status = None
            if status == 200:
                return None
            if status == 401:  # Orthanc is up but rejects what we configured: waiting will not help
                raise OrthancError(self._failure(f"Orthanc on port {self.port} rejects the configured credentials"))
            if time.monotonic() > deadline:
                raise OrthancError(self._failure(f"Orthanc did not answer GET /system on port {self.port} "
                                                 f"within {self.start_timeout:g} s"))
            time.sleep(0.1)

    def status(self, path: str, auth: tuple[str, str] | None | bool = True, timeout: float = 5.0) -> int:
        """The HTTP status of ``GET url + path``, with the server's credentials (``auth=True``),
        none (``False`` or ``None``) or the given ``(user, password)``. OSError if nothing answers."""
        request = urllib.request.Request(self.url + path)
        if auth is True:
            auth = self.auth
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        # no proxy, whatever http_proxy says: the server is on this machine's loopback
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    # -- stopping ------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until Orthanc exits (or ``timeout`` seconds pass); its exit code, or None."""
        if self._proc is None:
            return self.returncode
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop Orthanc: SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Harmless to repeat.

        A temporary folder (no ``folder`` given) is deleted with everything stored in it.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # Orthanc closes its index and storage cleanly on SIGTERM
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        self._close_log()
        if self._temporary and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._temporary = False

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(folder: os.PathLike | str | None = None, port: int | None = None, out=None) -> int:
    """Run a private Orthanc in the foreground until Ctrl-C or SIGTERM (``scripts/pacs-serve``).

    Prints where it is and how to log in to ``out`` (stderr by default); returns the exit status
    for the shell: 0 after a stop asked for, 1 when Orthanc would not start or died by itself.
    """
    out = out or sys.stderr

    def _interrupt(signum, _frame):
        raise KeyboardInterrupt  # SIGTERM takes the same way out as Ctrl-C: through stop()

    signal.signal(signal.SIGTERM, _interrupt)
    server = OrthancServer(folder, port=port)
    try:
        with server:
            if server.credentials_path is not None:
                where = f"{server.credentials_path} (user {server.auth[0]!r}; mode 0600)"
            else:
                where = f"given by {USER_ENV} / {PASSWORD_ENV} (user {server.auth[0]!r})"
            kept = "kept" if folder is not None else "temporary: deleted when Orthanc stops"
            print(f"Orthanc PACS: {server.url}/  (Orthanc Explorer: {server.url}/app/explorer.html)\n"
                  f"  DICOMweb root: {server.dicomweb_url}  (QIDO-RS, WADO-RS, STOW-RS; HTTP basic authentication)\n"
                  f"  credentials: {where}\n"
                  f"  storage: {server.storage}  ({kept}); log: {server.log_path}\n"
                  f"Serves 127.0.0.1 only: Orthanc 1.10 cannot bind one address, so the port is open on every\n"
                  f"  interface, but it answers any client other than 127.0.0.1 with 401 (RemoteAccessAllowed false).\n"
                  f"  No DICOM (DIMSE) port is opened. Ctrl-C stops it.", file=out, flush=True)
            code = server.wait()
            print(f"pacs-serve: Orthanc exited by itself with code {code}; the end of its log:\n{server.log_tail()}",
                  file=out, flush=True)
            return 1
    except KeyboardInterrupt:
        print("pacs-serve: Orthanc stopped", file=out, flush=True)
        return 0
    except OrthancError as err:
        print(f"pacs-serve: {err}", file=out, flush=True)
        return 1
