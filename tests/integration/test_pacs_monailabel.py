"""MONAI Label over a PACS: ``scripts/monailabel-serve --dicomweb URL`` on a real Orthanc.

One Orthanc (:class:`OrthancServer`, password on) holds synthetic films: a DX written MONOCHROME1,
a CR with a pixel spacing, and two that are no film to label (an OT series, a DX series of two
instances). One MONAI Label server (the shipped ``bundle/models/model.pt``) reads the PACS through a
gate, a TCP relay on 127.0.0.1 the tests switch between passing the bytes on, a closed port, a
server that never answers and one that refuses the credentials: the failures of a PACS, with one
Orthanc and one MONAI Label server for the module. Tests run in file order; the failures come
last. Everything listens on 127.0.0.1: no film or label leaves the machine.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from PIL import Image

from monaifrac.dicom import orthanc as orthanc_module
from monaifrac.dicom.films import write_dx
from monaifrac.dicom.web import push
from monaifrac.serving.client import MODEL
from monaifrac.serving.client import MonaiLabelClient as Client
from monaifrac.serving.client import free_port, stop_server
from tests.conftest import draw_film
from tests.integration.conftest import INFERENCE_JSON, PACS_ENV_NAMES as ENV_NAMES, REPO, bundle_cmd, check_rc, run_cmd

pytestmark = pytest.mark.slow

H, W = 200, 150
TIMEOUT_S = 4  # --timeout of the server: a silent PACS costs 3 tries of it


def _pixels(shade: int) -> np.ndarray:
    """A 12-bit film (bone bright) from the tests' drawn film."""
    return np.round(draw_film(H, W, shade=shade).astype(np.float64) * (4095 / 255)).astype(np.uint16)


def _with_modality(path: Path, modality: str) -> None:
    ds = pydicom.dcmread(path)
    ds.Modality = modality
    ds.save_as(path, enforce_file_format=True)


class Gate:
    """A TCP relay on 127.0.0.1 in front of Orthanc whose behaviour the test chooses.

    Modes: ``open`` (bytes pass both ways), ``down`` (the port is closed: connection refused),
    ``silent`` (connections are accepted and never answered) and ``unauthorized`` (every request
    is answered 401, as a PACS refusing the credentials). Changing the mode cuts every connection.
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.mode = "open"
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._listen()

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(32)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _track(self, *conns: socket.socket) -> None:
        with self._lock:
            self._conns.update(conns)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self._track(conn)
            if self.mode == "open":
                try:
                    upstream = socket.create_connection(self.target, timeout=10)
                except OSError:
                    conn.close()
                    continue
                upstream.settimeout(None)
                self._track(upstream)
                threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()
                threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
            elif self.mode == "unauthorized":
                threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()
            # silent: held open, unanswered, until the mode changes

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            conn.sendall(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="monaifrac"\r\n'
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def set_mode(self, mode: str) -> None:
        assert mode in ("open", "down", "silent", "unauthorized")
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        if mode == "down" and self._listener is not None:
            self._listener.close()
            self._listener = None
        elif mode != "down" and self._listener is None:
            self._listen()
        self.mode = mode

    def close(self) -> None:
        self.set_mode("down")

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"


def _pacs_client(pacs) -> DICOMwebClient:
    session = create_session_from_user_pass(*pacs.auth)
    session.trust_env = False
    return DICOMwebClient(url=pacs.dicomweb_url, session=session)


def _seg_series(pacs) -> list[dict]:
    return _pacs_client(pacs).search_for_series(search_filters={"Modality": "SEG"})


@pytest.fixture(scope="module")
def served(pacs, tmp_path_factory):
    """Films into Orthanc, what inference.json writes for them, and MONAI Label on the PACS (through the gate)."""
    root = tmp_path_factory.mktemp("pacs_monailabel")
    films = root / "films"
    study = pydicom.uid.generate_uid()
    m1 = write_dx(films / "m1.dcm", _pixels(0), photometric="MONOCHROME1", bits_stored=12, study_uid=study,
                  patient_id="SYNTH-ML")
    cr = write_dx(films / "cr.dcm", _pixels(30), pixel_spacing=(0.143, 0.143), bits_stored=12,
                  patient_orientation=("L", "F"), study_uid=study, patient_id="SYNTH-ML", series_number=2)
    _with_modality(films / "cr.dcm", "CR")
    other = write_dx(films / "ot.dcm", _pixels(10), bits_stored=12, study_uid=study, patient_id="SYNTH-ML",
                     series_number=3)
    _with_modality(films / "ot.dcm", "OT")
    pair_study, pair_series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for n in (1, 2):
        write_dx(films / f"pair{n}.dcm", _pixels(5 * n), bits_stored=12, study_uid=pair_study, series_uid=pair_series,
                 instance_number=n, patient_id="SYNTH-PAIR")
    push(films, pacs.dicomweb_url, *pacs.auth, films=True)

    # what the bundle writes for the same DICOM files with the same weights; the MONOCHROME1 film also
    # as a MONOCHROME2 copy (not in the PACS): the same picture, so the same label
    expected_in = root / "expected_in"
    expected_in.mkdir()
    for name in ("m1", "cr"):
        (expected_in / f"{name}.dcm").write_bytes((films / f"{name}.dcm").read_bytes())
    write_dx(expected_in / "m1_plain.dcm", _pixels(0), bits_stored=12)
    expected = root / "expected"
    check_rc(run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--input_files",
                                repr(sorted(str(p) for p in expected_in.iterdir())), "--output_dir", str(expected)),
                     timeout=600))

    check_rc(run_cmd(["bash", "scripts/monailabel-env.sh"], timeout=1800))
    gate = Gate(pacs.port)
    port = free_port()
    log_path = root / "server.log"
    log = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and not k.startswith("MONAI_LABEL_")}
    env.update({orthanc_module.USER_ENV: pacs.auth[0], orthanc_module.PASSWORD_ENV: pacs.auth[1],
                # every listing asks the PACS (the script's default reuses one for 60 s)
                "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "0"})
    proc = subprocess.Popen(["scripts/monailabel-serve", "--dicomweb", gate.dicomweb_url, "--timeout", str(TIMEOUT_S),
                             "--port", str(port), "--app-dir", str(root / "app")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        client.wait_ready(proc, timeout=300, log=log_path)
        yield {"client": client, "root": root, "expected": expected, "gate": gate, "pacs": pacs, "log": log_path,
               "m1": m1, "cr": cr, "other": other, "pair_series": pair_series}
    finally:
        stop_server(proc)  # the server's session: MONAI Label and its children
        log.close()
        gate.close()


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def _cache(served) -> Path:
    [cache] = (served["root"] / "app" / "dicomweb-cache").iterdir()  # one PACS: one folder (md5 of its URL)
    return cache


def test_info_lists_the_model_and_the_pacs_films(served):
    info = served["client"].info()
    assert info["models"][MODEL]["labels"] == {"bone": 1, "fracture": 2}
    store = info["datastore"]
    assert store["pacs"] == served["gate"].dicomweb_url
    assert (store["total"], store["completed"]) == (2, 0)  # the DX and the CR film; no SEG yet
    assert "pacs_error" not in store


def test_the_datastore_lists_the_dx_and_cr_series_only(served):
    status, _ctype, body = served["client"].request("GET", "/datastore/?output=all")
    assert status == 200, body[:500]
    objects = json.loads(body)["objects"]
    m1, cr = served["m1"], served["cr"]
    assert sorted(objects) == sorted([m1.SeriesInstanceUID, cr.SeriesInstanceUID])  # not OT, not the 2-film series
    assert objects[m1.SeriesInstanceUID]["image"]["info"]["Modality"] == "DX"
    assert objects[cr.SeriesInstanceUID]["image"]["info"]["Modality"] == "CR"
    assert objects[m1.SeriesInstanceUID]["image"]["info"]["StudyInstanceUID"] == m1.StudyInstanceUID


def test_infer_on_a_series_uid_returns_what_inference_json_writes(served):
    client, expected = served["client"], served["expected"]
    want_m1 = np.asarray(Image.open(expected / "m1.png"))
    # the 2D rules of the bundle's reader: MONOCHROME1 read inverted, so the film labels as its MONOCHROME2 copy
    np.testing.assert_array_equal(want_m1, np.asarray(Image.open(expected / "m1_plain.png")))
    for name in ("m1", "cr"):
        ds = served[name]
        status, ctype, body = client.infer(f"image={ds.SeriesInstanceUID}&output=image")
        assert status == 200, body[:500]
        assert ctype == "image/png"
        got = _png(body)
        want = np.asarray(Image.open(expected / f"{name}.png"))
        assert got.shape == want.shape == (H, W)  # one 2D film, rows x columns as displayed
        np.testing.assert_array_equal(got, want)
        film = _cache(served) / f"{ds.SeriesInstanceUID}.dcm"  # the film as the bundle read it: a .dcm file
        assert pydicom.dcmread(film).SOPInstanceUID == ds.SOPInstanceUID
    status, _ctype, body = client.infer(f"image={served['m1'].SeriesInstanceUID}&output=json")
    assert status == 200 and 0.0 <= json.loads(body)["fracture_score"] <= 1.0


@pytest.mark.parametrize("image, status, words", [
    ("../films/m1", 422, "not a Series Instance UID"),
    ("/etc/hosts", 422, "not a Series Instance UID"),
    ("1.2.3.4.5.6.7", 404, "no such series in the PACS"),
    ("other", 422, "a OT series, not a film"),
    ("pair", 422, "holds 2 instances"),
])
def test_ids_that_name_no_film_get_their_code(served, image, status, words):
    image = {"other": served["other"].SeriesInstanceUID, "pair": served["pair_series"]}.get(image, image)
    got, ctype, body = served["client"].infer(f"image={image}&output=image")
    assert got == status, body[:500]
    assert ctype == "application/json" and words in json.loads(body)["detail"]


def test_a_saved_label_becomes_a_seg_of_the_film_in_the_pacs(served, tmp_path):
    client, pacs, m1 = served["client"], served["pacs"], served["m1"]
    uid = m1.SeriesInstanceUID
    label = _png(client.infer(f"image={uid}&output=image")[2]).copy()
    label[90:110, 30:60] = 2  # a radiologist's correction: a fracture on the bone bar
    label[0, 0] = 1  # a corner pixel pins the orientation
    Image.fromarray(label).save(tmp_path / "fixed.png")

    # a label that does not fit the film is refused, and nothing reaches the PACS
    Image.fromarray(np.ascontiguousarray(label.T)).save(tmp_path / "turned.png")
    Image.fromarray(np.where(label == 2, 7, label).astype(np.uint8)).save(tmp_path / "sevens.png")
    for bad, words in (("turned.png", "rows and columns swapped"), ("sevens.png", "values [0, 1, 7]")):
        status, _ctype, body = client.request("PUT", f"/datastore/label?image={uid}&tag=final",
                                              fields={"params": "{}"}, files={"label": tmp_path / bad})
        assert status == 422 and words in json.loads(body)["detail"], body[:500]
    assert _seg_series(pacs) == []

    status, _ctype, body = client.request("PUT", f"/datastore/label?image={uid}&tag=final", fields={"params": "{}"},
                                          files={"label": tmp_path / "fixed.png"})
    assert status == 200, body[:500]
    [seg_series] = _seg_series(pacs)
    seg_uid = seg_series["0020000E"]["Value"][0]
    assert seg_series["0020000D"]["Value"][0] == m1.StudyInstanceUID  # in the film's study
    [instance] = _pacs_client(pacs).retrieve_series(m1.StudyInstanceUID, seg_uid)
    seg = hd.seg.Segmentation.from_dataset(instance)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert [s.SegmentAlgorithmType for s in seg.SegmentSequence] == ["SEMIAUTOMATIC"] * 2
    decoded = seg.get_pixels_by_source_instance([m1.SOPInstanceUID], combine_segments=True)[0]
    np.testing.assert_array_equal(decoded, label)

    # MONAI Label's own bookkeeping: the label kept beside the film, the film counted as labelled
    kept = _cache(served) / "labels" / "final" / f"{uid}.png"
    np.testing.assert_array_equal(np.asarray(Image.open(kept)), label)
    assert served["client"].info()["datastore"]["completed"] == 1
    status, _ctype, body = client.request("POST", "/activelearning/first", body={})
    assert status == 200 and json.loads(body)["id"] == served["cr"].SeriesInstanceUID  # the unlabelled one


def _other_tools_seg(film, mask, kind: str, when: str):
    """A SEG as another viewer writes one (highdicom, its own codes, one segment), dated ``when``."""
    from pydicom.sr.coding import Code

    code, label = {"fracture": (("72704001", "SCT", "Fracture"), "Fx"),
                   "soft tissue": (("87784001", "SCT", "Soft tissue"), "soft tissue")}[kind]
    source = film.copy()
    if "PixelSpacing" in source:  # no frame of reference: highdicom writes no pixel measures it cannot read back
        del source.PixelSpacing
    segment = hd.seg.SegmentDescription(segment_number=1, segment_label=label, algorithm_type="MANUAL",
                                        segmented_property_category=Code("49755003", "SCT", "Morph. Abnormal"),
                                        segmented_property_type=Code(*code))
    seg = hd.seg.Segmentation(source_images=[source], pixel_array=mask[None].astype(bool), segmentation_type="BINARY",
                              segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=41,
                              sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Another viewer",
                              manufacturer_model_name="v", software_versions="1", device_serial_number="1")
    seg.SeriesDate, seg.SeriesTime = when.split("T")
    return seg


def test_a_seg_another_tool_stored_becomes_the_films_final_label(served):
    client, pacs, m1, cr = served["client"], served["pacs"], served["m1"], served["cr"]
    uid = m1.SeriesInstanceUID
    kept = _cache(served) / "labels" / "final" / f"{uid}.png"
    assert kept.is_file()  # the label saved through MONAI Label (the test above), its SEG dated now
    fracture = np.zeros((H, W), bool)
    fracture[60:75, 40:100] = True
    older = np.zeros((H, W), bool)
    older[5:10, 5:10] = True
    newer_seg = _other_tools_seg(m1, fracture, "fracture", "20991231T120000")
    segs = [_other_tools_seg(m1, older, "fracture", "20000101T120000"), newer_seg,
            _other_tools_seg(cr, fracture, "soft tissue", "20991231T120000")]
    assert not _pacs_client(pacs).store_instances(segs).get("FailedSOPSequence")

    store = client.info()["datastore"]  # the listing that first sees them
    assert store["completed"] == 1  # the soft-tissue SEG is no label: the CR film stays unlabelled
    label = np.asarray(Image.open(kept))
    np.testing.assert_array_equal(label == 2, fracture)  # the newest SEG's fracture, pixel for pixel
    assert ((label == 1) & ~fracture).any()  # bone: the film's pseudo-label, the SEG having none
    status, _ctype, body = client.request("GET", "/datastore/?output=all")
    assert status == 200, body[:500]
    final = json.loads(body)["objects"][uid]["labels"]["final"]["info"]
    assert (final["SeriesInstanceUID"], final["bone"]) == (newer_seg.SeriesInstanceUID, "pseudo-label")
    assert not (_cache(served) / "labels" / "final" / f"{cr.SeriesInstanceUID}.png").exists()
    log = served["log"].read_text()
    assert "of series " + cr.SeriesInstanceUID + " is no label: " in log and "no segment says fracture" in log


def test_monai_labels_ohif_is_served_and_its_proxy_has_no_credentials(served):
    client = served["client"]
    status, ctype, _body = client.request("GET", "/ohif/")
    assert status == 200 and ctype.startswith("text/html")
    # without --ohif, MONAI Label's DICOMweb proxy forwards without the PACS's password: Orthanc says 401
    assert client.request("GET", "/proxy/dicom/qido/studies")[0] == 401


@pytest.mark.parametrize("mode, code, words", [
    ("down", 502, "cannot reach the PACS"),
    ("silent", 504, f"no answer within {TIMEOUT_S} s"),
    ("unauthorized", 502, "HTTP 401 Unauthorized"),
])
def test_a_pacs_out_of_reach_is_one_clear_error_and_the_server_goes_on(served, tmp_path, mode, code, words):
    client, gate, cr = served["client"], served["gate"], served["cr"]
    uid = cr.SeriesInstanceUID
    label = _png(client.infer(f"image={uid}&output=image")[2])
    Image.fromarray(label).save(tmp_path / "cr.png")
    segs_before = len(_seg_series(served["pacs"]))
    kept = _cache(served) / "labels" / "final" / f"{uid}.png"
    gate.set_mode(mode)
    try:
        for method, path, files in (("PUT", f"/datastore/label?image={uid}&tag=final", {"label": tmp_path / "cr.png"}),
                                    ("GET", "/datastore/?output=all", None),
                                    ("POST", f"/infer/{MODEL}?image=1.2.826.0.1.3680043.99.1&output=image", None)):
            status, ctype, body = client.request(method, path, fields={"params": "{}"} if files or method == "POST"
                                                 else None, files=files, timeout=120)
            assert status == code, (path, body[:500])
            detail = json.loads(body)["detail"]
            assert ctype == "application/json" and words in detail and gate.dicomweb_url in detail, detail
            assert "\n" not in detail and "Traceback" not in detail
        # the server goes on: /info/ answers at once, saying what is wrong with the PACS
        start = time.monotonic()
        store = client.info()["datastore"]
        assert time.monotonic() - start < 10
        assert words in store["pacs_error"] and store["total"] == 2
        # a film already fetched is still labelled
        assert client.infer(f"image={served['m1'].SeriesInstanceUID}&output=json")[0] == 200
    finally:
        gate.set_mode("open")
    # nothing half-written: no label kept, no SEG stored
    assert not kept.exists()
    assert len(_seg_series(served["pacs"])) == segs_before
    # the PACS back: the same server lists it again, and /info/ no longer reports an error
    status, _ctype, body = client.request("GET", "/datastore/?output=all")
    assert status == 200, body[:500]
    assert "pacs_error" not in client.info()["datastore"]
