"""Overlays of a film and its label map, for people: previews, inference overlays, TensorBoard.

Arrays are (H, W) row-major; callers holding MONAI (W, H) arrays convert with
:func:`monaifrac.io.from_monai_frame` first.
"""

from __future__ import annotations

import numpy as np

# RGB per class; fracture in a saturated colour because it is ~0.25 % of a film.
CLASS_COLOURS = {1: (40, 140, 255), 2: (255, 40, 40)}
CLASS_ALPHA = {1: 0.30, 2: 0.65}


def to_display_uint8(image: np.ndarray) -> np.ndarray:
    """Grey film of any dtype → uint8 for display, stretched between its 0.5 and 99.5 percentiles."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5]) if img.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, label: np.ndarray, outline: bool = True) -> np.ndarray:
    """Blend class colours over a grey film.

    Args:
        image: (H, W) grey film, any dtype.
        label: (H, W) integer label map (0 background, 1 bone, 2 fracture).
        outline: draw the fracture's boundary at full strength, so that a few pixels of
            fracture on a large film remain visible.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    grey = to_display_uint8(image).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    label = np.asarray(label)
    if label.shape != grey.shape:
        raise ValueError(f"image {grey.shape} and label {label.shape} differ in shape")
    for cls, colour in CLASS_COLOURS.items():
        m = label == cls
        if m.any():
            rgb[m] = (1 - CLASS_ALPHA[cls]) * rgb[m] + CLASS_ALPHA[cls] * np.asarray(colour, dtype=np.float32)
    if outline:
        from skimage.segmentation import find_boundaries

        edge = find_boundaries(label == 2, mode="outer")
        rgb[edge] = CLASS_COLOURS[2]
    return rgb.astype(np.uint8)
