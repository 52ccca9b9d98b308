"""Synthetic musculoskeletal radiographs written in the on-disk layout of FracAtlas.

Tests and the demo need data that goes through the *same* reader as the real
FracAtlas archive, so this module does not return arrays: it writes JPGs, the
COCO polygon file, ``dataset.csv`` and the split CSVs exactly where the official
archive has them::

    out_dir/
        images/Fractured/IMG0000001.jpg ...
        images/Non_fractured/IMG0000002.jpg ...
        Annotations/COCO JSON/COCO_fracture_masks.json
        Utilities/Fracture Split/{train,valid,test}.csv
        dataset.csv
        SOURCE.md

Frame convention. Every image is drawn as a (H, W) row-major uint8 array in the
*displayed* frame, i.e. the frame a viewer shows after applying the EXIF
Orientation tag (``PIL.ImageOps.exif_transpose``). Polygons are float pixel
coordinates in that same frame, as flat ``[x1, y1, x2, y2, ...]`` lists with
x = column and y = row, in the continuous COCO convention where pixel (row r,
column c) covers ``[c, c + 1) x [r, r + 1)``. COCO ``width``/``height`` are the
displayed size too. This mirrors a real quirk of FracAtlas: a few JPGs are
stored rotated and carry an EXIF Orientation tag, and their annotations only
line up after the tag is applied. A handful of images here are stored that way
(see :func:`plan_images`) so that a reader that ignores EXIF fails loudly.

Everything is deterministic: image ``i`` is drawn from
``numpy.random.default_rng((seed, i))`` (so it does not depend on ``n``), JPGs
are written with a fixed quality and no timestamps, and files are written to a
temporary name and moved into place with ``os.replace``.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ImageSpec", "make_synthetic_fracatlas", "plan_images", "render_radiograph"]

CSV_HEADER = (
    "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"
)
BODY_PARTS = ("hand", "leg", "hip", "shoulder")
VIEWS = ("frontal", "lateral", "oblique")
COCO_RELPATH = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
SPLIT_RELDIR = Path("Utilities") / "Fracture Split"
JPEG_QUALITY = 95
EXIF_ORIENTATION_TAG = 0x0112

# np.rot90 turns that take a displayed image to the pixels to store, so that
# ImageOps.exif_transpose (3: ROTATE_180, 6: ROTATE_270, 8: ROTATE_90, all
# counter-clockwise like np.rot90) brings the stored pixels back to the display.
_STORE_ROT90 = {1: 0, 3: 2, 6: 1, 8: -1}


@dataclass(frozen=True)
class ImageSpec:
    """Everything about one image that is decided before drawing it."""

    index: int  # 0-based; the file number is index + 1
    fractured: bool
    width: int  # displayed width
    height: int  # displayed height
    orientation: int  # EXIF orientation the JPG is stored with (1 = none)
    rgb: bool  # stored as 3-channel R=G=B instead of "L"
    body_part: str
    view: str

    @property
    def stem(self) -> str:
        return f"IMG{self.index + 1:07d}"

    @property
    def file_name(self) -> str:
        return f"{self.stem}.jpg"


def plan_images(n: int, size: tuple[int, int] = (160, 192)) -> list[ImageSpec]:
    """Decide the fixed, seed-independent properties of images 0..n-1.

    Fractured iff ``(3 * i) % 5 < 3``: 60% of images, image 0 fractured and
    image 1 not. Every fourth image is landscape (``size`` swapped), every third
    is stored as RGB. EXIF cases: the 2nd fractured image (the 1st if there is
    only one) gets orientation 8, the 3rd fractured image orientation 3, and the
    2nd non-fractured image orientation 6.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    width, height = size
    fractured = [(3 * i) % 5 < 3 for i in range(n)]
    frac_idx = [i for i in range(n) if fractured[i]]
    nonfrac_idx = [i for i in range(n) if not fractured[i]]

    orientation = dict.fromkeys(range(n), 1)
    orientation[frac_idx[1] if len(frac_idx) > 1 else frac_idx[0]] = 8
    if len(frac_idx) > 2:
        orientation[frac_idx[2]] = 3
    if len(nonfrac_idx) > 1:
        orientation[nonfrac_idx[1]] = 6

    specs = []
    for i in range(n):
        landscape = i % 4 == 3
        specs.append(
            ImageSpec(
                index=i,
                fractured=fractured[i],
                width=height if landscape else width,
                height=width if landscape else height,
                orientation=orientation[i],
                rgb=i % 3 == 2,
                body_part=BODY_PARTS[i % len(BODY_PARTS)],
                view=VIEWS[(i // 2) % len(VIEWS)],
            )
        )
    return specs


# --------------------------------------------------------------------------- drawing


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders.

    Only small sigmas are needed, and a few shifted sums in numpy avoid importing
    scipy.ndimage, which alone takes longer than generating a whole dataset.
    """
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()

    def blur_rows(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, ((0, 0), (radius, radius)), mode="symmetric")
        return sum(t * padded[:, k : k + a.shape[1]] for k, t in enumerate(taps))

    return blur_rows(blur_rows(img).T).T


def _segment_distance(xx: np.ndarray, yy: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre to the segment p0-p1 (points as x, y).

    ``xx`` is a (1, W) row of x and ``yy`` an (H, 1) column of y: broadcasting them
    is cheaper than full coordinate grids.
    """
    d = p1 - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / float(d @ d), 0.0, 1.0)
    return np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))


def _polyline_distance(xx: np.ndarray, yy: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.min([_segment_distance(xx, yy, a, b) for a, b in zip(pts[:-1], pts[1:])], axis=0)


def _coverage(dist: np.ndarray, radius: float) -> np.ndarray:
    # A one-pixel linear ramp instead of a hard threshold avoids jagged edges.
    return np.clip(radius - dist + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class _Shaft:
    centre: np.ndarray  # (x, y)
    axis: np.ndarray  # unit vector along the bone
    half_length: float
    radius: float

    @property
    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        return self.centre - self.half_length * self.axis, self.centre + self.half_length * self.axis


def _make_shafts(rng: np.random.Generator, w: int, h: int) -> list[_Shaft]:
    """One or two roughly parallel long bones (femur; or radius + ulna)."""
    short, long_ = min(w, h), max(w, h)
    # Long bones follow the long side of the film, as they do in practice.
    base = math.pi / 2 if h >= w else 0.0
    angle = base + rng.uniform(-0.4, 0.4)
    axis = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-axis[1], axis[0]])
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.1, 0.1, 2) * np.array([w, h])

    if rng.random() < 0.5:
        radius = rng.uniform(0.075, 0.1) * short
        return [_Shaft(centre, axis, rng.uniform(0.55, 0.8) * long_, radius)]

    r1, r2 = rng.uniform(0.05, 0.065) * short, rng.uniform(0.035, 0.05) * short
    gap = 0.6 * (r1 + r2) + 4.0
    shafts = []
    for sign, r in ((-1.0, r1), (1.0, r2)):
        tilt = angle + rng.uniform(-0.04, 0.04)  # not perfectly parallel
        ax = np.array([math.cos(tilt), math.sin(tilt)])
        c = centre + sign * (r + gap / 2) * normal
        shafts.append(_Shaft(c, ax, rng.uniform(0.55, 0.8) * long_, r))
    return shafts


def _fracture_sites(shaft: _Shaft, w: int, h: int, margin: float) -> np.ndarray:
    """Positions along the shaft axis (offsets from its centre) where a fracture fits in the image."""
    s = np.arange(-shaft.half_length + margin, shaft.half_length - margin + 1e-9, 1.0)
    pts = shaft.centre + s[:, None] * shaft.axis
    inside = (pts[:, 0] > margin) & (pts[:, 0] < w - margin) & (pts[:, 1] > margin) & (pts[:, 1] < h - margin)
    return s[inside]


def _make_fracture(
    rng: np.random.Generator, shaft: _Shaft, s: float, thickness_scale: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """A crack across ``shaft`` at axis offset ``s``: (polyline, line width, annotation polygon)."""
    centre = shaft.centre + s * shaft.axis
    normal = np.array([-shaft.axis[1], shaft.axis[0]])
    theta = rng.uniform(-0.5, 0.5)  # obliquity of the crack w.r.t. the bone's cross-section
    direction = math.cos(theta) * normal + math.sin(theta) * shaft.axis
    across = np.array([-direction[1], direction[0]])
    # Stay inside the cortex: a crossing at obliquity theta is radius / cos(theta) long.
    half = rng.uniform(0.55, 0.8) * shaft.radius / math.cos(theta)

    n_vertices = int(rng.integers(2, 5))  # 2..4 vertices -> 4..8 polygon points
    t = np.linspace(-half, half, n_vertices)
    jitter = rng.uniform(-1.5, 1.5, n_vertices)
    jitter[[0, -1]] *= 0.3  # irregular in the middle, anchored at the ends
    line = centre + t[:, None] * direction + jitter[:, None] * across

    width = rng.uniform(2.0, 4.0) * thickness_scale
    pad = width / 2 + rng.uniform(1.0, 2.0) * thickness_scale
    # Stretch the ends so the polygon also covers the round caps of the drawn line.
    ends = line.copy()
    ends[0] -= (width / 2) * direction
    ends[-1] += (width / 2) * direction
    polygon = np.concatenate([ends + pad * across, (ends - pad * across)[::-1]])
    return line, width, polygon


def render_radiograph(
    seed: int, index: int, width: int, height: int, fractured: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw image ``index`` of the dataset made with ``seed`` in its displayed frame.

    Returns the (height, width) uint8 image and, for a fractured image, one or
    two (k, 2) float arrays of polygon vertices (x, y), 4 <= k <= 8.
    """
    rng = np.random.default_rng((seed, index))
    w, h = width, height
    yy, xx = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5  # pixel centres

    # Film background: dark with slow, blotchy density variations. Smoothing coarse noise and
    # upsampling it is much cheaper than a wide Gaussian on the full grid.
    coarse = _gaussian_blur(rng.normal(size=(8, 8)), sigma=1.0).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float64)
    blotch = (blotch - blotch.min()) / (np.ptp(blotch) + 1e-9)
    img = 22.0 + 26.0 * blotch

    shafts = _make_shafts(rng, w, h)

    # Soft tissue: a broad band around the bones, with a feathered edge.
    main = shafts[0]
    tissue_centre = np.mean([s.centre for s in shafts], axis=0)
    tissue_r = rng.uniform(0.22, 0.3) * min(w, h) + (0.0 if len(shafts) == 1 else main.radius)
    d = _segment_distance(xx, yy, tissue_centre - 2 * max(w, h) * main.axis, tissue_centre + 2 * max(w, h) * main.axis)
    tissue = np.clip((tissue_r - d) / 8.0, 0.0, 1.0)
    img += (rng.uniform(75.0, 105.0) - img) * tissue

    for shaft in shafts:
        d = _segment_distance(xx, yy, *shaft.ends)
        cortex = rng.uniform(185.0, 225.0)
        medulla = cortex - rng.uniform(25.0, 45.0)
        # The marrow cavity transmits more X-rays than the cortical walls.
        profile = np.where(d < 0.55 * shaft.radius, medulla, cortex)
        img += (profile - img) * _coverage(d, shaft.radius)

    polygons: list[np.ndarray] = []
    if fractured:
        # 2-4 px cracks at the default size; grow them (sub-linearly) on bigger films so the
        # annotated area stays a comparable fraction of the image.
        thickness_scale = math.sqrt(max(1.0, min(w, h) / 160))
        for shaft, s in _pick_sites(rng, shafts, w, h):
            line, line_width, polygon = _make_fracture(rng, shaft, s, thickness_scale)
            dark = rng.uniform(55.0, 90.0)
            # The crack only touches a few pixels, so only a window around it is evaluated.
            x0, y0 = np.maximum(np.floor(line.min(axis=0) - line_width - 2), 0).astype(int)
            x1, y1 = np.ceil(line.max(axis=0) + line_width + 2).astype(int)
            win = img[y0:y1, x0:x1]
            win += (dark - win) * _coverage(_polyline_distance(xx[:, x0:x1], yy[y0:y1], line), line_width / 2)
            polygons.append(polygon)

    # Film look: slight unsharpness, then fine grain that is itself a little blurred.
    img = _gaussian_blur(img, sigma=0.8)
    img += _gaussian_blur(rng.normal(0.0, 6.0, size=(h, w)), sigma=0.6)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), polygons


def _pick_sites(
    rng: np.random.Generator, shafts: list[_Shaft], w: int, h: int
) -> list[tuple[_Shaft, float]]:
    """One or two (shaft, axis offset) fracture sites whose polygons stay apart and inside the image."""
    n_fractures = 2 if rng.random() < 0.35 else 1
    chosen: list[tuple[_Shaft, float]] = []
    for k in range(n_fractures):
        # A second fracture goes on the second bone if there is one, else further along the same bone.
        shaft = shafts[k % len(shafts)]
        sites = _fracture_sites(shaft, w, h, margin=1.6 * shaft.radius + 6.0)
        for other, s in chosen:
            if other is shaft:
                sites = sites[np.abs(sites - s) > 4.0 * shaft.radius]
        if len(sites) == 0:
            if chosen:
                break  # no room for a second one
            sites = np.array([0.0])  # tiny image: the bone centre is the best we can do
        chosen.append((shaft, float(sites[int(rng.integers(len(sites)))])))
    return chosen


# --------------------------------------------------------------------------- writing


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jpeg_bytes(displayed: np.ndarray, orientation: int, rgb: bool) -> bytes:
    stored = np.ascontiguousarray(np.rot90(displayed, _STORE_ROT90[orientation]))
    img = Image.fromarray(stored)
    if rgb:
        img = img.convert("RGB")
    buf = io.BytesIO()
    kwargs: dict = {"quality": JPEG_QUALITY}
    if orientation != 1:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = orientation
        kwargs["exif"] = exif
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _coco_annotation(ann_id: int, image_id: int, polygon: np.ndarray) -> dict:
    pts = np.round(polygon, 2)
    x, y = pts[:, 0], pts[:, 1]
    # Shoelace area of the rounded polygon, so area and segmentation agree exactly.
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return {
        "id": ann_id,
        "iscrowd": 0,
        "image_id": image_id,
        "category_id": 0,
        "segmentation": [[float(v) for v in pts.ravel()]],
        "bbox": [float(x.min()), float(y.min()), round(float(np.ptp(x)), 2), round(float(np.ptp(y)), 2)],
        "area": round(area, 2),
    }


def _split_fractured(names: list[str], seed: int) -> dict[str, list[str]]:
    """Roughly 60/20/20 train/valid/test, each non-empty once there are 3 names."""
    n = len(names)
    n_valid = max(1, round(0.2 * n)) if n >= 2 else 0
    n_test = max(1, round(0.2 * n)) if n >= 3 else 0
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [names[i] for i in order]
    return {
        "train": sorted(shuffled[n_valid + n_test :]),
        "valid": sorted(shuffled[:n_valid]),
        "test": sorted(shuffled[n_valid : n_valid + n_test]),
    }


def _remove_stale_images(out_dir: Path, keep: set[Path]) -> None:
    # A rerun with a smaller n must not leave images from the previous run behind.
    for sub in ("Fractured", "Non_fractured"):
        for path in (out_dir / "images" / sub).glob("IMG*.jpg"):
            if path not in keep:
                path.unlink()


def make_synthetic_fracatlas(
    out_dir: str | os.PathLike, n: int = 24, seed: int = 0, size: tuple[int, int] = (160, 192)
) -> dict:
    """Write a FracAtlas-layout dataset of n synthetic radiographs under out_dir; return a summary dict.

    ``size`` is the displayed (width, height) of most images (every fourth is
    landscape, i.e. swapped). The summary is ``{"n_images", "n_fractured",
    "n_polygons", "exif_ids", "out_dir"}`` where ``exif_ids`` maps image stems
    such as ``"IMG0000003"`` to the EXIF orientation they are stored with.
    Re-running into the same ``out_dir`` overwrites it.
    """
    out = Path(out_dir)
    specs = plan_images(n, size)

    coco_images, coco_annotations, csv_rows, written = [], [], [CSV_HEADER], set()
    for spec in specs:
        displayed, polygons = render_radiograph(seed, spec.index, spec.width, spec.height, spec.fractured)
        path = out / "images" / ("Fractured" if spec.fractured else "Non_fractured") / spec.file_name
        _atomic_write(path, _jpeg_bytes(displayed, spec.orientation, spec.rgb))
        written.add(path)

        if spec.fractured:
            image_id = len(coco_images) + 1
            coco_images.append(
                {"id": image_id, "width": spec.width, "height": spec.height, "file_name": spec.file_name}
            )
            for polygon in polygons:
                coco_annotations.append(_coco_annotation(len(coco_annotations), image_id, polygon))

        flags = {part: int(part == spec.body_part) for part in BODY_PARTS}
        flags.update(mixed=0, hardware=0, multiscan=0, fractured=int(spec.fractured))
        flags["fracture_count"] = len(polygons)
        flags.update({view: int(view == spec.view) for view in VIEWS})
        csv_rows.append(",".join([spec.file_name] + [str(flags[c]) for c in CSV_HEADER.split(",")[1:]]))

    _remove_stale_images(out, written)

    coco = {
        "info": {
            "description": "Synthetic radiographs in FracAtlas layout made by monaifrac.data.synth (not FracAtlas)",
            "version": "1.0",
            "seed": seed,
        },
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [{"id": 0, "name": "fractured"}],
    }
    _atomic_write(out / COCO_RELPATH, json.dumps(coco, indent=1).encode())
    _atomic_write(out / "dataset.csv", ("\n".join(csv_rows) + "\n").encode())

    fractured_names = [s.file_name for s in specs if s.fractured]
    for split, names in _split_fractured(fractured_names, seed).items():
        _atomic_write(out / SPLIT_RELDIR / f"{split}.csv", ("\n".join(["image_id", *names]) + "\n").encode())

    _atomic_write(
        out / "SOURCE.md",
        (
            "# Synthetic data - not FracAtlas\n\n"
            f"These {n} radiographs are synthetic, generated by `monaifrac.data.synth.make_synthetic_fracatlas`"
            f" with seed={seed} and size={tuple(size)}.\n"
            "They only mimic the file layout and annotation format of the FracAtlas dataset"
            " so that code can be tested and demonstrated without the real data.\n"
        ).encode(),
    )

    return {
        "n_images": n,
        "n_fractured": len(coco_images),
        "n_polygons": len(coco_annotations),
        "exif_ids": {s.stem: s.orientation for s in specs if s.orientation != 1},
        "out_dir": str(out),
    }
