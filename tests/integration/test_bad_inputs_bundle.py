"""The bad-input corpus (tests/bad_inputs.py) through the bundle: ``monaifrac infer`` over the corpus
folder of films, as a user types it, and ``monaifrac evaluate`` over prepared odd films and over the
corpus's broken prepared folder, in this process (``monaifrac.cli.main``, as in
tests/integration/test_bundle_cli.py) to save start-up time. The model is the ``trained`` fixture's;
nothing is trained here."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_inputs import make_bad_inputs
from tests.integration.conftest import check_rc, run_cmd
from monaifrac.cli import main
from monaifrac.io import read_radiograph
from monaifrac.io import film_stem

pytestmark = pytest.mark.slow

# what inference refuses, and the words of each refusal (tests/unit/test_bad_inputs.py has the rest)
REFUSED = {"zero_byte.jpg": "file is empty", "text.jpg": "not an image file",
           "singleton3d.nii.gz": "not a 2D film", "nan.nii.gz": "non-finite pixel(s)"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    yield


def test_infer_over_a_folder_of_good_and_bad_films(trained, corpus, tmp_path):
    """Every readable film gets its label map at its displayed size; each bad file is reported, once,
    in one line naming it; no traceback."""
    folder, out = corpus["_films"], tmp_path / "out"
    log = check_rc(run_cmd([sys.executable, "-m", "monaifrac", "infer", str(folder), "--output-dir", str(out),
                            "--bundle-root", str(trained.bundle_root), "--set", "patch_size=[64,64]"]))
    assert "Traceback" not in log  # stdout and stderr together: what the user sees
    report = json.loads((out / "inference_report.json").read_text(encoding="utf-8"))
    rejected = {Path(r["file"]).name: r["problem"] for r in report["rejected"]}
    assert set(rejected) == set(REFUSED)
    for name, words in REFUSED.items():
        assert words in rejected[name]
        assert sum(f"{folder / name}: {rejected[name]}" in line for line in log.splitlines()) == 1
    good = sorted(p for p in folder.iterdir() if p.name not in REFUSED)
    assert sorted(Path(f) for f in report["films"]) == good
    with (out / "predictions.csv").open(encoding="utf-8") as f:
        scores = {Path(r["film"]).name: float(r["fracture_score"]) for r in csv.DictReader(f)}
    assert sorted(scores) == [p.name for p in good] and all(math.isfinite(s) for s in scores.values())
    for film in good:
        h, w = read_radiograph(film)[0].shape  # as displayed: EXIF 5-8 turned, 1 x 4000 kept
        label = Image.open(out / f"{film_stem(film.name)}.png")
        assert label.size == (w, h), (film.name, label.size, (w, h))
        assert set(np.unique(np.asarray(label)).tolist()) <= {0, 1, 2}, film.name


def test_evaluate_over_prepared_odd_films(trained, corpus, tmp_path):
    """16-bit, RGB(A), 8 x 8, 1 x 4000, EXIF 5 and 7, and names with spaces and non-ASCII letters,
    prepared, then evaluated: every film is scored."""
    from monaifrac.data.prepare import prepare

    data = tmp_path / "prepared"
    prepare(corpus["_atlas"]["root"], data, on_error="skip", workers=1, progress=False)
    ids = ["deep16", "rgb", "rgba", "tiny_8x8", "line_1x4000", "exif_5", "exif_7", "film with spaces",
           "röntgen_çatlak_骨", "IMG0000001"]
    items = [d for section in json.loads((data / "datalist.json").read_text()).values() for d in section
             if d["id"] in ids]
    (data / "datalist.json").write_text(json.dumps({"training": [], "validation": items, "test": []}))
    root = tmp_path / "root"
    assert main(["evaluate", str(data), "--bundle-root", str(root), "--model", str(trained.bundle_root / "models" /
                 "model.pt"), "--set", "patch_size=[64,64]", "num_workers=0"]) == 0
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["films"] == len(ids)
    with (root / "eval" / "val_fracture_dice_mean_raw.csv").open(encoding="utf-8") as f:
        scored = sorted(film_stem(r["filename"]) for r in csv.DictReader(f))
    assert scored == sorted(ids)


def test_evaluate_refuses_a_broken_dataset_in_one_line(trained, corpus, tmp_path, capsys):
    dataset = corpus["_dataset"]
    rc = main(["evaluate", str(dataset), "--bundle-root", str(tmp_path / "root"), "--model",
               str(trained.bundle_root / "models" / "model.pt"), "--set", "patch_size=[64,64]", "num_workers=0"])
    assert rc == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("monaifrac evaluate: error: preflight found 7 problem(s) in the evaluation data")
    assert str(dataset / "images" / "nifti_singleton_3d.nii.gz") in last
