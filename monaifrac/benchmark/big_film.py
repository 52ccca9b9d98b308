"""``monaifrac benchmark big-film``: time and peak memory of one film in a fresh process, from a 6000 x 6000 one down
to the command line's start-up.

Each measurement runs in a fresh process, so its peak resident memory is its own (``VmHWM`` of the
process that ``exec`` made, reported by the process itself: a child's ``ru_maxrss`` starts from its
parent's size at fork):

* **read**: ``monaifrac.io.read_radiograph`` of the big film (default 6000 x 6000, a generated JPG of
  ~0.5 MB: air, soft tissue, a bone bar; nothing is downloaded), beside the imports it needs;
* **label**: ``python -m monai.bundle run --config_file bundle/configs/inference.json`` on the big film
  (``--skip-inference``: not), on a small generated film (the start-up: imports, config parsing, model
  loading), and on each ``--films`` film (e.g. a 373 x 454 film and a 2304 x 2880 scan): wall time and
  peak RSS;
* **floor**: ``python -c "import torch"`` and ``python -c "import monai"``, each in a fresh process: what
  any command that uses MONAI pays before its first line;
* **answers**: ``monaifrac --help`` and ``monaifrac infer`` on a path that does not exist, which answer
  before torch or MONAI loads (goals: 0.5 s and 1 s), at least 5 times each.

``--repeats R`` runs each R times (median and spread); the big film's labelling takes minutes on 2
cores, so the default is 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from monaifrac.benchmark import timing
from monaifrac.benchmark.tables import Report, Table, num, progress, spread
from monaifrac.bundle import REPO_BUNDLE

REPO = REPO_BUNDLE.parent
GOAL_HELP_S, GOAL_MISSING_S = 0.5, 1.0  # issue 31: the command answers at once
ANSWER_REPEATS = 5
READ = """
import json, sys, time
t0 = time.perf_counter()
from monaifrac.io import read_radiograph
hwm = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) / 1024
base = hwm()
t1 = time.perf_counter()
array, info = read_radiograph(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"shape": list(array.shape), "dtype": str(array.dtype), "import_s": t1 - t0, "read_s": t2 - t1,
                  "rss_after_import_mb": base, "peak_rss_mb": hwm()}))
"""
# a wrapper process reports its own peak (VmHWM), so that one run's peak does not hide another's
LABEL = ("import runpy, sys; sys.argv = ['monai.bundle'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('monai.bundle', run_name='__main__')\n"
         "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
         "    print('PEAK_RSS_MB', int(hwm) / 1024)")


def make_film(path: Path, height: int, width: int) -> Path:
    """A ``height`` x ``width`` JPG film (air, a soft-tissue band, a bone bar, a gentle ramp), built in uint8
    without a float copy of it (a 6000 x 6000 film stays 36 MB while it is made)."""
    from PIL import Image

    film = np.full((height, width), 20, np.uint8)
    film[height // 4: 3 * height // 4] = 100
    film[3 * height // 8: 5 * height // 8, width // 12: 11 * width // 12] = 200
    film += (np.arange(width, dtype=np.uint16) * 30 // max(width, 1)).astype(np.uint8)[None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(film).save(path, format="JPEG", quality=90)
    return path


def run_child(cmd: list[str], expect: int = 0) -> tuple[float, str]:
    """(wall seconds, stdout) of ``cmd`` in a fresh process, from the repository's root; it must exit ``expect``."""
    start = timing.clock()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = timing.clock() - start
    if proc.returncode != expect:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def label(film: Path, out: Path, model: str) -> tuple[float, float]:
    """(wall s, peak RSS MB) of ``monai.bundle run`` with inference.json on ``film``, in a fresh process."""
    cmd = [sys.executable, "-c", LABEL, "run", "--config_file", str(REPO_BUNDLE / "configs" / "inference.json"),
           "--input_files", str(film), "--output_dir", str(out), "--model_file", model,
           "--bundle_root", str(out / "root")]
    wall, stdout = run_child(cmd)
    return wall, float(stdout.rsplit("PEAK_RSS_MB", 1)[1].split()[0])


def film_size(path: Path) -> str:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        w, h = ImageOps.exif_transpose(im).size
    return f"{w}x{h}"


def add_arguments(p) -> None:
    p.add_argument("--side", type=int, default=6000, help="the big film's side in pixels (default 6000)")
    p.add_argument("--films", nargs="+", default=[], help="more films labelled from the command line, one by one")
    p.add_argument("--model", default=str(REPO_BUNDLE / "models" / "model.pt"))
    p.add_argument("--skip-inference", action="store_true", help="read the big film only (no labelling)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each measurement (default 1)")


def main(args, report: Report) -> None:
    from monaifrac.bundle import require_model
    from monaifrac.errors import InputError

    require_model(args.model)
    for f in args.films:
        if not Path(f).is_file():
            raise InputError(f, "no such film")
    repeats = max(args.repeats, 1)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="monaifrac_benchmark_big_film_") as tmp:
        tmp = Path(tmp)
        big = make_film(tmp / f"big_{args.side}.jpg", args.side, args.side)
        small = make_film(tmp / "small.jpg", 32, 48)
        reads = []
        for _ in range(repeats):
            progress(f"reading the {args.side}x{args.side} film")
            reads.append(json.loads(run_child([sys.executable, "-c", READ, str(big)])[1]))
        rows["read"] = {"film": f"{args.side}x{args.side}", "jpg_mb": big.stat().st_size / 1e6,
                        "wall_s": timing.summary([r["read_s"] for r in reads]),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in reads),
                        "rss_after_import_mb": reads[-1]["rss_after_import_mb"], "shape": reads[-1]["shape"]}
        if not args.skip_inference:
            targets = [("start-up (small film)", small), *((Path(f).name, Path(f)) for f in args.films),
                       (f"big film {args.side}x{args.side}", big)]
            for i, (name, film) in enumerate(targets):
                walls, peaks = [], []
                for r in range(repeats):
                    progress(f"labelling {name} in a fresh process")
                    wall, peak = label(film, tmp / f"out{i}_{r}", args.model)
                    walls.append(wall)
                    peaks.append(peak)
                rows[name] = {"film": film_size(film), "wall_s": timing.summary(walls), "peak_rss_mb": max(peaks)}
        for module in ("torch", "monai"):
            progress(f"python -c 'import {module}'")
            walls = [run_child([sys.executable, "-c", f"import {module}"])[0] for _ in range(repeats)]
            rows[f"import {module}"] = {"film": "-", "wall_s": timing.summary(walls), "peak_rss_mb": None}
        answers = {"monaifrac --help": (["--help"], 0),
                   "monaifrac infer MISSING": (["infer", str(tmp / "missing"), "--output-dir", str(tmp / "x")], 2)}
        for r in range(max(repeats, ANSWER_REPEATS)):  # cheap: repeated for a median and spread
            for name in timing.rotations(list(answers), r):
                argv, expect = answers[name]
                wall = run_child([sys.executable, "-m", "monaifrac", *argv], expect)[0]
                rows.setdefault(name, {"film": "-", "walls": [], "peak_rss_mb": None})["walls"].append(wall)
        for name in answers:
            rows[name]["wall_s"] = timing.summary(rows[name].pop("walls"))
    report.results = {"side": args.side, "model": args.model, "rows": rows}
    t = Table("one film in a fresh process: wall time (median (p25-p75) of the runs) and peak RSS",
              ["what", "film", "wall s", "peak RSS MB"],
              notes=["read: read_radiograph alone (imports apart, "
                     f"{rows['read']['rss_after_import_mb']:.0f} MB after them); labelling: python -m monai.bundle "
                     "run with inference.json, start-up included (imports, config parsing, model loading)"])
    for name, r in rows.items():
        t.add(name, r["film"], spread(r["wall_s"], 2), num(r["peak_rss_mb"], 0))
    t.notes.append("monaifrac --help, and infer on a path that does not exist (one error line, exit 2): the "
                   "command's own answer, before torch or MONAI would load")
    report.tables.append(t)
    for name, bound in (("monaifrac --help", GOAL_HELP_S), ("monaifrac infer MISSING", GOAL_MISSING_S)):
        median = rows[name]["wall_s"]["median"]
        report.goal(f"{name} <= {bound} s (median of {rows[name]['wall_s']['n']})", f"{median:.2f} s",
                    median <= bound)
