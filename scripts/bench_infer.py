"""Inference cost of the bundle's switches, measured side by side in one run.

Usage: python scripts/bench_infer.py FILMS_DIR [--n 20] [--model bundle/models/model.pt] [--threads N]

Runs ``bundle/configs/inference.json`` in this process over the first N films of FILMS_DIR
(JPG/PNG), and over the first film alone, for each configuration:

* ``default``: one model, no test-time augmentation (what ``inference.json`` ships);
* ``tta``: flip TTA (``--tta true``: the film and its two flips);
* ``ensemble2``: two checkpoints averaged (``--model_files`` with the model twice).

The per-film cost is the marginal time ``(T_N - T_1) / (N - 1)``, which leaves out start-up
and config parsing. Beside it, the model alone: the sliding window over the same films held
in memory as tensors. Prints absolute figures, the ratio of each switch to ``default``, and
the machine (CPU model, cores, torch threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from monaifrac.bundle import REPO_BUNDLE

CONFIG = str(REPO_BUNDLE / "configs" / "inference.json")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_inference(files: list[str], out: Path, overrides: dict) -> float:
    from monai.bundle import ConfigWorkflow

    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=CONFIG, workflow_type="infer", input_files=files, output_dir=str(out),
                              **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return time.perf_counter() - start


def model_only(files: list[str], model: str) -> float:
    """Seconds per film of the sliding window alone, over films already in memory."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser["model_file"] = model
    preprocessing, inferer, network = (parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "network"))
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    network.eval()
    films = [preprocessing({"image": f})["image"][None] for f in files]
    with torch.no_grad():
        inferer(films[0], network)  # warm-up
        start = time.perf_counter()
        for x in films:
            inferer(x, network)
    return (time.perf_counter() - start) / len(films)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("films_dir")
    parser.add_argument("--n", type=int, default=20, help="films per folder run (default 20)")
    parser.add_argument("--model", default=str(REPO_BUNDLE / "models" / "model.pt"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.model).is_file():
        print(f"error: no model file at {args.model}", file=sys.stderr)
        return 2
    films = sorted(str(p) for p in Path(args.films_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and not p.stem.endswith("_overlay"))[: args.n]
    if len(films) < 2:
        print(f"error: {args.films_dir}: need at least 2 films", file=sys.stderr)
        return 2
    configs = {
        "default": {"model_file": args.model},
        "tta": {"model_file": args.model, "tta": True},
        "ensemble2": {"model_files": [args.model, args.model]},
    }
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(films)} films from {args.films_dir}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    results = {}
    try:
        for name, overrides in configs.items():
            t_n = run_inference(films, tmp / f"{name}_n", overrides)
            t_1 = run_inference(films[:1], tmp / f"{name}_1", overrides)
            results[name] = {"T_N_s": t_n, "T_1_s": t_1, "per_film_s": (t_n - t_1) / (len(films) - 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    alone = model_only(films, args.model)
    base = results["default"]["per_film_s"]
    print(f"{'configuration':<12} {'per film (s)':>12} {'x default':>10} {'single film, with start-up (s)':>31}")
    for name, r in results.items():
        print(f"{name:<12} {r['per_film_s']:>12.3f} {r['per_film_s'] / base:>10.2f} {r['T_1_s']:>31.2f}")
    print(f"{'model only':<12} {alone:>12.3f} {alone / base:>10.2f}   (sliding window on in-memory films)")
    print(f"end-to-end / model-only (default): {base / alone:.2f}")
    print(json.dumps({"films": len(films), "model_only_per_film_s": alone, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
