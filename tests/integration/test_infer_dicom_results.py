"""``monaifrac infer --dicom KINDS`` writes each DICOM film's results beside its label map, and
``monaifrac pacs-push`` stores them (SC and SEG here; SR where ``monaifrac.dicom.sr`` exists).

The shipped weights at the synthetic films' small scale; commands through ``monaifrac.cli.main``
in this process; one Orthanc on 127.0.0.1, started and stopped by the test.
"""

from __future__ import annotations

import contextlib
import io

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from monaifrac.cli import main
from monaifrac.dicom.films import write_dx
from monaifrac.dicom.orthanc import PASSWORD_ENV, USER_ENV, OrthancServer, ensure_orthanc_installed
from monaifrac.io import read_label_map
from tests.conftest import draw_film
from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow

MODEL = REPO / "bundle" / "models" / "model.pt"
SMALL = ["--set", "film_max_side=192", "film_long_side=192"]


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def test_infer_writes_the_kinds_asked_for_and_pacs_push_stores_them(tmp_path, monkeypatch):
    if not MODEL.is_file():
        pytest.skip(f"no shipped weights at {MODEL}")
    films = tmp_path / "films"
    for i in range(2):
        write_dx(films / f"film{i}.dcm", draw_film(160, 192, 9 * i).astype(np.uint16) << 4, bits_stored=12)
    Image.fromarray(draw_film(160, 192)).save(films / "photo.jpg")
    out = tmp_path / "out"
    kinds = "sr,sc,seg" if _has_sr() else "sc,seg"
    rc, _, err = _run("infer", str(films), "--dicom", kinds, "--bundle-root", str(REPO / "bundle"), "--output-dir",
                      str(out), *SMALL)
    assert rc == 0, err
    suffixes = [".sr.dcm", ".sc.dcm", ".seg.dcm"] if _has_sr() else [".sc.dcm", ".seg.dcm"]
    expected = {f"film{i}{s}" for i in range(2) for s in suffixes}
    assert {p.name for p in out.glob("*.dcm")} == expected  # none for the JPG
    for i in range(2):
        film = pydicom.dcmread(films / f"film{i}.dcm")
        label = read_label_map(out / f"film{i}.png")
        seg = hd.seg.segread(out / f"film{i}.seg.dcm")
        np.testing.assert_array_equal(
            seg.get_pixels_by_source_instance([film.SOPInstanceUID], combine_segments=True)[0], label)
        capture = hd.imread(str(out / f"film{i}.sc.dcm"))
        assert capture.StudyInstanceUID == film.StudyInstanceUID and capture.pixel_array.shape == (160, 192, 3)

    # an unknown kind: one line, exit 2, nothing run
    rc, _, err = _run("infer", str(films), "--dicom", "sc,pdf", "--output-dir", str(tmp_path / "none"))
    assert rc == 2 and err.strip().splitlines() == [
        "monaifrac infer: error: --dicom: unknown DICOM result kind(s) pdf: choose from sr, sc, seg"]

    if not ensure_orthanc_installed():
        pytest.skip("no Orthanc with its DICOMweb plugin (`apt-get install orthanc orthanc-dicomweb`)")
    with OrthancServer(tmp_path / "pacs") as pacs:
        monkeypatch.setenv(USER_ENV, pacs.auth[0])
        monkeypatch.setenv(PASSWORD_ENV, pacs.auth[1])
        rc, printed, err = _run("pacs-push", str(out), "--url", pacs.dicomweb_url)
        assert rc == 0, err
        assert f"stored {len(expected)} instance(s)" in printed
        assert "(OT," in printed and "(SEG," in printed


def _has_sr() -> bool:
    try:
        import monaifrac.dicom.sr  # noqa: F401
    except ImportError:
        return False
    return True
