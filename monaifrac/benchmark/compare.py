"""``monaifrac benchmark compare RUN_A RUN_B``: how much two inference runs' label maps differ, film by film.

RUN_A and RUN_B are ``--output-dir`` folders of ``monaifrac infer`` (or ``inference.json``) over the same
films, e.g. float32 against bf16, or the whole film against the sliding window (``benchmark infer`` times
engines and compares them in one run; this compares two runs made apart). For each label map
``<stem>.png`` in both: the fraction of pixels whose label differs, and for one class (fracture by
default) the pixels in exactly one of the two maps over the pixels in either. Reports the mean and the
largest of each over the films, and the film where the largest occurs. Films missing from one run, or
of different sizes, are an error naming them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monaifrac.benchmark.tables import Report, Table


def add_arguments(p) -> None:
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--class", dest="cls", type=int, default=2, help="class compared on its own (default 2)")


def label_maps(run: Path) -> dict[str, Path]:
    return {p.stem: p for p in run.glob("*.png") if not p.stem.endswith("_overlay")}


def main(args, report: Report) -> None:
    from monaifrac.data.cases import DataError
    from monaifrac.io import read_label_map

    a, b = label_maps(args.run_a), label_maps(args.run_b)
    if not a:
        raise DataError(f"{args.run_a}: no label map (<stem>.png)")
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise DataError(f"the runs labelled different films, e.g. {only[:5]} ({len(only)} in one run only)")
    changed, cls_changed = {}, {}
    for stem in sorted(a):
        x, y = read_label_map(a[stem]), read_label_map(b[stem])
        if x.shape != y.shape:
            raise DataError(f"{stem}: label maps of different sizes {x.shape} and {y.shape}")
        changed[stem] = float(np.mean(x != y))
        in_x, in_y = x == args.cls, y == args.cls
        union = int(np.sum(in_x | in_y))
        cls_changed[stem] = float(np.sum(in_x ^ in_y)) / union if union else 0.0
    worst = max(changed, key=changed.get)
    worst_cls = max(cls_changed, key=cls_changed.get)
    c = f"class_{args.cls}_changed_over_union"
    report.results = {"run_a": str(args.run_a), "run_b": str(args.run_b), "films": len(changed),
                      "pixels_changed_mean": float(np.mean(list(changed.values()))),
                      "pixels_changed_max": changed[worst], "pixels_changed_max_film": worst,
                      f"{c}_mean": float(np.mean(list(cls_changed.values()))), f"{c}_max": cls_changed[worst_cls],
                      f"{c}_max_film": worst_cls, "identical_films": sum(v == 0 for v in changed.values())}
    r = report.results
    t = Table(f"{args.run_a} against {args.run_b}: {len(changed)} films, {r['identical_films']} identical maps",
              ["per film", "mean", "max", "film of the max"])
    t.add("pixels with another label, %", f"{100 * r['pixels_changed_mean']:.4f}", f"{100 * changed[worst]:.4f}",
          worst)
    t.add(f"class {args.cls}: in one map only / in either", f"{r[f'{c}_mean']:.4f}", f"{cls_changed[worst_cls]:.4f}",
          worst_cls)
    report.tables.append(t)
