"""monaifrac.transforms.SaveOverlayd and monaifrac.inference.collect_films."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monaifrac.inference import REPORT_NAME, collect_films
from monaifrac.io import from_monai_frame, to_monai_frame, write_nifti
from monaifrac.transforms import SaveOverlay, SaveOverlayd
from monaifrac.visualize import CLASS_COLOURS, overlay

FILM_HW = (20, 30)  # displayed (H, W)


def film_hw() -> np.ndarray:
    yy, xx = np.mgrid[0:FILM_HW[0], 0:FILM_HW[1]]
    return (40 + 4 * xx + 2 * yy).astype(np.uint8)


def label_hw() -> np.ndarray:
    lab = np.zeros(FILM_HW, dtype=np.uint8)
    lab[5:15, 3:25] = 1
    lab[8:11, 10:14] = 2
    return lab


# ----------------------------------------------------------------------------- SaveOverlayd


@pytest.mark.parametrize("source, stem", [("/data/IMG0000001.jpg", "IMG0000001"), ("/d/case.nii.gz", "case"),
                                          ("/d/scan.v2.dcm", "scan.v2"), ("/d/FILM.PNG", "FILM")])
def test_save_overlayd_writes_the_film_size_in_rgb(tmp_path, source, stem):
    image = MetaTensor(torch.as_tensor(to_monai_frame(film_hw())[None].astype(np.float32) / 255),
                       meta={"filename_or_obj": source})
    pred = torch.as_tensor(to_monai_frame(label_hw())[None])  # (1, W, H) as after AsDiscreted
    data = {"image": image, "pred": pred, "other": 1}
    out = SaveOverlayd(keys="pred", image_key="image", output_dir=tmp_path)(data)
    assert out.keys() == data.keys() and out["pred"] is pred  # the data passes through unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}_overlay.png"]
    picture = Image.open(tmp_path / f"{stem}_overlay.png")
    assert picture.mode == "RGB" and picture.size == (FILM_HW[1], FILM_HW[0])  # width x height of the film
    expected = overlay(from_monai_frame(image[0].numpy()), label_hw())
    np.testing.assert_array_equal(np.asarray(picture), expected)
    rgb = np.asarray(picture).astype(int)
    inside_fracture = rgb[9, 12]
    assert inside_fracture[0] > inside_fracture[1] + 50  # fracture drawn red, in the displayed frame
    bone = rgb[6, 20]
    assert bone[2] > bone[0]  # bone blue-ish
    assert rgb[0, 0, 0] == rgb[0, 0, 1] == rgb[0, 0, 2]  # background stays grey


def test_save_overlay_takes_a_label_without_channel(tmp_path):
    path = SaveOverlay(tmp_path, postfix="_ov")(to_monai_frame(film_hw())[None], to_monai_frame(label_hw()), "x")
    assert path == tmp_path / "x_ov.png"
    assert Image.open(path).size == (FILM_HW[1], FILM_HW[0])
    assert tuple(np.asarray(Image.open(path))[9, 12]) != tuple(np.asarray(Image.open(path))[0, 0])
    assert CLASS_COLOURS[2] == tuple(np.asarray(Image.open(path))[7, 12])  # the fracture outline (row above)


# ----------------------------------------------------------------------------- collect_films


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "films"
    d.mkdir()
    Image.fromarray(film_hw()).save(d / "a.jpg")
    Image.fromarray(film_hw()).save(d / "b.png")
    write_nifti(d / "c.nii.gz", to_monai_frame(film_hw()))
    write_nifti(d / "volume.nii.gz", np.zeros((4, 5, 6), dtype=np.uint8))  # 3D, not a film
    (d / "bad.jpg").write_text("not an image\n")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not a film suffix: not even looked at\n")
    (d / "sub").mkdir()
    Image.fromarray(film_hw()).save(d / "sub" / "deeper.png")  # not recursive
    return d


def test_folder(folder, tmp_path):
    out = tmp_path / "out"
    films = collect_films(folder, out)
    assert films == [{"image": str(folder / n)} for n in ("a.jpg", "b.png", "c.nii.gz")]
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["films"] == [f["image"] for f in films]
    problems = {r["file"]: r["problem"] for r in report["rejected"]}
    assert set(problems) == {str(folder / n) for n in ("bad.jpg", "empty.png", "volume.nii.gz")}
    assert "empty" in problems[str(folder / "empty.png")]
    assert "not an image" in problems[str(folder / "bad.jpg")]
    assert "2D" in problems[str(folder / "volume.nii.gz")]


def test_one_file_and_a_list(folder, tmp_path):
    assert collect_films(str(folder / "b.png"), tmp_path / "o1") == [{"image": str(folder / "b.png")}]
    films = collect_films([folder / "c.nii.gz", str(folder / "a.jpg"), folder / "notes.txt", folder / "bad.jpg"],
                          tmp_path / "o2")
    assert films == [{"image": str(folder / "c.nii.gz")}, {"image": str(folder / "a.jpg")}]  # order kept
    report = json.loads((tmp_path / "o2" / REPORT_NAME).read_text())
    problems = {r["file"]: r["problem"] for r in report["rejected"]}
    assert set(problems) == {str(folder / "notes.txt"), str(folder / "bad.jpg")}
    assert "unsupported file type" in problems[str(folder / "notes.txt")]


def test_nothing_readable_gives_an_empty_list_and_a_report(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.png").write_bytes(b"")
    assert collect_films(d, tmp_path / "out") == []
    assert json.loads((tmp_path / "out" / REPORT_NAME).read_text())["rejected"][0]["file"] == str(d / "x.png")


def test_missing_path_raises(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        collect_films([folder / "a.jpg", folder / "nope.jpg"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        collect_films(tmp_path / "no_such_folder", tmp_path / "out")


# ----------------------------------------------------------------------------- ArgMaxd, percentile scaling


def test_argmaxd_equals_monai_argmax_ties_included():
    from monai.transforms import AsDiscreted

    from monaifrac.transforms import ArgMaxd

    gen = torch.Generator().manual_seed(0)
    pred = MetaTensor(torch.randn(3, 23, 17, generator=gen), meta={"filename_or_obj": "f.jpg"})
    pred[:, :4] = 0.5  # three-way ties: the first channel wins, as with torch.argmax
    pred[0, 4:8], pred[1:, 4:8] = -1.0, 2.0  # two-way ties between channels 1 and 2
    ours = ArgMaxd("pred", dtype=torch.uint8)({"pred": pred})["pred"]
    monai = AsDiscreted("pred", argmax=True)({"pred": pred})["pred"]
    assert ours.shape == (1, 23, 17) and ours.dtype == torch.uint8 and isinstance(ours, MetaTensor)
    assert ours.meta["filename_or_obj"] == "f.jpg"
    assert torch.equal(ours.as_tensor().long(), monai.as_tensor().long())
    assert (ours[0, :4] == 0).all() and (ours[0, 4:8] == 1).all()


@pytest.mark.parametrize("kind", ["uint8 film", "float film", "constant", "numpy"])
def test_percentile_scaling_equals_monai(kind):
    from monai.transforms import ScaleIntensityRangePercentilesd as MonaiScale

    from monaifrac.transforms import ScaleIntensityRangePercentilesd

    gen = torch.Generator().manual_seed(1)
    img = {"uint8 film": torch.randint(0, 256, (1, 45, 37), generator=gen).float(),
           "float film": torch.randn(1, 60, 50, generator=gen) * 1000,
           "constant": torch.full((1, 9, 7), 3.0),
           "numpy": np.random.default_rng(2).random((1, 30, 20)).astype(np.float32)}[kind]
    if isinstance(img, torch.Tensor):
        img = MetaTensor(img, meta={"filename_or_obj": "f.jpg"})
    args = dict(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    ours = ScaleIntensityRangePercentilesd("image", **args)({"image": img})["image"]
    monai = MonaiScale("image", **args)({"image": img})["image"]
    assert type(ours) is type(monai) and ours.dtype == monai.dtype and ours.shape == monai.shape
    np.testing.assert_allclose(np.asarray(ours), np.asarray(monai), atol=1e-6)
    if isinstance(img, MetaTensor):
        assert ours.meta["filename_or_obj"] == "f.jpg"
