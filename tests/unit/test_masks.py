"""Polygon rasterisation, the 3-class label map and the bone pseudo-label, checked against
pixel counts worked out by hand (COCO convention: pixel (r, c) covers [c, c+1) x [r, r+1))."""

from __future__ import annotations

import numpy as np
import pytest

from monaifrac.data.masks import (
    BACKGROUND,
    BONE,
    FRACTURE,
    PolygonError,
    RasterStats,
    bone_pseudo_label,
    check_polygon,
    compose_label,
    rasterize_polygon,
    rasterize_polygons,
)


def box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def bbox(mask):
    """(row_min, col_min, row_max, col_max) of the True pixels."""
    rows, cols = np.nonzero(mask)
    return rows.min(), cols.min(), rows.max(), cols.max()


# ----------------------------------------------------------------------------- polygons


def test_square_covers_rows_and_columns_1_to_4():
    # Corners (1,1) and (5,5): columns 1..4 and rows 1..4 → 4 x 4 = 16 pixels.
    mask, clipped, enlarged = rasterize_polygon(box(1, 1, 5, 5), 10, 10)
    assert mask.dtype == bool and mask.shape == (10, 10)
    assert mask.sum() == 16
    expected = np.zeros((10, 10), bool)
    expected[1:5, 1:5] = True
    np.testing.assert_array_equal(mask, expected)
    assert not clipped and not enlarged


def test_rectangle_is_width_times_height_and_x_is_the_column():
    # x 2..9 (7 columns: 2-8), y 3..5 (2 rows: 3-4) on a 12-high, 10-wide film → 14 pixels.
    mask, clipped, _ = rasterize_polygon(box(2, 3, 9, 5), 12, 10)
    assert mask.shape == (12, 10)
    assert mask.sum() == 14
    assert bbox(mask) == (3, 2, 4, 8)
    assert not clipped


def test_triangle_lies_between_its_inner_and_touching_pixels():
    # Right triangle (0,0),(8,0),(0,8), area 32. Pixels wholly inside (c + r <= 6) number
    # 7+6+...+1 = 28; pixels it touches (c + r <= 7) number 8+7+...+1 = 36.
    mask, _, _ = rasterize_polygon([0, 0, 8, 0, 0, 8], 10, 10)
    rows, cols = np.nonzero(mask)
    assert 28 <= mask.sum() <= 36
    assert (rows + cols <= 7).all()
    assert mask[np.add.outer(np.arange(10), np.arange(10)) <= 6].all()


def test_union_of_two_overlapping_squares():
    # A = (1,1)-(5,5): 16 px; B = (3,3)-(7,7): 16 px; overlap (3,3)-(5,5): 4 px → 28.
    mask, stats = rasterize_polygons([box(1, 1, 5, 5), box(3, 3, 7, 7)], 10, 10)
    assert mask.sum() == 16 + 16 - 4
    assert stats == RasterStats(polygons=2, nonempty=2, clipped=0, enlarged=0)


def test_no_polygons_gives_an_empty_mask():
    mask, stats = rasterize_polygons([], 6, 7)
    assert mask.shape == (6, 7) and not mask.any()
    assert stats.polygons == 0


def test_polygon_partly_outside_is_clipped_and_counted():
    # (-2,-2)-(3,3) on 10x10: inside part is columns 0-2, rows 0-2 → 9 pixels.
    mask, clipped, enlarged = rasterize_polygon(box(-2, -2, 3, 3), 10, 10)
    assert mask.sum() == 9
    assert bbox(mask) == (0, 0, 2, 2)
    assert clipped and not enlarged
    # Past the right/bottom edge: (7,8)-(13,12) on 10 rows x 10 cols → columns 7-9, rows 8-9 → 6.
    mask, stats = rasterize_polygons([box(7, 8, 13, 12), box(1, 1, 2, 2)], 10, 10)
    assert mask.sum() == 6 + 1
    assert stats.clipped == 1 and stats.nonempty == 2


def test_vertex_exactly_on_the_far_edge_is_not_clipped():
    # x = width and y = height are the image's border, not outside it: the whole 10x10 film.
    mask, clipped, _ = rasterize_polygon(box(0, 0, 10, 10), 10, 10)
    assert mask.all()
    assert not clipped


def test_polygon_entirely_outside_is_empty_but_counted():
    mask, stats = rasterize_polygons([box(20, 20, 30, 30)], 10, 10)
    assert not mask.any()
    assert stats.polygons == 1 and stats.nonempty == 0 and stats.clipped == 1 and stats.enlarged == 0


@pytest.mark.parametrize("polygon", [[], [1, 1], [1, 1, 5, 5], [1, 1, 5, 1, 5]])
def test_fewer_than_three_points_or_odd_count_raise(polygon):
    with pytest.raises(PolygonError):
        rasterize_polygon(polygon, 10, 10)


def test_odd_coordinate_count_names_the_count():
    with pytest.raises(PolygonError, match="odd number of coordinates \\(7\\)"):
        check_polygon([1, 1, 5, 1, 5, 5, 1])


def test_non_finite_coordinates_raise():
    with pytest.raises(PolygonError):
        check_polygon([1, 1, 5, float("nan"), 5, 5])


def test_bad_polygon_inside_a_list_raises():
    with pytest.raises(PolygonError):
        rasterize_polygons([box(1, 1, 5, 5), [0, 0, 1, 1]], 10, 10)


def test_sub_pixel_sliver_is_enlarged_to_its_vertex_pixels():
    # A triangle 0.2 px wide and 0.05 px high inside pixel (row 2, col 2): filling marks no
    # pixel, so the pixel under its vertices (floor(2.1..2.3) = 2, floor(2.1..2.15) = 2) is kept.
    mask, clipped, enlarged = rasterize_polygon([2.1, 2.1, 2.3, 2.1, 2.2, 2.15], 10, 10)
    assert enlarged and not clipped
    assert mask.sum() == 1 and mask[2, 2]
    # A thin sliver spanning columns 3..5 on row 6: its three vertex pixels.
    mask, stats = rasterize_polygons([[3.2, 6.4, 5.7, 6.45, 4.5, 6.42]], 10, 10)
    assert stats.enlarged == 1 and stats.nonempty == 1
    assert set(map(tuple, np.argwhere(mask))) == {(6, 3), (6, 5), (6, 4)}


# ----------------------------------------------------------------------------- label map


def test_compose_label_fracture_overrides_bone():
    bone = np.zeros((4, 5), bool)
    bone[1:3, :] = True  # 10 pixels
    fracture = np.zeros((4, 5), bool)
    fracture[2:4, 3] = True  # (2,3) on bone, (3,3) off bone
    label = compose_label(bone, fracture)
    assert label.dtype == np.uint8 and label.shape == (4, 5)
    assert set(np.unique(label)) == {BACKGROUND, BONE, FRACTURE} == {0, 1, 2}
    assert label[2, 3] == FRACTURE and label[3, 3] == FRACTURE
    assert (label == BONE).sum() == 10 - 1  # bone minus the one pixel fracture took
    assert (label == FRACTURE).sum() == 2
    assert (label == BACKGROUND).sum() == 20 - 9 - 2


# ----------------------------------------------------------------------------- pseudo-label


def synthetic_film(h: int, w: int) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Dark air (20), a soft-tissue band (110) over the middle half of the rows, a bright bar
    (210) in it, a 4% x 4% dark hole in the bar and a bright speck in the air.

    Returns (film, bar mask, hole slices, speck slices)."""
    film = np.full((h, w), 20, np.uint8)
    film[h // 4: 3 * h // 4, :] = 110
    bar = np.zeros((h, w), bool)
    bar[2 * h // 5: 3 * h // 5, w // 8: 7 * w // 8] = True
    film[bar] = 210
    hole = (slice(h // 2 - h // 50, h // 2 + h // 50), slice(w // 2 - h // 50, w // 2 + h // 50))
    film[hole] = 110
    speck = (slice(h // 20, h // 20 + h // 33), slice(w // 20, w // 20 + h // 33))
    film[speck] = 230
    return film, bar, hole, speck


@pytest.mark.parametrize("shape", [(200, 240), (1200, 1500)], ids=["small", "huge-downscaled"])
def test_bone_pseudo_label_finds_the_bar(shape):
    h, w = shape
    film, bar, hole, speck = synthetic_film(h, w)
    mask = bone_pseudo_label(film)
    assert mask.dtype == bool and mask.shape == film.shape
    # The bar is found and the air and soft tissue are not.
    iou = (mask & bar).sum() / (mask | bar).sum()
    assert iou > 0.98
    assert not mask[: h // 4 - 2].any(), "air above the band marked as bone"
    assert not mask[h // 4 + 2: 2 * h // 5 - 2].any(), "soft tissue above the bar marked as bone"
    # The speck (bright, but < 0.2 % of the film) is removed; the hole (< 1 %) is filled.
    assert not mask[speck].any()
    assert mask[hole].all()


def test_bone_pseudo_label_small_film_is_exact():
    # At 200 x 240 no downscaling happens and the disk is radius 1: the bar (rows 80-119,
    # columns 30-209: 40 x 180 pixels),
    # with its 8 x 8 hole filled, is exactly the mask.
    film, bar, _, _ = synthetic_film(200, 240)
    mask = bone_pseudo_label(film)
    assert bar.sum() == 40 * 180
    np.testing.assert_array_equal(mask, bar)


def test_bone_pseudo_label_on_a_film_cropped_to_the_limb():
    # No air: soft tissue (100) and a bone bar (200) only; the first Li cut already separates them.
    film = np.full((120, 160), 100, np.uint8)
    film[40:80, 20:140] = 200
    mask = bone_pseudo_label(film)
    assert mask.sum() == 40 * 120
    assert mask[40:80, 20:140].all()


def test_bone_pseudo_label_flat_film_is_empty():
    assert not bone_pseudo_label(np.full((30, 40), 77, np.uint8)).any()
    assert bone_pseudo_label(np.zeros((30, 40), np.float32)).shape == (30, 40)


def test_bone_pseudo_label_accepts_16_bit():
    film, bar, _, _ = synthetic_film(200, 240)
    mask = bone_pseudo_label(film.astype(np.uint16) * 257)  # same film on a 16-bit scale
    np.testing.assert_array_equal(mask, bar)
