"""Inference cost of the bundle's switches, measured side by side in one run.

Usage: python scripts/bench_infer.py FILMS_DIR [--n 20] [--model bundle/models/model.pt] [--threads N]
                                    [--single FILM ...] [--cli] [--engine E] [--engines E ...]
                                    [--baseline CONFIG MODEL] [--profile [K]] [--rounds R]

Runs ``bundle/configs/inference.json`` in this process over the first N films of FILMS_DIR
(JPG/PNG), and over the first film alone, for each configuration:

* ``default``: one model, no test-time augmentation (what ``inference.json`` ships);
* ``tta``: flip TTA (``--tta true``: the film and its two flips);
* ``ensemble2``: two checkpoints averaged (``--model_files`` with the model twice).

The per-film cost is the marginal time ``(T_N - T_1) / (N - 1)``, which leaves out start-up
and config parsing. Beside it, the model alone: ``inference.json``'s inferer (the whole film,
bf16 autocast where the CPU has bf16 units) over the same films held in memory as tensors.
Prints absolute figures, films/s, the ratio of each switch to ``default``, the ratio
end-to-end / model-only (the project's goal: <= 1.25), and the machine (CPU model, cores,
torch threads). ``--rounds R`` repeats the configurations and the model-only pass R times,
alternating which goes first (the end-to-end runs, then the model alone, in odd rounds; the
reverse in even ones), pools them (sums of times) and prints each round's end-to-end /
model-only ratio: on a shared or virtual machine one pass is only a smoke check.

``--single FILM ...``: for each film, its marginal end-to-end time (the film under four names:
``(T_4 - T_1) / 3``, in this process) beside the model alone on it. ``--cli``: also each single film,
and the folder of N films, through the command line in a fresh process
(``python -m monai.bundle run --config_file bundle/configs/inference.json ...``): wall time
including start-up (imports, config parsing, model loading) and that process's peak resident
memory; beside them, the floor under any command that uses MONAI: ``python -c "import torch"`` and
``python -c "import monai"``, each in a fresh process.

``--profile [K]``: after the timings, cProfile over one more ``default`` run of the N films (not
timed by the figures above) and the K (default 25) functions with the most own time, then where
the end-to-end time goes: the network's forward (the calls of the network that an inferer makes)
against the rest, per film.

``--baseline CONFIG MODEL``: the model alone of another network beside the bundle's, on the same
in-memory films, alternating film by film: ``inference.json`` + CONFIG (e.g. ``bundle/configs/unet.json``,
the earlier UNet, with its own inferer and bf16 setting) and MODEL's weights. Prints both and the ratio.

``--engine torch|onnxruntime|onnxruntime-int8``: the engine of every configuration above (default:
``inference.json``'s, ONNX Runtime on a CPU; int8 needs the weights' int8 file, ``monaifrac quantize``).
``--engines torch onnxruntime onnxruntime-int8``: the engines side by side, the model alone on
each (same films in memory, same inferer, films rotating which engine goes first, the ONNX file
exported before the timing) and ``default`` end to end with each; prints per-film times, the ratio to
the first engine and the largest logit difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # scripts/ is on sys.path when a script runs
from monaifrac.bundle import REPO_BUNDLE
from monaifrac.networks.onnx import ENGINES

CONFIG = str(REPO_BUNDLE / "configs" / "inference.json")


def run_inference(files: list[str], out: Path, overrides: dict) -> float:
    from monai.bundle import ConfigWorkflow

    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=CONFIG, workflow_type="infer", input_files=files, output_dir=str(out),
                              **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return time.perf_counter() - start


def film_size(path: str) -> tuple[int, int]:
    """(width, height) as displayed."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).size


def _films_and_network(files: list[str], model: str, extra_configs: tuple[str, ...] = (), **overrides):
    """The films preprocessed as inference.json (+ ``extra_configs``) does (in memory), its inferer, and the
    network in eval mode."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([CONFIG, *extra_configs])
    parser["model_file"] = model
    for key, value in overrides.items():
        parser[key] = value
    preprocessing, inferer, network = (parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "network"))
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    network.eval()
    return [preprocessing({"image": f})["image"][None] for f in files], inferer, network


def model_only(files: list[str], model: str, **overrides) -> float:
    """Seconds per film of the inferer alone, over films already in memory."""
    import torch

    films, inferer, network = _films_and_network(files, model, **overrides)
    with torch.no_grad():
        inferer(films[0], network)  # warm-up
        start = time.perf_counter()
        for x in films:
            inferer(x, network)
    return (time.perf_counter() - start) / len(films)


def model_only_against(files: list[str], model: str, baseline_config: str, baseline_model: str,
                       engine: str | None = None) -> dict:
    """Seconds per film of the inferer alone for the bundle's network (under ``engine``, default
    ``inference.json``'s) and for a baseline network (``inference.json`` + ``baseline_config``, e.g.
    ``configs/unet.json``, with ``baseline_model``'s weights), each with its own config's inferer and
    precision, side by side: films in memory, alternating film by film which network goes first."""
    import torch

    films, inferer, network = _films_and_network(files, model, **({"engine": engine} if engine else {}))
    base_films, base_inferer, base_network = _films_and_network(files, baseline_model, (baseline_config,))
    runs = {"default": (films, inferer, network), "baseline": (base_films, base_inferer, base_network)}
    times = dict.fromkeys(runs, 0.0)
    with torch.no_grad():
        for f, inf, net in runs.values():
            inf(f[0], net)  # warm-up
        for i in range(len(films)):
            for name in (("default", "baseline") if i % 2 == 0 else ("baseline", "default")):
                f, inf, net = runs[name]
                start = time.perf_counter()
                inf(f[i], net)
                times[name] += time.perf_counter() - start
    per = {name: t / len(films) for name, t in times.items()}
    return {"default_per_film_s": per["default"], "baseline_per_film_s": per["baseline"],
            "default_over_baseline": per["default"] / per["baseline"], "baseline_config": baseline_config,
            "baseline_model": baseline_model}


def model_only_engines(files: list[str], model: str, engines: list[str]) -> dict:
    """Seconds per film of the inferer alone under each engine, side by side.

    Same films (in memory), same ``inferer``, each engine's network from ``inference.json``'s own
    ``network`` (``--engine onnxruntime``: :class:`monaifrac.networks.onnx.OnnxRuntimeNetwork`, its ONNX
    file exported beforehand, outside the timing). Films rotate which engine goes first.
    """
    import torch

    runs = {}
    for engine in engines:
        films, inferer, network = _films_and_network(files, model, engine=engine)
        runs[engine] = (films, inferer, network)
    times = dict.fromkeys(engines, 0.0)
    outputs: dict = {}
    with torch.no_grad():
        for films, inferer, network in runs.values():
            inferer(films[0], network)  # warm-up (and the ONNX export where it is not cached yet)
        for i in range(len(files)):
            order = engines[i % len(engines):] + engines[: i % len(engines)]
            for engine in order:
                films, inferer, network = runs[engine]
                start = time.perf_counter()
                out = inferer(films[i], network)
                times[engine] += time.perf_counter() - start
                outputs[engine] = torch.as_tensor(out)
            first = outputs[engines[0]]
            for engine in engines[1:]:
                diff = float((outputs[engine] - first).abs().max())
                outputs[f"max_diff_{engine}"] = max(outputs.get(f"max_diff_{engine}", 0.0), diff)
    result: dict = {"per_film_s": {e: t / len(files) for e, t in times.items()}}
    result["over_first"] = {e: result["per_film_s"][e] / result["per_film_s"][engines[0]] for e in engines}
    result["max_abs_diff_logits"] = {e: outputs[f"max_diff_{e}"] for e in engines[1:]}
    if "onnxruntime" in engines:
        import onnxruntime as ort

        result["onnxruntime"] = ort.__version__
        result["onnx_file"] = str(runs["onnxruntime"][2].onnx_file)
    return result


def profile_folder(films: list[str], model: str, top: int) -> None:
    """cProfile of one ``default`` run over ``films``; prints the top functions and the network's share."""
    import cProfile
    import io
    import pstats

    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_profile_"))
    try:
        profiler = cProfile.Profile()
        profiler.enable()
        total = run_inference(films, tmp / "out", {"model_file": model})
        profiler.disable()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    print(f"cProfile of one default run over {len(films)} films ({total:.2f} s under the profiler), "
          f"top {top} by own time:")
    print(text.getvalue().split("\n", 4)[-1].rstrip())
    # the network's forward: calls of Module.__call__ made by an inferer (monaifrac's or MONAI's)
    forward = 0.0
    for (file, _, name), (_, _, _, _, callers) in stats.stats.items():
        if name == "_wrapped_call_impl" and file.endswith("torch/nn/modules/module.py"):
            forward += sum(c[3] for (cfile, _, _), c in callers.items() if "inferers" in cfile)
    per_film = total / len(films)
    print(f"per film under the profiler: {per_film:.3f} s, of which the network's forward {forward / len(films):.3f} s "
          f"and everything else {(total - forward) / len(films):.3f} s (start-up and config parsing included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("films_dir")
    parser.add_argument("--n", type=int, default=20, help="films per folder run (default 20)")
    parser.add_argument("--model", default=str(REPO_BUNDLE / "models" / "model.pt"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--single", nargs="+", metavar="FILM", help="films timed one by one (e.g. a 454x373 film "
                                                                  "and a 2304x2880 scan)")
    parser.add_argument("--cli", action="store_true", help="also time the single films and the folder through the "
                                                           "command line, each in a fresh process, with peak RSS")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="the engine of the configurations timed (default: inference.json's own)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=None,
                        help="also time these engines side by side: the model alone on each, alternating film by "
                             "film, and `default` end to end with each (e.g. --engines torch onnxruntime)")
    parser.add_argument("--baseline", nargs=2, metavar=("CONFIG", "MODEL"), default=None,
                        help="also time another network's model alone beside the bundle's, film by film: an override "
                             "file of inference.json and its weights (e.g. bundle/configs/unet.json unet.pt)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the folder timings R times, alternating "
                                                              "order; figures pooled (default 1)")
    parser.add_argument("--profile", nargs="?", type=int, const=25, default=None, metavar="K",
                        help="cProfile one more default run of the N films; print the top K functions (default 25)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if any(str(e).startswith("onnxruntime") for e in (args.engines or []) + [args.engine]):  # fail now, not after
        try:                                                                                  # the PyTorch runs
            import onnxruntime  # noqa: F401
        except ImportError:
            print("error: engine onnxruntime needs onnxruntime: pip install onnxruntime", file=sys.stderr)
            return 2
    if "onnxruntime-int8" in (args.engines or []) + [args.engine]:
        from monaifrac.networks.onnx import EngineError, ready

        try:
            ready([_films_and_network([], args.model, engine="onnxruntime-int8")[2]])
        except EngineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for model in [args.model] + ([args.baseline[1]] if args.baseline else []):
        if not Path(model).is_file():
            print(f"error: no model file at {model}", file=sys.stderr)
            return 2
    films = sorted(str(p) for p in Path(args.films_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and not p.stem.endswith("_overlay"))[: args.n]
    if len(films) < 2:
        print(f"error: {args.films_dir}: need at least 2 films", file=sys.stderr)
        return 2
    engine = {"engine": args.engine} if args.engine else {}
    configs = {
        "default": {"model_file": args.model, **engine},
        "tta": {"model_file": args.model, "tta": True, **engine},
        "ensemble2": {"model_files": [args.model, args.model], **engine},
    }
    for other in args.engines or []:
        configs[f"default@{other}"] = {"model_file": args.model, "engine": other}
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(films)} films from {args.films_dir}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if any(c.get("engine", "onnxruntime") == "onnxruntime" for c in configs.values()):
        model_only(films[:2], args.model, engine="onnxruntime")  # the ONNX file exported (once) before any timing
    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    timings: dict = {name: {"T_N_s": [], "T_1_s": []} for name in configs}
    alone_rounds: list[float] = []
    try:
        for rnd in range(args.rounds):
            steps = ["end-to-end", "model"] if rnd % 2 == 0 else ["model", "end-to-end"]
            for step in steps:
                if step == "model":
                    alone_rounds.append(model_only(films, args.model, **engine))
                    continue
                for name, overrides in configs.items():
                    timings[name]["T_N_s"].append(run_inference(films, tmp / f"{name}_n{rnd}", overrides))
                    timings[name]["T_1_s"].append(run_inference(films[:1], tmp / f"{name}_1{rnd}", overrides))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {name: {"T_N_s": sum(t["T_N_s"]) / args.rounds, "T_1_s": sum(t["T_1_s"]) / args.rounds,
                      "per_film_s": (sum(t["T_N_s"]) - sum(t["T_1_s"])) / (args.rounds * (len(films) - 1))}
               for name, t in timings.items()}
    alone = sum(alone_rounds) / args.rounds
    base = results["default"]["per_film_s"]
    per_round = [(tn - t1) / (len(films) - 1) / a for tn, t1, a in
                 zip(timings["default"]["T_N_s"], timings["default"]["T_1_s"], alone_rounds)]
    print(f"{'configuration':<24} {'per film (s)':>12} {'films/s':>8} {'x default':>10} "
          f"{'one film, in-process, with config parsing (s)':>46}")
    for name, r in results.items():
        print(f"{name:<24} {r['per_film_s']:>12.3f} {1 / r['per_film_s']:>8.1f} {r['per_film_s'] / base:>10.2f} "
              f"{r['T_1_s']:>46.2f}")
    print(f"{'model only':<24} {alone:>12.3f} {1 / alone:>8.1f} {alone / base:>10.2f}   (the inferer on in-memory films)")
    print(f"end-to-end / model-only (default): {base / alone:.2f}   (goal <= 1.25)"
          + (f"; per round {' '.join(f'{r:.2f}' for r in per_round)}" if args.rounds > 1 else ""))
    singles = {}
    if args.single:
        tmp = Path(tempfile.mkdtemp(prefix="bench_infer_single_"))
        try:
            run_inference(films[:1], tmp / "warm-up", {"model_file": args.model})
            for i, film in enumerate(args.single):
                copies = tmp / f"copies{i}"
                copies.mkdir()
                for k in range(4):  # the same film under 4 names: 4 label maps
                    os.symlink(os.path.abspath(film), copies / f"{k}_{Path(film).name}")
                named = sorted(str(p) for p in copies.iterdir())
                t_1 = run_inference(named[:1], tmp / f"one{i}", {"model_file": args.model})
                t_4 = run_inference(named, tmp / f"four{i}", {"model_file": args.model})
                singles[film] = {"size": film_size(film), "end_to_end_s": (t_4 - t_1) / 3,
                                 "model_only_s": model_only([film, film], args.model)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("single films (end-to-end: marginal in this process; model only: the inferer on the film in memory):")
        for film, r in singles.items():
            print(f"  {Path(film).name} ({r['size'][0]}x{r['size'][1]}): end-to-end {r['end_to_end_s']:.3f} s, "
                  f"model only {r['model_only_s']:.3f} s, ratio {r['end_to_end_s'] / r['model_only_s']:.2f}")
    cli = {}
    if args.cli:
        from bench_big_film import infer as infer_in_fresh_process, run_child

        tmp = Path(tempfile.mkdtemp(prefix="bench_infer_cli_"))
        try:
            for i, film in enumerate(list(args.single or []) + [films[0]]):
                wall, peak = infer_in_fresh_process(Path(film), tmp / f"one{i}", args.model)
                cli[film] = {"size": film_size(film), "wall_s": wall, "peak_rss_mb": peak}
            folder = tmp / "folder"
            folder.mkdir()
            for f in films:
                os.symlink(os.path.abspath(f), folder / Path(f).name)
            wall, peak = infer_in_fresh_process(folder, tmp / "folder_out", args.model)
            cli["folder"] = {"films": len(films), "wall_s": wall, "peak_rss_mb": peak}
            # the floor under any command that uses MONAI: a fresh interpreter importing torch, then monai
            # (whose __init__ imports every submodule); best of 3 each
            for module in ("torch", "monai"):
                cli[f"import {module}"] = {"wall_s": min(run_child([sys.executable, "-c", f"import {module}"])[0]
                                                         for _ in range(3))}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("through the command line, a fresh process each (wall includes imports, config parsing, model loading):")
        for key, r in cli.items():
            if key.startswith("import "):
                print(f"  python -c '{key}' (best of 3): {r['wall_s']:.2f} s")
                continue
            what = f"folder of {r['films']} films" if key == "folder" else \
                f"one film {Path(key).name} ({r['size'][0]}x{r['size'][1]})"
            extra = f", {r['films'] / r['wall_s']:.1f} films/s" if key == "folder" else ""
            print(f"  {what}: {r['wall_s']:.2f} s{extra}, peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.profile:
        profile_folder(films, args.model, args.profile)
    engines = None
    if args.engines and len(args.engines) > 1:
        engines = model_only_engines(films, args.model, list(dict.fromkeys(args.engines)))
        first = next(iter(engines["per_film_s"]))
        print("model only, engines side by side (films rotate which goes first"
              + (f"; onnxruntime {engines['onnxruntime']}, CPU provider, intra-op threads = torch threads"
                 if "onnxruntime" in engines else "") + "):")
        for e, t in engines["per_film_s"].items():
            diff = engines["max_abs_diff_logits"].get(e)
            print(f"  {e:<16} {t:>10.3f}   x {first} {engines['over_first'][e]:.2f}"
                  + (f", max |logit difference| {diff:.1e}" if diff is not None else ""))
    against = None
    if args.baseline:
        against = model_only_against(films, args.model, *args.baseline, engine=args.engine)
        print(f"model only, side by side with {args.baseline[0]} + {args.baseline[1]} (films alternate which goes "
              f"first; each network with its own config's inferer and precision):")
        print(f"{'  default':<12} {against['default_per_film_s']:>12.3f}")
        print(f"{'  baseline':<12} {against['baseline_per_film_s']:>12.3f}   default / baseline "
              f"{against['default_over_baseline']:.2f}")
    print(json.dumps({"films": len(films), "rounds": args.rounds, "model_only_per_film_s": alone,
                      "ratio_per_round": per_round, **results, **({"baseline": against} if against else {}),
                      **({"single": singles} if singles else {}), **({"cli": cli} if cli else {}),
                      **({"engines": engines} if engines else {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
