"""``monaifrac benchmark compare``: the per-film difference between two runs' label maps."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
from PIL import Image

from monaifrac.benchmark.cli import main


def run(capsys, *args) -> SimpleNamespace:
    """``monaifrac benchmark compare ARGS`` in this process (it sets no global state): exit status, stdout, stderr."""
    rc = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def test_counts_changed_pixels_and_fracture_changes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    lab = np.zeros((10, 10), np.uint8)
    lab[2:5, 2:5] = 2  # 9 fracture pixels
    moved = lab.copy()
    moved[4, 4] = 1  # one fracture pixel becomes bone: 1 % of the film, 1/9 of the fracture union
    for run_dir, first in ((a, lab), (b, moved)):
        Image.fromarray(first).save(run_dir / "f1.png")
        Image.fromarray(lab).save(run_dir / "f2.png")
        Image.fromarray(np.full((10, 10), 255, np.uint8)).save(run_dir / "f1_overlay.png")  # not a label map
    proc = run(capsys, a, b, "--json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out.json").read_text())["results"]
    assert "pixels with another label" in proc.stdout
    assert summary["films"] == 2 and summary["identical_films"] == 1
    assert summary["pixels_changed_max"] == 0.01 and summary["pixels_changed_mean"] == 0.005
    assert summary["pixels_changed_max_film"] == "f1"
    assert abs(summary["class_2_changed_over_union_max"] - 1 / 9) < 1e-12


def test_different_films_or_sizes_are_errors(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(a / "f1.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(b / "other.png")
    proc = run(capsys, a, b)
    assert proc.returncode == 2 and "other" in proc.stderr and "Traceback" not in proc.stderr
    (b / "other.png").unlink()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(b / "f1.png")
    proc = run(capsys, a, b)
    assert proc.returncode == 2 and "f1" in proc.stderr and "sizes" in proc.stderr
