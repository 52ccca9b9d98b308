"""A real Orthanc PACS (``monaifrac.dicom.orthanc``, ``scripts/pacs-serve``) over real HTTP.

One server for the module, in pytest's temporary folder, with generated credentials; the tests
that stop a server start their own. Orthanc and its DICOMweb plugin are Debian packages: installed
with apt where they are missing and we are root, else the module skips with the command to run.
A film goes in by STOW-RS, is found by QIDO-RS and comes back by WADO-RS through dicomweb-client,
as OHIF or a hospital's router would move it. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from monaifrac.dicom import orthanc as orthanc_module
from monaifrac.dicom.films import DX_FOR_PRESENTATION, write_dx
from monaifrac.dicom.orthanc import INSTALL_HINT, OrthancError, OrthancServer, ensure_orthanc_installed
from tests.conftest import draw_film
from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow

ENV_NAMES = (orthanc_module.USER_ENV, orthanc_module.PASSWORD_ENV)


@pytest.fixture(scope="module")
def orthanc_installed():
    if not ensure_orthanc_installed():
        pytest.skip(f"no Orthanc with its DICOMweb plugin: {INSTALL_HINT}, to run the PACS tests")


@pytest.fixture(scope="module")
def pacs(orthanc_installed, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_NAMES:  # the generated-credentials path, whatever the caller's shell exports
            mp.delenv(name, raising=False)
        with OrthancServer(tmp_path_factory.mktemp("pacs")) as server:
            yield server


def _session(auth: tuple[str, str]) -> requests.Session:
    session = create_session_from_user_pass(*auth)
    session.trust_env = False  # never a proxy from the environment: the PACS is on loopback
    return session


def _client(server: OrthancServer, auth: tuple[str, str] | None = None) -> DICOMwebClient:
    return DICOMwebClient(url=server.dicomweb_url, session=_session(auth or server.auth))


def _film() -> np.ndarray:
    """(60, 40) uint16, 12 bits used, bone bright, asymmetric."""
    return (draw_film(60, 40).astype(np.uint16) << 4) + np.arange(40, dtype=np.uint16)


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` listens (Linux /proc), any address, IPv4 and IPv6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# --- (a) the password ----------------------------------------------------------------------------

def test_system_answers_only_with_the_password(pacs):
    user, password = pacs.auth
    session = requests.Session()
    session.trust_env = False
    url = pacs.url + "/system"
    answer = session.get(url, auth=(user, password), timeout=10)
    assert answer.status_code == 200
    assert answer.json()["Version"].startswith("1.")
    assert session.get(url, timeout=10).status_code == 401
    assert session.get(url, auth=(user, password + "x"), timeout=10).status_code == 401
    assert session.get(url, auth=(user + "x", password), timeout=10).status_code == 401
    # DICOMweb is behind the same password
    assert session.get(pacs.dicomweb_url + "/studies", timeout=10).status_code == 401
    with pytest.raises(requests.HTTPError, match="401"):
        _client(pacs, (user, "wrong")).search_for_studies()


def test_generated_credentials_are_kept_private(pacs):
    assert pacs.credentials_path == pacs.folder / "credentials.json"
    saved = json.loads(pacs.credentials_path.read_text())
    assert (saved["user"], saved["password"]) == pacs.auth
    assert len(pacs.auth[1]) >= 24
    assert re.fullmatch(r"[0-9a-f]+", pacs.auth[1]), "a generated password must paste into a command line as is"
    for path in (pacs.credentials_path, pacs.config_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- (b) a film through DICOMweb ------------------------------------------------------------------

def test_dx_film_goes_in_by_stow_is_found_by_qido_and_comes_back_by_wado(pacs, tmp_path):
    pixels = _film()
    written = write_dx(tmp_path / "film.dcm", pixels, pixel_spacing=(0.139, 0.139), bits_stored=12,
                       patient_id="PACS-TEST-1", body_part="hand")
    client = _client(pacs)
    stored = client.store_instances([pydicom.dcmread(tmp_path / "film.dcm")])
    assert not stored.get("FailedSOPSequence")  # Orthanc sends it empty
    assert [item.ReferencedSOPInstanceUID for item in stored.ReferencedSOPSequence] == [written.SOPInstanceUID]
    # the Retrieve URL a client would follow is this server's, port included
    assert stored.ReferencedSOPSequence[0].RetrieveURL.startswith(pacs.dicomweb_url + "/studies/")

    studies = [pydicom.Dataset.from_json(s) for s in client.search_for_studies(
        search_filters={"PatientID": "PACS-TEST-1"})]
    assert [s.StudyInstanceUID for s in studies] == [written.StudyInstanceUID]
    series = [pydicom.Dataset.from_json(s) for s in client.search_for_series(written.StudyInstanceUID)]
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(written.SeriesInstanceUID, "DX")]

    back = client.retrieve_instance(written.StudyInstanceUID, written.SeriesInstanceUID, written.SOPInstanceUID)
    assert back.SOPInstanceUID == written.SOPInstanceUID
    assert back.SOPClassUID == DX_FOR_PRESENTATION
    assert back.PhotometricInterpretation == "MONOCHROME2"
    assert [float(v) for v in back.PixelSpacing] == [0.139, 0.139]
    np.testing.assert_array_equal(back.pixel_array, pixels)
    # and the plain REST view of Orthanc agrees that one instance is stored
    answer = requests.get(pacs.url + "/statistics", auth=pacs.auth, timeout=10)
    assert answer.json()["CountInstances"] >= 1


# --- (c) corrections from any tool come back as training data -------------------------------------

def _foreign_seg(film, fracture, when: str):
    """A SEG as another tool writes one (highdicom; its own codes, bone after fracture, MANUAL), dated ``when``."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    bone = np.zeros_like(fracture)
    bone[20:40, 2:38] = True
    segments = [hd.seg.SegmentDescription(segment_number=1, segment_label="Fx", algorithm_type="MANUAL",
                                          segmented_property_category=Code("49755003", "SCT", "Morph. Abnormal"),
                                          segmented_property_type=Code("72704001", "SCT", "Fracture")),
                hd.seg.SegmentDescription(segment_number=2, segment_label="bone", algorithm_type="MANUAL",
                                          segmented_property_category=Code("85756007", "SCT", "Tissue"),
                                          segmented_property_type=Code("272673000", "SCT", "Bone structure"))]
    seg = hd.seg.Segmentation(source_images=[film], pixel_array=np.stack([fracture, bone], -1)[None],
                              segmentation_type="BINARY", segment_descriptions=segments,
                              series_instance_uid=hd.UID(), series_number=40, sop_instance_uid=hd.UID(),
                              instance_number=1, manufacturer="Another viewer", manufacturer_model_name="v",
                              software_versions="1", device_serial_number="1")
    seg.SeriesDate, seg.SeriesTime = when.split("T")
    return seg


def test_segs_of_any_tool_become_a_fracatlas_folder_that_prepare_reads(pacs, tmp_path, capsys):
    from skimage.draw import ellipse

    from monaifrac.cli import main
    from monaifrac.data.prepare import prepare
    from monaifrac.dicom.seg import make_segmentation
    from monaifrac.io import from_monai_frame, read_nifti

    study = pydicom.uid.generate_uid()
    films = {name: write_dx(tmp_path / f"{name}.dcm", _film(), study_uid=study, series_number=n, body_part=part,
                            patient_id="PACS-LABELS") for n, (name, part) in
             enumerate((("broken", "hand"), ("normal", "leg"), ("unread", None), ("tissue", None)), start=1)}
    fracture = np.zeros((60, 40), bool)
    rows, cols = ellipse(30, 14, 6, 3, fracture.shape, rotation=0.6)  # a slanted fracture line across the bone
    fracture[rows, cols] = True
    fracture[45, 30] = True  # one pixel alone
    no_fracture = np.where(np.arange(60)[:, None] // 20 == 1, 1, 0) * np.ones((1, 40), np.uint8)
    older = make_segmentation(films["broken"], no_fracture)  # monaifrac's own call, corrected later elsewhere
    older.SeriesDate, older.SeriesTime = "20240101", "080000"
    normal = make_segmentation(films["normal"], no_fracture)  # an empty fracture segment: "no fracture"
    tissue = _foreign_seg(films["tissue"], fracture, "20250101T090000")
    for item in tissue.SegmentSequence:  # a SEG of soft tissue only: no label of fractures
        item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "87784001"
        item.SegmentLabel = "soft tissue"
    stored = [pydicom.dcmread(tmp_path / f"{name}.dcm") for name in films]
    stored += [older, _foreign_seg(films["broken"], fracture, "20250101T090000"), normal, tissue]
    answer = _client(pacs).store_instances(stored)
    assert not answer.get("FailedSOPSequence")

    labels = tmp_path / "labels"
    user, password = pacs.auth
    assert main(["pacs-pull", "--url", pacs.dicomweb_url, "--study", study, "--labels", str(labels),
                 "--user", user, "--password", password]) == 0
    said = capsys.readouterr().out
    broken, normal_sop = films["broken"].SOPInstanceUID, films["normal"].SOPInstanceUID
    assert sorted(p.relative_to(labels).as_posix() for p in (labels / "images").rglob("*")
                  if p.is_file()) == sorted([f"images/Fractured/{broken}.dcm", f"images/Non_fractured/{normal_sop}.dcm"])
    assert f"older than {stored[5].SOPInstanceUID}" in said  # the newest SEG won
    assert "no segment says fracture or bone" in said and "1 film(s) have no SEG referencing them" in said
    assert "wrote 1 fractured and 1 normal labelled film(s) of 4" in said
    header, *rows = (labels / "dataset.csv").read_text().splitlines()
    assert header == "image_id,fractured,hand,leg,hip,shoulder"
    assert rows == sorted([f"{broken}.dcm,1,1,0,0,0", f"{normal_sop}.dcm,0,0,1,0,0"])

    prepared = tmp_path / "prepared"
    report = prepare(labels, prepared, workers=1, progress=False)
    assert (report["fractured"], report["non_fractured"], report["skipped"]) == (1, 1, [])
    label = from_monai_frame(read_nifti(prepared / "labels" / f"{broken}.nii.gz"))
    np.testing.assert_array_equal(label == 2, fracture)  # the correction's fracture, pixel for pixel, on its film
    np.testing.assert_array_equal(from_monai_frame(read_nifti(prepared / "images" / f"{broken}.nii.gz")), _film())
    assert (label == 1).any()  # bone: prepare's pseudo-label, as for FracAtlas
    assert not (from_monai_frame(read_nifti(prepared / "labels" / f"{normal_sop}.nii.gz")) == 2).any()


# --- (d) what the configuration closes -------------------------------------------------------------

def test_config_has_no_dicom_port_no_remote_access_and_a_password(pacs):
    config = json.loads(pacs.config_path.read_text())
    assert config["DicomServerEnabled"] is False
    assert config["RemoteAccessAllowed"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {pacs.auth[0]: pacs.auth[1]}
    assert config["WebDavEnabled"] is False and config["ExecuteLuaEnabled"] is False
    assert config["HttpPort"] == pacs.port
    assert config["DicomWeb"]["Root"] == "/dicom-web/"
    assert all(Path(p).is_file() for p in config["Plugins"])
    assert config["StorageDirectory"] == config["IndexDirectory"] == str(pacs.storage)
    if Path("/proc/net/tcp").exists():  # Linux: the process holds the HTTP port and nothing else
        assert _listening_ports(pacs.pid) == {pacs.port}


# --- (c) stopping ----------------------------------------------------------------------------------

def test_stop_closes_the_port_and_ends_the_process_once_and_for_all(orthanc_installed, tmp_path, monkeypatch):
    monkeypatch.setenv(orthanc_module.USER_ENV, "radiologist")
    monkeypatch.setenv(orthanc_module.PASSWORD_ENV, "from-the-environment")
    server = OrthancServer(tmp_path / "pacs").start()
    try:
        assert server.auth == ("radiologist", "from-the-environment")
        assert server.credentials_path is None and not (tmp_path / "pacs" / "credentials.json").exists()
        assert server.status("/system") == 200
        pid, port = server.pid, server.port
        assert pid is not None
    finally:
        server.stop()
    assert server.pid is None and server.returncode == 0  # SIGTERM was enough: a clean exit
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped (no zombie left either)
    assert _refused(port)
    server.stop()  # a second stop is harmless
    assert server.returncode == 0
    assert (tmp_path / "pacs" / "storage" / "index").is_file()  # a given folder is kept


def test_a_temporary_server_leaves_nothing_behind(orthanc_installed):
    with OrthancServer() as server:
        folder, port = server.folder, server.port
        assert folder.is_dir() and server.status("/system") == 200
    assert not folder.exists()
    assert _refused(port)


def test_missing_orthanc_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(orthanc_module, "find_orthanc", lambda: None)
    with pytest.raises(OrthancError, match=r"apt-get install orthanc orthanc-dicomweb"):
        OrthancServer().start()


def test_half_given_environment_credentials_are_refused(orthanc_installed, tmp_path, monkeypatch):
    monkeypatch.setenv(orthanc_module.USER_ENV, "radiologist")
    monkeypatch.delenv(orthanc_module.PASSWORD_ENV, raising=False)
    with pytest.raises(OrthancError, match=orthanc_module.PASSWORD_ENV):
        OrthancServer(tmp_path / "pacs").start()


# --- scripts/pacs-serve ----------------------------------------------------------------------------

def test_pacs_serve_prints_where_it_is_and_stops_on_sigterm(orthanc_installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    proc = subprocess.Popen([str(REPO / "scripts" / "pacs-serve"), "--storage", str(tmp_path / "pacs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("Ctrl-C stops it" in line for line in list(lines)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        text = "".join(lines)
        assert "127.0.0.1 only" in text
        url = text.split("Orthanc PACS: ", 1)[1].split()[0].rstrip("/")
        assert url.startswith("http://127.0.0.1:")
        assert f"DICOMweb root: {url}/dicom-web" in text
        credentials = tmp_path / "pacs" / "credentials.json"
        assert str(credentials) in text
        saved = json.loads(credentials.read_text())
        answer = requests.get(url + "/system", auth=(saved["user"], saved["password"]), timeout=10)
        assert answer.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        reader.join(10)
        assert "Orthanc stopped" in "".join(lines)
        assert _refused(int(url.rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
