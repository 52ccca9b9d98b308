"""monaifrac.serving.requests: what the MONAI Label app accepts as a film or a study id."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from monaifrac.serving.requests import RequestError, check_film, is_upload, resolve_study
from tests.conftest import draw_film, save_image, stored_for_orientation


def test_whole_films_pass_and_bad_ones_get_422_naming_the_problem(tmp_path):
    check_film(save_image(tmp_path / "ok.png", draw_film()))
    check_film(save_image(tmp_path / "turned.jpg", stored_for_orientation(draw_film(), 6), orientation=6))
    whole = (tmp_path / "ok.png").read_bytes()
    cases = {"text.png": (b"not a film", "not an image"), "empty.jpg": (b"", "empty"),
             "cut.png": (whole[: len(whole) // 2], "truncated")}
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(RequestError) as err:
            check_film(tmp_path / name, name="uploaded file")
        assert err.value.status == 422
        assert str(err.value).startswith("uploaded file: ") and words in str(err.value)
        assert str(tmp_path) not in str(err.value)  # the client is not told the server's paths


def test_study_ids_are_names_never_paths():
    studies = ["film_a", "film_b"]
    assert resolve_study("film_a", studies) == "film_a"
    for bad in ("../film_a", "/etc/hosts", "sub/film_a", "..", ".", "", "a\\b"):
        with pytest.raises(RequestError) as err:
            resolve_study(bad, studies)
        assert err.value.status == 422, bad
    with pytest.raises(RequestError) as err:
        resolve_study("film_c", studies)
    assert err.value.status == 404


def test_only_the_endpoints_temporary_names_count_as_uploads(tmp_path):
    made = tempfile.NamedTemporaryFile(suffix=".png").name  # exactly how MONAI Label names an upload
    assert is_upload(made)
    assert is_upload(str(tmp_path / Path(made).name), temp_dir=tmp_path)
    assert not is_upload(str(tmp_path / Path(made).name))  # same name, another folder
    assert not is_upload("/etc/hosts")
    assert not is_upload(str(Path(tempfile.gettempdir()) / "film_a.png"))
    assert not is_upload("tmpabcdefgh.png")  # relative
