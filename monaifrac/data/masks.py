"""Label maps from annotations and pixels: polygons → masks, the bone pseudo-label, 3 classes.

All arrays here are (H, W) row-major in the film's displayed (EXIF-applied) frame, the frame
in which FracAtlas and Labelme draw their polygons. Polygons are flat lists
``[x1, y1, x2, y2, ...]`` in pixel units, x = column, y = row, with COCO's convention that
pixel (r, c) covers the square [c, c+1) × [r, r+1): the square with corners (1, 1) and
(5, 5) covers exactly the 16 pixels of rows 1-4 and columns 1-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND, BONE, FRACTURE = 0, 1, 2
CLASS_NAMES = {BACKGROUND: "background", BONE: "bone", FRACTURE: "fracture"}


class PolygonError(ValueError):
    """A polygon that cannot be rasterised (too few points, odd coordinate count, not finite)."""


@dataclass
class RasterStats:
    """What happened to the polygons of one mask."""

    polygons: int = 0
    nonempty: int = 0
    clipped: int = 0  # had vertices outside the image; the part inside was kept
    enlarged: int = 0  # thinner than a pixel: the pixels under its vertices were marked instead

    def __iadd__(self, other: "RasterStats") -> "RasterStats":
        self.polygons += other.polygons
        self.nonempty += other.nonempty
        self.clipped += other.clipped
        self.enlarged += other.enlarged
        return self


def check_polygon(polygon) -> np.ndarray:
    """Return the polygon as an (N, 2) float array of (x, y), or raise PolygonError."""
    coords = np.asarray(polygon, dtype=np.float64).ravel()
    if coords.size % 2:
        raise PolygonError(f"odd number of coordinates ({coords.size})")
    if coords.size < 6:
        raise PolygonError(f"a polygon needs at least 3 points, got {coords.size // 2}")
    if not np.all(np.isfinite(coords)):
        raise PolygonError("non-finite coordinate")
    return coords.reshape(-1, 2)


def rasterize_polygon(polygon, height: int, width: int) -> tuple[np.ndarray, bool, bool]:
    """Fill one polygon with pycocotools.

    Returns:
        ``(mask, clipped, enlarged)``: a bool (H, W) mask; whether a vertex lay outside the
        image (the polygon is clipped to it); whether the polygon was thinner than a pixel
        and the pixels under its in-image vertices were marked instead, so that an
        annotated fracture never vanishes from its label.
    """
    from pycocotools import mask as coco_mask

    xy = check_polygon(polygon)
    clipped = bool((xy[:, 0] < 0).any() or (xy[:, 1] < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any())
    # frPyObjects treats a 4-number list as a box; check_polygon guarantees ≥ 6 numbers.
    rles = coco_mask.frPyObjects([xy.ravel().tolist()], height, width)
    mask = coco_mask.decode(coco_mask.merge(rles)).astype(bool)
    enlarged = False
    if not mask.any():
        cols = np.floor(xy[:, 0]).astype(int)
        rows = np.floor(xy[:, 1]).astype(int)
        inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        if inside.any():
            mask[rows[inside], cols[inside]] = True
            enlarged = True
    return mask, clipped, enlarged


def rasterize_polygons(polygons, height: int, width: int) -> tuple[np.ndarray, RasterStats]:
    """Union of several polygons as a bool (H, W) mask, with per-polygon statistics."""
    mask = np.zeros((height, width), dtype=bool)
    stats = RasterStats()
    for polygon in polygons:
        one, clipped, enlarged = rasterize_polygon(polygon, height, width)
        stats.polygons += 1
        stats.nonempty += int(one.any())
        stats.clipped += int(clipped)
        stats.enlarged += int(enlarged)
        mask |= one
    return mask, stats


# Films are cleaned up at most at this resolution (shorter side, pixels). Morphology on a
# 2304×2880 film costs seconds; at 512 px it costs milliseconds, and a pseudo-label gains
# nothing from sub-millimetre edges.
PSEUDO_LABEL_WORKING_SIDE = 512
# Share of a film below the first Li threshold above which that threshold is taken to have
# split air from body rather than soft tissue from bone.
AIR_FRACTION = 0.15


def bone_pseudo_label(image: np.ndarray) -> np.ndarray:
    """Bone mask of a radiograph by Li's minimum-cross-entropy threshold plus clean-up.

    This is a *pseudo-label*, the method of the 3-class FracAtlas UNet this project learns
    from: bone is denser than soft tissue, so on a film it is the bright mode of the
    histogram. It is not an expert annotation; it includes other dense matter (metal
    hardware, markers larger than the size limit) and misses thin cortex in low-contrast
    films.

    Steps, with sizes relative to the film so that a 373×454 and a 2304×2880 film are
    treated alike (``s`` = the shorter side in pixels at working resolution):

    0. Films whose shorter side exceeds 512 px are reduced by an integer factor (block
       mean) to at most 512 px; the mask is brought back to full size by bilinear
       interpolation and a 0.5 cut, so its edges stay smooth.
    1. ``skimage.filters.threshold_li`` on the grey values. On a film with air around the
       limb (more than 15 % of pixels below the threshold) this first cut separates air
       from body, so Li is applied again to the body pixels to separate bone from soft
       tissue; on a film cropped to the limb the first cut already does that. Bone =
       pixels above the last threshold.
    2. Opening then closing with a disk of radius ``max(1, s // 200)``: removes speckle and
       bridges hairline gaps in the cortex.
    3. Objects smaller than 0.2 % of the film removed (markers, letters, noise).
    4. Holes smaller than 1 % of the film filled (medullary cavity, trabecular gaps).

    Args:
        image: (H, W) grey film, any numeric dtype, bone bright.

    Returns:
        bool (H, W) mask.
    """
    from skimage import filters, morphology

    img = np.asarray(image, dtype=np.float32)
    if img.max() <= img.min():  # a flat film has no bone to find
        return np.zeros(img.shape, dtype=bool)
    factor = max(1, int(np.ceil(min(img.shape) / PSEUDO_LABEL_WORKING_SIDE)))
    work = _block_mean(img, factor) if factor > 1 else img
    threshold = filters.threshold_li(work)
    body = work > threshold
    if (~body).mean() > AIR_FRACTION and body.any() and np.ptp(work[body]) > 0:
        threshold = filters.threshold_li(work[body])
    fg = work > threshold
    area = work.size
    footprint = morphology.disk(max(1, min(work.shape) // 200), decomposition="sequence")
    fg = morphology.opening(fg, footprint)
    fg = morphology.closing(fg, footprint)
    fg = morphology.remove_small_objects(fg, max_size=max(1, int(0.002 * area)))
    fg = morphology.remove_small_holes(fg, max_size=max(1, int(0.01 * area)))
    if factor > 1:
        fg = _upsample_mask(fg, img.shape)
    return fg


def _block_mean(img: np.ndarray, factor: int) -> np.ndarray:
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    return img[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _upsample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    big = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(big) >= 128


def compose_label(bone: np.ndarray, fracture: np.ndarray) -> np.ndarray:
    """3-class uint8 label map: 0 background, 1 bone, 2 fracture; fracture overrides bone."""
    label = np.zeros(bone.shape, dtype=np.uint8)
    label[bone] = BONE
    label[fracture] = FRACTURE
    return label
