"""How much two inference runs' label maps differ, film by film.

Usage: python scripts/compare_labels.py RUN_A RUN_B [--class 2]

RUN_A and RUN_B are ``--output-dir`` folders of ``monaifrac infer`` (or ``inference.json``) over the
same films, e.g. float32 against bf16, or the whole film against the sliding window. For each label
map ``<stem>.png`` in both: the fraction of pixels whose label differs, and for one class (fracture
by default) the pixels in exactly one of the two maps over the pixels in either. Prints the mean and
the largest of each over the films, and the film where the largest occurs; the last line is JSON.
Films missing from one run, or of different sizes, are an error naming them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def label_maps(run: Path) -> dict[str, Path]:
    return {p.stem: p for p in run.glob("*.png") if not p.stem.endswith("_overlay")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--class", dest="cls", type=int, default=2, help="class compared on its own (default 2)")
    args = parser.parse_args(argv)
    a, b = label_maps(args.run_a), label_maps(args.run_b)
    if not a:
        print(f"error: {args.run_a}: no label map (<stem>.png)", file=sys.stderr)
        return 2
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        print(f"error: the runs labelled different films, e.g. {only[:5]} ({len(only)} in one run only)",
              file=sys.stderr)
        return 2
    changed, cls_changed = {}, {}
    for stem in sorted(a):
        x, y = np.asarray(Image.open(a[stem])), np.asarray(Image.open(b[stem]))
        if x.shape != y.shape:
            print(f"error: {stem}: label maps of different sizes {x.shape} and {y.shape}", file=sys.stderr)
            return 2
        changed[stem] = float(np.mean(x != y))
        in_x, in_y = x == args.cls, y == args.cls
        union = int(np.sum(in_x | in_y))
        cls_changed[stem] = float(np.sum(in_x ^ in_y)) / union if union else 0.0
    worst = max(changed, key=changed.get)
    worst_cls = max(cls_changed, key=cls_changed.get)
    summary = {"films": len(changed), "pixels_changed_mean": float(np.mean(list(changed.values()))),
               "pixels_changed_max": changed[worst], "pixels_changed_max_film": worst,
               f"class_{args.cls}_changed_over_union_mean": float(np.mean(list(cls_changed.values()))),
               f"class_{args.cls}_changed_over_union_max": cls_changed[worst_cls],
               f"class_{args.cls}_changed_over_union_max_film": worst_cls,
               "identical_films": sum(v == 0 for v in changed.values())}
    print(f"{len(changed)} films; pixels with another label: mean {100 * summary['pixels_changed_mean']:.4f} %, "
          f"max {100 * changed[worst]:.4f} % ({worst}); identical maps: {summary['identical_films']}")
    print(f"class {args.cls}: pixels in one map only / in either: mean {summary[f'class_{args.cls}_changed_over_union_mean']:.4f}, "
          f"max {cls_changed[worst_cls]:.4f} ({worst_cls})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
