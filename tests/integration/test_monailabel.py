"""The bundle served by MONAI Label 0.8.5 over real HTTP (``scripts/monailabel-serve``).

One server for the module, on a free loopback port, with a studies folder of synthetic films
and the shipped ``bundle/models/model.pt``; it is stopped at the end whatever happens. The
MONAI Label environment is built once per machine by ``scripts/monailabel-env.sh`` (about 5
minutes the first time) and reused after that. Tests run in file order: the retraining test
comes last because it changes the served model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monaifrac.serving.client import MonaiLabelClient as Client
from monaifrac.serving.client import free_port as _free_port
from monaifrac.serving.client import stop_server
from tests.conftest import draw_film, save_image, stored_for_orientation
from tests.integration.conftest import INFERENCE_JSON, REPO, bundle_cmd, check_rc, run_cmd

pytestmark = pytest.mark.slow

MODEL = "fracture_xray_segmentation"
FILMS = {"film_a": 0, "film_b": 25, "film_c": 50}  # id -> brightness shift; 200 x 150 (H x W) JPGs
ROTATED = "rotated"  # uploaded only: stored turned, EXIF orientation 6


def _film(shade: int) -> np.ndarray:
    return draw_film(200, 150, shade=shade)


def _png(content: bytes, where: Path) -> np.ndarray:
    where.write_bytes(content)
    return np.asarray(Image.open(where))


def _upload_temp_files() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tmp*") if p.is_file()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    for name, shade in FILMS.items():
        save_image(studies / f"{name}.jpg", _film(shade))
    uploads = root / "uploads"
    save_image(uploads / f"{ROTATED}.jpg", stored_for_orientation(_film(10), 6), orientation=6)
    save_image(uploads / "plain.png", _film(40))
    (uploads / "text.png").write_text("this is not a film\n")
    (uploads / "empty.png").write_bytes(b"")
    whole = (uploads / "plain.png").read_bytes()
    (uploads / "truncated.png").write_bytes(whole[: len(whole) // 2])

    # what the bundle writes for the same films, with the same weights, through inference.json
    expected = root / "expected"
    for folder in (studies, uploads):
        films = [str(folder / f) for f in os.listdir(folder) if f.endswith(".jpg")] + \
                ([str(uploads / "plain.png")] if folder == uploads else [])
        check_rc(run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--input_files", repr(films),
                                    "--output_dir", str(expected))))

    env_proc = run_cmd(["bash", "scripts/monailabel-env.sh"], timeout=1800)
    check_rc(env_proc)
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(["scripts/monailabel-serve", str(studies), "--port", str(port),
                             "--app-dir", str(root / "app")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-4000:]
            try:
                if client.request("GET", "/info/", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /info/ within 240 s"
            time.sleep(1)
        yield client, root, expected
    finally:
        stop_server(proc)
        log.close()


def test_info_lists_the_bundle_as_2d_segmentation(server):
    client, _root, _expected = server
    status, _ctype, body = client.request("GET", "/info/")
    assert status == 200
    model = json.loads(body)["models"][MODEL]
    assert model["type"] == "segmentation"
    assert model["dimension"] == 2
    assert model["labels"] == {"bone": 1, "fracture": 2}


def test_infer_by_id_returns_what_inference_json_writes(server, tmp_path):
    client, _root, expected = server
    for name in FILMS:
        status, ctype, body = client.infer(f"image={name}&output=image")
        assert status == 200, body[:500]
        assert ctype == "image/png"
        got = _png(body, tmp_path / f"{name}.png")
        want = np.asarray(Image.open(expected / f"{name}.png"))
        assert got.shape == want.shape == (200, 150)
        assert set(np.unique(got)) <= {0, 1, 2}
        np.testing.assert_array_equal(got, want)
    # the film's fracture score travels with the label in the JSON answer
    status, _ctype, body = client.infer(f"image={next(iter(FILMS))}&output=json")
    assert status == 200
    assert 0.0 <= json.loads(body)["fracture_score"] <= 1.0


def test_uploaded_films_are_labelled_in_their_displayed_frame(server, tmp_path):
    client, root, expected = server
    for name in ("plain.png", f"{ROTATED}.jpg"):
        status, ctype, body = client.infer("output=image", files={"file": root / "uploads" / name})
        assert status == 200, body[:500]
        assert ctype == "image/png"
        got = _png(body, tmp_path / "got.png")
        want = np.asarray(Image.open(expected / f"{Path(name).stem}.png"))
        assert got.shape == want.shape == (200, 150)  # the rotated JPG is stored 150 x 200
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("query, upload, status, words", [
    ("output=image", "text.png", 422, "not an image"),
    ("output=image", "empty.png", 422, "empty"),
    ("output=image", "truncated.png", 422, "truncated"),
    ("image=no_such_film&output=image", None, 404, "no such image"),
    ("image=../studies/film_a&output=image", None, 422, "no paths"),
    ("image=/etc/hosts&output=image", None, 422, "no paths"),
])
def test_bad_requests_get_their_code_and_the_server_goes_on(server, query, upload, status, words):
    client, root, _expected = server
    before = _upload_temp_files()
    got_status, ctype, body = client.infer(query, files={"file": root / "uploads" / upload} if upload else None)
    assert got_status == status, body[:500]
    assert ctype == "application/json"
    assert words in json.loads(body)["detail"]
    assert _upload_temp_files() <= before  # a rejected upload leaves nothing in the temp folder
    assert client.infer("image=film_a&output=json")[0] == 200


def test_corrected_label_retrains_the_served_model(server, tmp_path):
    client, root, _expected = server
    weights = root / "app" / "model" / MODEL / "models" / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    first = _png(client.infer("image=film_a&output=image")[2], tmp_path / "first.png")
    for name in FILMS:  # a radiologist's correction: a fracture drawn on the bone bar
        label = _png(client.infer(f"image={name}&output=image")[2], tmp_path / f"{name}.png").copy()
        label[80:110, 40:70] = 2
        Image.fromarray(label).save(tmp_path / f"{name}_fixed.png")
        status, _ctype, body = client.request("PUT", f"/datastore/label?image={name}&tag=final",
                                              fields={"params": "{}"}, files={"label": tmp_path / f"{name}_fixed.png"})
        assert status == 200, body[:500]
    assert (root / "studies" / "labels" / "final" / "film_a.png").exists()

    status, _ctype, body = client.request("POST", f"/train/{MODEL}?run_sync=true",
                                          body={"max_epochs": 1, "device": "cpu", "val_split": 0.34}, timeout=600)
    assert status == 200, body[:2000]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != before
    after = _png(client.infer("image=film_a&output=image")[2], tmp_path / "after.png")
    assert after.shape == first.shape
    assert not np.array_equal(after, first)  # the next inference uses the retrained weights
