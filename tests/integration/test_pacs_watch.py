"""Results arrive by themselves: ``monaifrac pacs-watch`` on a real Orthanc, and its faults.

One Orthanc (:class:`OrthancServer`, password on, on 127.0.0.1) per test that needs one, started
and stopped by the test; the shipped weights (``bundle/models/model.pt``) at the small scale of the
synthetic films (160 x 192). The watcher writes SC objects here (``--dicom sc``): the SR builder
lives in ``monaifrac.dicom.sr`` and is tested with it. Faults: a kill -9 of the watcher mid-burst
then a restart, an Orthanc restart mid-burst, an unreadable film, and series that are not films
(SC, SEG, SR-like objects filed under DX, CT): each film gets its objects exactly once, counted
in the PACS itself.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from monaifrac.dicom.films import write_dx
from monaifrac.dicom.orthanc import PASSWORD_ENV, USER_ENV, OrthancServer, ensure_orthanc_installed
from monaifrac.dicom.seg import save_dataset
from monaifrac.dicom.web import connect
from monaifrac.serving.watch import STATE_NAME, WatchState, Film, StateLocked, Watcher
from tests.conftest import draw_film
from tests.integration.conftest import PACS_ENV_NAMES, REPO

pytestmark = pytest.mark.slow

MODEL = REPO / "bundle" / "models" / "model.pt"
SMALL = {"film_max_side": 192, "film_long_side": 192}


@pytest.fixture(scope="module")
def labeller():
    if not MODEL.is_file():
        pytest.skip(f"no shipped weights at {MODEL}")
    from monaifrac.serving.labeller import Labeller

    return Labeller(REPO / "bundle", **SMALL)


@pytest.fixture
def orthanc(tmp_path):
    if not ensure_orthanc_installed():
        pytest.skip("no Orthanc with its DICOMweb plugin (`apt-get install orthanc orthanc-dicomweb`)")
    server = OrthancServer(tmp_path / "pacs", start_timeout=30, stop_timeout=10).start()
    yield server
    server.stop()


def _film(folder: Path, i: int, **kw) -> Path:
    path = folder / f"film{i}.dcm"
    shade = (i * 7) % 40
    write_dx(path, draw_film(160, 192, shade).astype(np.uint16) << 4, bits_stored=12, patient_id=f"WATCH-{i}", **kw)
    return path


def _store(pacs, *paths: Path) -> list[pydicom.Dataset]:
    client = connect(pacs.dicomweb_url, *pacs.auth, timeout=10).client
    datasets = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:
        client.store_instances([ds])
    return datasets


def _instances(pacs, modality: str) -> list[dict]:
    """Orthanc's own view (REST, not DICOMweb): every instance of ``modality``, with its study."""
    session = requests.Session()
    session.trust_env = False
    answer = session.post(pacs.url + "/tools/find", auth=pacs.auth, timeout=10,
                          json={"Level": "Instance", "Query": {"Modality": modality}, "Expand": True})
    answer.raise_for_status()
    out = []
    for item in answer.json():
        tags = session.get(f"{pacs.url}/instances/{item['ID']}/simplified-tags", auth=pacs.auth, timeout=10).json()
        out.append(tags)
    return out


def _captures_per_study(pacs) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tags in _instances(pacs, "OT"):
        counts[tags["StudyInstanceUID"]] = counts.get(tags["StudyInstanceUID"], 0) + 1
    return counts


def _done(state_dir: Path) -> list[dict]:
    import json

    path = state_dir / STATE_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _watch_process(pacs, state: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in PACS_ENV_NAMES}
    env.update({USER_ENV: pacs.auth[0], PASSWORD_ENV: pacs.auth[1], "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "monaifrac", "pacs-watch", "--url", pacs.dicomweb_url, "--state", str(state),
         "--dicom", "sc", "--poll", "0.2", "--max-backoff", "1", "--timeout", "5", "--bundle-root",
         str(REPO / "bundle"), "--set", *(f"{k}={v}" for k, v in SMALL.items()), *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(proc: subprocess.Popen, timeout: float = 900) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "pacs-watch: ready" in line:
            threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
            return lines
    proc.kill()
    raise AssertionError("the watcher never said it was ready:\n" + "".join(lines))


# ------------------------------------------------------------------------------------------ the state


def test_a_torn_state_line_is_dropped_and_a_second_watcher_is_refused(tmp_path):
    state = WatchState(tmp_path)
    state.record(Film("1.2", "1.3", "1.4"), "done")
    with pytest.raises(StateLocked, match="another `monaifrac pacs-watch`"):
        WatchState(tmp_path)
    state.close()
    with open(tmp_path / STATE_NAME, "ab") as f:
        f.write(b'{"sop": "1.5", "sta')  # a kill -9 in the middle of a line
    again = WatchState(tmp_path)
    assert list(again.records) == ["1.4"] and "1.5" not in again
    again.record(Film("1.2", "1.3", "1.6"), "done")
    again.close()
    assert [r["sop"] for r in _done(tmp_path)] == ["1.4", "1.6"]


# ------------------------------------------------------------------------------------- kill -9 mid-burst


def test_a_watcher_killed_mid_burst_gives_every_film_its_capture_exactly_once(orthanc, tmp_path):
    if not MODEL.is_file():
        pytest.skip(f"no shipped weights at {MODEL}")
    n = 8
    films = [_film(tmp_path / "films", i) for i in range(n)]
    state = tmp_path / "state"
    proc = _watch_process(orthanc, state)
    try:
        _wait_ready(proc)
        sent = _store(orthanc, *films)
        _wait(lambda: len(_done(state)) >= 1, 600, "the first film handled")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    handled_before = len(_done(state))
    # the restart handles what is left, then exits (--once)
    again = _watch_process(orthanc, state, "--once")
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    records = _done(state)
    sops = [r["sop"] for r in records]
    assert sorted(sops) == sorted(ds.SOPInstanceUID for ds in sent)  # every film, one line each
    assert all(r["status"] == "done" for r in records)
    assert _captures_per_study(orthanc) == {ds.StudyInstanceUID: 1 for ds in sent}
    print(f"killed after {handled_before} of {n} films; the restart handled {n - handled_before}")


# ----------------------------------------------------------------------------- the PACS goes away


def test_an_orthanc_restart_mid_burst_loses_and_duplicates_nothing(orthanc, labeller, tmp_path, caplog):
    films = [_film(tmp_path / "films", i) for i in range(5)]
    watcher = Watcher(orthanc.dicomweb_url, tmp_path / "state", labeller, "sc", *orthanc.auth, timeout=3,
                      poll=0.1, backoff=0.1, max_backoff=0.5)
    thread = threading.Thread(target=watcher.run, daemon=True)
    try:
        with caplog.at_level(logging.INFO, logger="monaifrac.serving.watch"):
            sent = _store(orthanc, *films[:3])
            thread.start()
            _wait(lambda: len(watcher.state.records) >= 1, 600, "the first film handled")
            orthanc.stop()  # down mid-burst
            time.sleep(1.0)
            restarted = OrthancServer(orthanc.folder, port=orthanc.port, start_timeout=30, stop_timeout=10).start()
            orthanc.__dict__.update(restarted.__dict__)  # the fixture stops the running one
            sent += _store(orthanc, *films[3:])
            _wait(lambda: len(watcher.state.records) == 5, 600, "all five films handled")
    finally:
        watcher.stop()
        thread.join(30)
        watcher.close()
    assert sorted(watcher.state.records) == sorted(ds.SOPInstanceUID for ds in sent)
    assert {r["status"] for r in watcher.state.records.values()} == {"done"}
    assert _captures_per_study(orthanc) == {ds.StudyInstanceUID: 1 for ds in sent}
    messages = [r.getMessage() for r in caplog.records if r.name == "monaifrac.serving.watch"]
    # an outage the watcher meets is one warning, however many polls fail, and one line when the PACS is back
    # (a watcher busy labelling while Orthanc restarts may not meet it at all: the films above are what counts)
    outages = [m for m in messages if m.startswith("PACS failure, retrying with backoff")]
    assert len(outages) <= 1, messages
    assert len([m for m in messages if m.endswith("answers again")]) == len(outages), messages


# ---------------------------------------------------------------------- what is not a film, or not readable


def _not_films(folder: Path, labeller) -> list[Path]:
    """An SC and a SEG of a film, an SC filed under Modality DX, and a CT image: none is a film to label."""
    from monaifrac.dicom.sc import build_capture
    from monaifrac.dicom.seg import make_segmentation

    film = pydicom.dcmread(_film(folder, 90))
    label = np.zeros((160, 192), np.uint8)
    label[60:100, 20:170] = 1
    paths = []
    capture = build_capture(film, label, 0.2, 0.5)
    save_dataset(capture, folder / "sc.dcm")
    capture.SOPInstanceUID = pydicom.uid.generate_uid()
    capture.Modality = "DX"  # an SC filed under DX: its SOP class says it is no film
    save_dataset(capture, folder / "sc_dx.dcm")
    save_dataset(make_segmentation(film, label, 0.2, 0.5), folder / "seg.dcm")
    ct = pydicom.dcmread(_film(folder, 91))
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ct.Modality = "CT"
    ct.save_as(folder / "ct.dcm", enforce_file_format=True)
    return [folder / "sc.dcm", folder / "sc_dx.dcm", folder / "seg.dcm", folder / "ct.dcm"]


def test_an_unreadable_film_is_one_line_and_other_series_are_ignored(orthanc, labeller, tmp_path, caplog):
    folder = tmp_path / "films"
    good = _film(folder, 1)
    bad = pydicom.dcmread(_film(folder, 2))
    bad.PixelData = bad.PixelData[: len(bad.PixelData) // 3]  # a third of the pixels: no reader can use it
    bad.save_as(folder / "bad.dcm", enforce_file_format=True)
    others = _not_films(folder, labeller)
    [good_ds, bad_ds, *other_ds] = _store(orthanc, good, folder / "bad.dcm", *others)
    captures_before = _captures_per_study(orthanc)
    state = tmp_path / "state"
    for _ in range(2):  # a second pass finds nothing new: each film handled once
        watcher = Watcher(orthanc.dicomweb_url, state, labeller, "sc", *orthanc.auth, timeout=5)
        with caplog.at_level(logging.INFO, logger="monaifrac.serving.watch"):
            watcher.run(once=True)
        watcher.close()
    records = WatchState(state).records
    assert set(records) == {good_ds.SOPInstanceUID, bad_ds.SOPInstanceUID}
    assert records[good_ds.SOPInstanceUID]["status"] == "done"
    assert records[bad_ds.SOPInstanceUID]["status"] == "unreadable"
    lines = [r.getMessage() for r in caplog.records
             if r.name.startswith("monaifrac") and bad_ds.SOPInstanceUID in r.getMessage()]
    assert len(lines) == 1 and "cannot be read" in lines[0] and lines[0].endswith("no object"), lines
    after = _captures_per_study(orthanc)
    assert after.get(bad_ds.StudyInstanceUID, 0) == captures_before.get(bad_ds.StudyInstanceUID, 0)
    assert after[good_ds.StudyInstanceUID] == captures_before.get(good_ds.StudyInstanceUID, 0) + 1
    for ds in other_ds:  # nothing new in the studies of the SC, SEG, SC-as-DX and CT
        assert after.get(ds.StudyInstanceUID, 0) == captures_before.get(ds.StudyInstanceUID, 0)


# ------------------------------------------------------------------------------------- its benchmark


def test_benchmark_watch_counts_each_film_and_each_object_in_the_pacs(tmp_path):
    """``monaifrac benchmark watch`` on 4 synthetic films, burst then paced: every figure the README quotes is in
    the JSON, and 'done', 'lost' and the objects in the PACS are counted, not assumed."""
    if not ensure_orthanc_installed():
        pytest.skip("no Orthanc with its DICOMweb plugin (`apt-get install orthanc orthanc-dicomweb`)")
    if not MODEL.is_file():
        pytest.skip(f"no shipped weights at {MODEL}")
    from tests.integration.conftest import check_rc, run_cmd

    out = tmp_path / "watch.json"
    stdout = check_rc(run_cmd([sys.executable, "-m", "monaifrac.benchmark", "watch", "--films", "4", "--mode", "burst",
                               "paced", "--interval", "0.3", "--poll", "0.2", "--synthetic", "--dicom", "sr,sc",
                               "--json", str(out)], timeout=600))
    report = json.loads(out.read_text())
    assert report["benchmark"] == "watch" and report["machine"]["cpu"] and report["results"]["source"] == "synthetic"
    assert report["tables"][0]["title"] in stdout and "goal burst of 4: latency p50 <= 3 s" in stdout
    for mode in ("burst", "paced"):
        r = report["results"]["modes"][mode]
        assert r["done"] == r["state_lines"] == 4 and r["lost"] == 0 and r["duplicate_lines"] == 0, r
        assert r["results_in_pacs"] == {"sr": 4, "sc": 4}  # Orthanc's own count of the objects stored
        lat = r["latency_s"]
        assert lat["n"] == 4 and 0 < lat["median"] <= lat["p95"] <= lat["max"]
        assert 0 < r["label_s"]["median"] and r["label_s"]["max"] < lat["max"]  # labelling is a part of the wait
    assert report["results"]["modes"]["paced"]["interval_s"] == 0.3
    met = {g["goal"].split(":")[0]: g["met"] for g in report["goals"]}
    assert set(met) == {"burst", "paced", "burst of 4"} and met["burst"] and met["paced"]
