"""From the PACS and back: DX films pulled from a real Orthanc, labelled, their SEGs pushed and read back.

``monaifrac synth --dicom`` makes DX films (one MONOCHROME1, one with a pixel spacing),
``monaifrac pacs-push --films`` stores them, ``monaifrac pacs-pull`` retrieves them by QIDO-RS +
WADO-RS, ``monaifrac infer --dicom-seg`` labels them with the bundle trained on synthetic films
(the ``trained`` fixture), and ``monaifrac pacs-push`` stores the SEGs. Each SEG is then read back
over DICOMweb and decoded with highdicom: pixel for pixel the label map PNG, referencing its film.
A refused password, a dead server and a silent one each end a command with exit status 2 and one
line. ``infer`` and one refused push run as a user types them, in their own process; the other
commands run through ``monaifrac.cli.main`` in this one (each process start costs seconds of imports).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from monaifrac.cli import main
from monaifrac.dicom import orthanc as orthanc_module
from monaifrac.io import read_label_map, read_radiograph
from tests.integration.conftest import PACS_ENV_NAMES as ENV_NAMES, REPO

pytestmark = pytest.mark.slow

N_FILMS = 3
SMALL_FILMS = ["--set", "film_max_side=192", "film_long_side=192"]  # the trained bundle's scale (160 x 192 films)


def monaifrac(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m monaifrac ARGS`` from the repository root; stdout and stderr kept apart."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return subprocess.run([sys.executable, "-m", "monaifrac", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(base, PYTHONUNBUFFERED="1", **(env or {})))


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"rc {proc.returncode}: {' '.join(proc.args)}\n{proc.stdout[-4000:]}\n" \
                                 f"{proc.stderr[-4000:]}"
    return proc.stdout


def in_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``monaifrac ARGS`` through ``monaifrac.cli.main`` in this process, with ``env`` set while it runs."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for name in ENV_NAMES:
            mp.delenv(name, raising=False)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        rc = main(list(args))
    return subprocess.CompletedProcess(["monaifrac", *args], rc, out.getvalue(), err.getvalue())


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"monaifrac {command}: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def credentials_env(pacs, password: str | None = None) -> dict:
    return {orthanc_module.USER_ENV: pacs.auth[0], orthanc_module.PASSWORD_ENV: password or pacs.auth[1]}


def client(pacs) -> DICOMwebClient:
    session = create_session_from_user_pass(*pacs.auth)
    session.trust_env = False
    return DICOMwebClient(url=pacs.dicomweb_url, session=session)


def instance_count(pacs) -> int:
    session = requests.Session()
    session.trust_env = False
    return session.get(pacs.url + "/statistics", auth=pacs.auth, timeout=10).json()["CountInstances"]


@pytest.fixture(scope="module")
def round_trip(pacs, trained, tmp_path_factory):
    """Films up, films down, labelled, SEGs up. Returns the folders and what each step printed."""
    root = tmp_path_factory.mktemp("pacs_infer")
    env = credentials_env(pacs)
    ok(in_process("synth", str(root / "synth"), "--n", str(N_FILMS), "--dicom"))
    uploaded = ok(in_process("pacs-push", str(root / "synth" / "dicom"), "--films", "--url", pacs.dicomweb_url,
                             env=env))
    pulled = ok(in_process("pacs-pull", "--url", pacs.dicomweb_url, "--out", str(root / "pulled"), env=env))
    # the input of infer: the pulled films, the MONOCHROME1 one renamed without an extension, and the
    # JPG that film was made from (its label map must come out the same)
    films = root / "films"
    shutil.copytree(root / "pulled", films)
    [mono1] = [p for p in films.iterdir() if pydicom.dcmread(p, stop_before_pixels=True).PhotometricInterpretation
               == "MONOCHROME1"]
    stem = pydicom.dcmread(mono1, stop_before_pixels=True).PatientID.removeprefix("SYNTH-")
    mono1.rename(films / "FILM0001")
    [jpg] = (root / "synth" / "images").rglob(f"{stem}.jpg")
    shutil.copy(jpg, films / "photo.jpg")
    out = root / "out"
    inferred = ok(monaifrac("infer", str(films), "--dicom-seg", "--bundle-root", str(trained.bundle_root),
                            "--output-dir", str(out), *SMALL_FILMS, timeout=600))
    pushed = ok(in_process("pacs-push", str(out), "--url", pacs.dicomweb_url, env=env))
    return {"root": root, "films": films, "out": out, "uploaded": uploaded, "pulled": pulled, "inferred": inferred,
            "pushed": pushed}


def test_pulled_films_are_the_uploaded_dx_films(round_trip):
    root = round_trip["root"]
    sent = {pydicom.dcmread(p).SOPInstanceUID: p for p in (root / "synth" / "dicom").glob("*.dcm")}
    pulled = sorted((root / "pulled").iterdir())
    assert sorted(p.name for p in pulled) == sorted(f"{uid}.dcm" for uid in sent)
    assert round_trip["pulled"].strip().splitlines()[-1].startswith(f"pulled {N_FILMS} DX instance(s) of all studies")
    photometrics = set()
    for path in pulled:
        ds = pydicom.dcmread(path)
        original = pydicom.dcmread(sent[ds.SOPInstanceUID])
        assert ds.Modality == "DX"
        photometrics.add(ds.PhotometricInterpretation)
        assert ("PixelSpacing" in ds) == ("PixelSpacing" in original)
        np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)
        np.testing.assert_array_equal(read_radiograph(path)[0], read_radiograph(sent[ds.SOPInstanceUID])[0])
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    assert not list((root / "pulled").glob(".*"))  # no temporary file left


def test_each_dicom_film_gets_a_seg_and_the_jpg_none(round_trip):
    films, out = round_trip["films"], round_trip["out"]
    stems = sorted(p.stem if p.suffix == ".dcm" else p.name for p in films.iterdir() if p.name != "photo.jpg")
    assert sorted(p.name for p in out.glob("*.seg.dcm")) == sorted(f"{s}.seg.dcm" for s in stems)
    assert sorted(p.name for p in out.glob("*.png")) == sorted([f"{s}.png" for s in stems] + ["photo.png"])
    assert "photo.seg.dcm" not in {p.name for p in out.iterdir()}
    pushed = round_trip["pushed"].strip().splitlines()
    assert pushed[-1].startswith(f"stored {N_FILMS} instance(s)")
    assert all("(SEG, SOP Instance " in line for line in pushed[:-1])


def test_a_monochrome1_film_is_labelled_like_the_jpg_it_was_made_from(round_trip):
    """FILM0001 is stored inverted (MONOCHROME1), 12 bits; photo.jpg is the same film, 8 bits, bone bright.
    Read the wrong way round, the network would see a negative; read right, the same film."""
    from_dicom = read_label_map(round_trip["out"] / "FILM0001.png")
    from_jpg = read_label_map(round_trip["out"] / "photo.png")
    assert from_dicom.shape == from_jpg.shape
    assert np.mean(from_dicom != from_jpg) < 0.01  # 12-bit against 8-bit grey levels: a few pixels at most


def test_segs_read_back_over_dicomweb_are_the_label_maps(pacs, round_trip):
    films, out = round_trip["films"], round_trip["out"]
    with open(out / "predictions.csv", newline="") as f:
        scores = {Path(row["film"]).name: float(row["fracture_score"]) for row in csv.DictReader(f)}
    threshold = float(json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())["presence_threshold"])
    web = client(pacs)
    for film_path in sorted(p for p in films.iterdir() if p.name != "photo.jpg"):
        film = pydicom.dcmread(film_path, stop_before_pixels=True)
        stem = film_path.stem if film_path.suffix == ".dcm" else film_path.name
        series = web.search_for_series(film.StudyInstanceUID, search_filters={"Modality": "SEG"})
        assert len(series) == 1, (film_path, series)
        series_uid = pydicom.Dataset.from_json(series[0]).SeriesInstanceUID
        [instance] = web.search_for_instances(film.StudyInstanceUID, series_uid)
        sop_uid = pydicom.Dataset.from_json(instance).SOPInstanceUID
        seg = hd.seg.Segmentation.from_dataset(web.retrieve_instance(film.StudyInstanceUID, series_uid, sop_uid))
        # it points at its film
        [referenced] = seg.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == film.SeriesInstanceUID
        assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [film.SOPInstanceUID]
        # pixel for pixel the label map written beside it, at the film's rows and columns
        label = read_label_map(out / f"{stem}.png")
        assert label.shape == (film.Rows, film.Columns) == (seg.Rows, seg.Columns)
        decoded = seg.get_pixels_by_source_instance([film.SOPInstanceUID], combine_segments=True)[0]
        np.testing.assert_array_equal(decoded, label)
        assert set(np.unique(label)) <= {0, 1, 2} and (label == 1).any()  # the trained bundle finds bone
        # the presence call of predictions.csv, in the series description
        match = re.fullmatch(r"monaifrac fracture (\d\.\d\d) \((fractured|not fractured); threshold (\d\.\d\d)\)",
                             seg.SeriesDescription)
        assert match, seg.SeriesDescription
        score = scores[film_path.name]
        assert abs(float(match[1]) - score) <= 0.005 + 1e-6
        assert float(match[3]) == pytest.approx(round(threshold, 2))
        assert match[2] == ("fractured" if score >= threshold else "not fractured")


def test_a_refused_password_ends_push_and_pull_with_one_line_and_changes_nothing(pacs, round_trip, tmp_path):
    before = instance_count(pacs)
    env = credentials_env(pacs, password="not-the-password")
    # as typed, in its own process: nothing but the one line reaches the terminal
    line = one_error_line(monaifrac("pacs-push", str(round_trip["out"]), "--url", pacs.dicomweb_url, env=env),
                          "pacs-push")
    assert f"{pacs.dicomweb_url}: HTTP 401 Unauthorized" in line and "credentials were refused" in line
    line = one_error_line(in_process("pacs-pull", "--url", pacs.dicomweb_url, "--out", str(tmp_path / "p"),
                                     "--user", pacs.auth[0], "--password", "wrong"), "pacs-pull")
    assert "HTTP 401 Unauthorized" in line
    assert instance_count(pacs) == before
    assert not (tmp_path / "p").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_server_ends_push_and_pull_with_one_line(pacs, round_trip, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/dicom-web"  # nothing listens there any more
    env = credentials_env(pacs)
    line = one_error_line(in_process("pacs-push", str(round_trip["out"]), "--url", url, env=env), "pacs-push")
    assert f"{url}: cannot reach the PACS to store " in line and "Connection refused (3 tries;" in line
    line = one_error_line(in_process("pacs-pull", "--url", url, "--out", str(tmp_path / "p"), env=env), "pacs-pull")
    assert "cannot reach the PACS to search for DX series: Connection refused" in line
    assert not (tmp_path / "p").exists()


def test_a_server_that_never_answers_times_out_with_one_line(pacs, round_trip):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
        proc = in_process("pacs-push", str(round_trip["out"]), "--url", url, "--timeout", "1",
                          env=credentials_env(pacs))
    line = one_error_line(proc, "pacs-push")
    assert f"{url}: no answer within 1 s while trying to store " in line and "(timeout, 3 tries)" in line
