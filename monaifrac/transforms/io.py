"""Transforms that write files beside the label maps: the overlay of a film and its labels."""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from monaifrac.io import film_stem, from_monai_frame, write_png
from monaifrac.transforms.utils import _numpy
from monaifrac.visualize import overlay


class SaveOverlay(Transform):
    """Write an overlay PNG of a film and its label map, at the film's own width × height.

    Args:
        output_dir: folder of the PNGs.
        postfix: appended to the film's stem: ``<stem><postfix>.png``.

    ``__call__(image, label, stem)``: image (1, W, H) and label (1, W, H) or (W, H) in the
    MONAI frame; returns the path written. Written atomically.
    """

    def __init__(self, output_dir: str | Path, postfix: str = "_overlay"):
        self.output_dir = Path(output_dir)
        self.postfix = postfix

    def __call__(self, image, label, stem: str) -> Path:
        img = _numpy(image)
        lab = _numpy(label)
        img = img[0] if img.ndim == 3 else img
        lab = lab[0] if lab.ndim == 3 else lab
        path = self.output_dir / f"{stem}{self.postfix}.png"
        write_png(path, overlay(from_monai_frame(img), from_monai_frame(lab.astype(np.uint8))))
        return path


class SaveOverlayd(MapTransform):
    """Dictionary form of :class:`SaveOverlay`: reads ``image_key`` and ``keys`` (the label map);
    the stem comes from the image's ``filename_or_obj`` metadata."""

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | Path = "./",
                 postfix: str = "_overlay", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.saver = SaveOverlay(output_dir, postfix)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = d[self.image_key]
        meta = getattr(image, "meta", {}) or {}
        source = meta.get("filename_or_obj", "film")
        stem = film_stem(source)
        for key in self.key_iterator(d):
            self.saver(image, d[key], stem)
        return d
