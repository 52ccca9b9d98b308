"""monaifrac/dicom/labels.py: a SEG's fracture mask as COCO polygons that rasterise back to the same pixels."""

from __future__ import annotations

import numpy as np
import pydicom
from skimage.draw import ellipse

from monaifrac.data.masks import rasterize_polygons
from monaifrac.dicom.labels import body_part_flags, fracture_polygons


def test_fracture_polygons_rasterise_back_to_the_mask_as_prepare_rasterises_them():
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = np.zeros((70, 50), bool)
        for _ in range(3):
            rows, cols = ellipse(rng.integers(0, 70), rng.integers(0, 50), rng.integers(1, 12), rng.integers(1, 12),
                                 mask.shape, rotation=rng.uniform(0, np.pi))
            mask[rows, cols] = True
        mask[0, :3] = True  # along the film's edge
        mask[69, 49] = True  # a pixel alone in the corner
        mask[30, 30] = mask[31, 31] = True  # touching by a corner only
        polygons, added = fracture_polygons(mask)
        back, _stats = rasterize_polygons(polygons, *mask.shape)
        assert added == 0
        np.testing.assert_array_equal(back, mask)


def test_a_hole_in_a_fracture_is_filled_and_counted():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    mask[9:11, 9:11] = False
    polygons, added = fracture_polygons(mask)
    assert added == 4 and rasterize_polygons(polygons, 20, 20)[0].sum() == mask.sum() + 4
    assert fracture_polygons(np.zeros((5, 5), bool)) == ([], 0)


def test_body_part_examined_sets_fracatlas_columns():
    film = pydicom.Dataset()
    assert body_part_flags(film) == {"hand": 0, "leg": 0, "hip": 0, "shoulder": 0}
    film.BodyPartExamined = "KNEE"
    assert body_part_flags(film) == {"hand": 0, "leg": 1, "hip": 0, "shoulder": 0}


def test_pacs_pull_without_out_or_labels_says_what_to_give(capsys):
    from monaifrac.cli import main

    assert main(["pacs-pull", "--url", "http://127.0.0.1:9/dicom-web"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "give --out FOLDER (the films), --labels FOLDER" in err
