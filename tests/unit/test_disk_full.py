"""A disk that fills up part-way through a write (ENOSPC, simulated by patching the library writer).

For every writer the project uses (NIfTI through nibabel, PNG through PIL, text), a failure
half-way through one file must leave the files written before intact, no temporary file
behind, and an error that names the file that could not be written; the command line says
it in one line.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image

from monaifrac import io as mio
from monaifrac.cli import main
from tests.conftest import ALL_IDS, FILM_H, FILM_W, hidden_or_temp_files, make_mini_fracatlas


def _enospc():
    return OSError(errno.ENOSPC, "No space left on device")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_on(real, name_part: str, path_arg: int = 1):
    """``real`` wrapped so that its call for a file named like ``name_part`` writes half, then fails.

    A plain function (not a callable object), so that it binds ``self`` when patched onto a class.
    """
    def writer(*args, **kwargs):
        target = Path(str(args[path_arg]))
        result = real(*args, **kwargs)
        if name_part in target.name:
            data = target.read_bytes()
            target.write_bytes(data[: len(data) // 2])  # the disk filled up half-way
            writer.failed = True
            raise _enospc()
        return result

    writer.failed = False
    return writer


def _check_one_line(capsys, rc: int, final_name: str):
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and final_name in err, err
    assert "Traceback" not in err and "/." not in err  # the real file, not the hidden temporary one


def test_prepare_keeps_the_earlier_outputs_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    atlas = make_mini_fracatlas(tmp_path / "atlas")
    out = tmp_path / "prepared"
    assert main(["prepare", str(atlas.root), "--out", str(out), "--quiet"]) == 0
    before = _snapshot(out)
    victim = f"{ALL_IDS[5]}.nii.gz"

    monkeypatch.setattr(nibabel, "save", fail_on(nibabel.save, ALL_IDS[5]))  # prepare's workers fork: they have it
    rc = main(["prepare", str(atlas.root), "--out", str(out), "--quiet"])
    _check_one_line(capsys, rc, victim)
    assert _snapshot(out) == before  # every file as the first run left it, the failed one included
    assert hidden_or_temp_files(out) == []


def test_a_label_png_that_fails_leaves_the_old_one_and_no_temporary(tmp_path, monkeypatch):
    from monai.transforms import SaveImage

    target = tmp_path / "film.png"
    Image.fromarray(np.full((FILM_H, FILM_W), 1, np.uint8)).save(target)
    before = target.read_bytes()
    save = SaveImage(output_dir=str(tmp_path), output_ext=".png", output_postfix="", separate_folder=False,
                     output_dtype=np.uint8, resample=False, writer=mio.AtomicPILWriter, print_log=False)
    monkeypatch.setattr(Image.Image, "save", fail_on(Image.Image.save, "film.png"))
    label = np.zeros((1, FILM_W, FILM_H), np.uint8)
    with pytest.raises(Exception) as err:
        save(label, meta_data={"filename_or_obj": str(tmp_path / "film.jpg"), "spatial_shape": (FILM_W, FILM_H)})
    assert str(target) in str(err.value) or str(target) in str(err.value.__cause__)
    assert target.read_bytes() == before
    assert hidden_or_temp_files(tmp_path) == []


def test_score_and_report_fail_whole_and_say_which_file(tmp_path, monkeypatch, capsys):
    atlas = make_mini_fracatlas(tmp_path / "atlas")
    preds = tmp_path / "preds"
    preds.mkdir()
    for case_id in ALL_IDS:
        Image.fromarray(np.zeros((FILM_H, FILM_W), np.uint8)).save(preds / f"{case_id}.png")
    score = tmp_path / "score"
    assert main(["score", str(preds), "--truth", str(atlas.root), "--out", str(score), "--bootstrap", "20", "--pred-kind", "labels"]) == 0
    capsys.readouterr()
    before = _snapshot(score)
    real_write_text = Path.write_text

    monkeypatch.setattr(Path, "write_text", fail_on(real_write_text, "metrics.json", path_arg=0))
    rc = main(["score", str(preds), "--truth", str(atlas.root), "--out", str(score), "--bootstrap", "20", "--pred-kind", "labels"])
    _check_one_line(capsys, rc, "metrics.json")
    assert _snapshot(score) == before
    assert hidden_or_temp_files(score) == []

    monkeypatch.setattr(Path, "write_text", fail_on(real_write_text, "report.html", path_arg=0))
    rc = main(["report", str(score), "--out", str(tmp_path / "report.html")])
    _check_one_line(capsys, rc, "report.html")
    assert not (tmp_path / "report.html").exists()
    assert hidden_or_temp_files(tmp_path) == []
    assert json.loads((score / "metrics.json").read_text())  # still the complete earlier table
