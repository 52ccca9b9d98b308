"""``monaifrac benchmark infer``: which engine is fastest here, what it costs, and whether it gives the same labels.

Each engine runs ``bundle/configs/inference.json`` as shipped (``monai.bundle``'s ``ConfigWorkflow``, in
this process) over the same films, with only the switches that make it that engine:

========================  ========================================================================
``torch``                 PyTorch, float32, on the CPU: the reference the others are compared with
``torch-bf16``            PyTorch under CPU bfloat16 autocast (``cpu_bf16``); only where the CPU has
                          bf16 units (:func:`monaifrac.inferers.cpu_bf16_supported`)
``onnxruntime``           ONNX Runtime, float32 (``inference.json``'s default on a CPU)
``onnxruntime-int8``      the int8 file of the weights (``monaifrac quantize``); only where it exists
``tta``                   the default engine with flip TTA (the film and its two flips)
``ensemble2``             the default engine, the weights twice as a two-checkpoint ensemble (asked
                          for by name only: the cost of an ensemble)
``cuda`` / ``cuda-amp``   PyTorch on the GPU, float32 / float16 autocast; only where CUDA is
========================  ========================================================================

``--variant NAME=ENGINE ID=VALUE ...`` adds an engine with more overrides of ``inference.json``
(e.g. ``--variant t05=onnxruntime fracture_threshold=0.5``): any switch, priced and checked the same way.
``--baseline CONFIG MODEL`` adds another network as the engine ``baseline``: ``inference.json`` + CONFIG
(e.g. ``bundle/configs/unet.json``, the UNet shipped until 0.2.0, with its own inferer and precision)
with MODEL's weights. ``--profile [K]``: after the timings, cProfile over one more run of the default
engine (not in the figures) and its K functions with the most own time.

Time. Handlers on the evaluator mark every film on one clock (:mod:`.timing`): **end to end** from
the DataLoader's request for the film (reading, preprocessing) to the end of its iteration (inferer,
post-processing, the label map written); **model** from the batch in hand to the end of the inferer
(the network, with TTA's flips or the ensemble's members). Config parsing, network building and the
ONNX session are outside both (``inference_report.json``'s start-up, the CLI's). The first film of each
run is its warm-up (first calls allocate) and is not counted; before the first round each engine runs
once over one film (the ONNX export happens there). ``--repeats R`` runs every engine R times, the
engines rotating which goes first; per-film figures are the median over every counted film of every
round, with the quartiles as spread (:mod:`.timing` says why); films/s = counted films / their summed
end-to-end time. Peak RSS: this process's ``VmHWM``, reset before each run (it includes what the
process already held: the films' reader, torch, the other engines' freed memory).

Agreement (each engine against ``torch``, on the last round's outputs): **pixels** equal in the label
maps over every film; **fracture Dice** of the engine's fracture pixels against torch's, pooled over
the films (:func:`monaifrac.metrics.counts`); **presence**: films whose call (``predictions.csv``'s
``fractured``) is torch's. With ``--truth DIR`` (a FracAtlas-layout or prepared folder) each engine's
outputs are scored by :func:`monaifrac.evaluation.score.score_predictions`, the project's one
definition of dice_pos, hits (fractured films whose fracture the map overlaps) and presence AUC.

Goal (printed): end to end <= 1.25 x model, per film, for the default engine.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from monaifrac.benchmark import timing
from monaifrac.benchmark.tables import Report, Table, num, progress, spread
from monaifrac.bundle import REPO_BUNDLE

CONFIG = str(REPO_BUNDLE / "configs" / "inference.json")
DEFAULT_MODEL = str(REPO_BUNDLE / "models" / "model.pt")
REFERENCE = "torch"
CPU = "$torch.device('cpu')"
CUDA = "$torch.device('cuda:0')"
ENGINES = {  # name: inference.json overrides (model_file is added to every one)
    "torch": {"engine": "torch", "cpu_bf16": False, "device": CPU, "amp": False},
    "torch-bf16": {"engine": "torch", "cpu_bf16": True, "device": CPU, "amp": False},
    "onnxruntime": {"engine": "onnxruntime", "cpu_bf16": False, "device": CPU, "amp": False},
    "onnxruntime-int8": {"engine": "onnxruntime-int8", "cpu_bf16": False, "device": CPU, "amp": False},
    "tta": {"tta": True},
    "ensemble2": {"__ensemble__": 2},
    "cuda": {"engine": "torch", "device": CUDA, "amp": False},
    "cuda-amp": {"engine": "torch", "device": CUDA, "amp": True},
}
BY_NAME_ONLY = ("ensemble2",)
E2E_GOAL = 1.25
FILM_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".bmp", ".tif", ".tiff")


def add_arguments(p) -> None:
    p.add_argument("films", help="a folder of films (searched recursively; JPG/PNG/DICOM...) or one film")
    p.add_argument("--engines", nargs="+", choices=list(ENGINES), default=None,
                   help="engines to time (default: every one available here except ensemble2; torch, the "
                        "reference of the agreement columns, always runs)")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME=ENGINE ID=VALUE",
                   help="one more engine: ENGINE's switches plus these inference.json overrides (repeatable)")
    p.add_argument("--truth", help="score each engine against this FracAtlas-layout or prepared folder")
    p.add_argument("--n", type=int, default=20, help="films taken from FILMS, sorted by path (default 20)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each engine over the films (default 2)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="weights (default: the shipped model)")
    p.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE",
                   help="inference.json overrides for every engine (e.g. film_long_side=128 on tiny films)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--baseline", nargs=2, metavar=("CONFIG", "MODEL"), default=None,
                   help="another network as the engine `baseline`: an override file of inference.json and its "
                        "weights (e.g. bundle/configs/unet.json OLD_UNET.pt)")
    p.add_argument("--profile", nargs="?", type=int, const=25, default=None, metavar="K",
                   help="cProfile one more run of the default engine; its top K functions by own time (default 25)")
    p.add_argument("--keep", help="keep each engine's label maps and predictions.csv under this folder")


def find_films(source: str | Path, n: int) -> list[str]:
    """The first ``n`` films under ``source`` (recursively, sorted by path; overlays left out), or ``source``
    itself when it is a file."""
    from monaifrac.errors import InputError

    source = Path(source)
    if source.is_file():
        return [str(source)]
    if not source.is_dir():
        raise InputError(source, "no such file or folder")
    films = sorted(str(p) for p in source.rglob("*") if p.is_file() and p.suffix.lower() in FILM_SUFFIXES
                   and not p.stem.endswith("_overlay"))
    if not films:
        raise InputError(source, "no film (JPG/PNG/DICOM/BMP/TIFF) in this folder")
    return films[:n]


def available(names, model: str) -> tuple[list[str], dict[str, str]]:
    """(the engines of ``names`` that run here, {engine: why not} for the others)."""
    import torch

    from monaifrac.inferers import cpu_bf16_supported

    ok, skipped = [], {}
    for name in names:
        base = name.split("=", 1)[1] if "=" in name else name
        if base in ("cuda", "cuda-amp") and not torch.cuda.is_available():
            skipped[name] = "no CUDA GPU"
        elif base == "torch-bf16" and not cpu_bf16_supported():
            skipped[name] = "this CPU has no bf16 units"
        elif base.startswith("onnxruntime") and not _has_onnxruntime():
            skipped[name] = "onnxruntime is not installed"
        elif base == "onnxruntime-int8" and (why := _int8_missing(model)):
            skipped[name] = why
        else:
            ok.append(name)
    return ok, skipped


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _int8_missing(model: str) -> str | None:
    """Why the int8 engine cannot run ``model``'s weights (its file is made by ``monaifrac quantize``), or None."""
    from monai.bundle import ConfigParser

    from monaifrac.networks.onnx import EngineError, ready, with_engine

    parser = ConfigParser()
    parser.read_config(CONFIG)
    try:
        ready([with_engine(parser.get_parsed_content("network_def"), "onnxruntime-int8", model)], model)
    except EngineError:
        return f"no int8 file for {Path(model).name} (monaifrac quantize)"
    return None


def overrides_of(name: str, model: str, common: dict, variants: dict) -> dict:
    """inference.json's overrides that make engine ``name`` run ``model`` (``__configs__``: more config files)."""
    if name == "baseline":
        config, weights = variants["baseline"]
        return {**common, "__configs__": [config], "model_file": weights}
    if name in variants:
        base, extra = variants[name]
        return {**overrides_of(base, model, common, variants), **extra}
    spec = dict(ENGINES[name])
    members = spec.pop("__ensemble__", 1)
    files = {"model_files": [model] * members} if members > 1 else {"model_file": model}
    return {**common, **spec, **files}


class FilmClock:
    """Per-film marks on an evaluator: end to end (GET_BATCH_STARTED to the end of ITERATION_COMPLETED) and
    model (GET_BATCH_COMPLETED to FORWARD_COMPLETED), in seconds, in the order the films came."""

    def __init__(self, evaluator):
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        self.end_to_end: list[float] = []
        self.model: list[float] = []
        self.t: dict[str, float] = {}
        mark = lambda key: (lambda engine: self.t.__setitem__(key, timing.clock()))  # noqa: E731
        evaluator.add_event_handler(Events.GET_BATCH_STARTED, mark("start"))
        evaluator.add_event_handler(Events.GET_BATCH_COMPLETED, mark("batch"))
        evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, mark("forward"))
        # attached after the config's own handlers (the predictions.csv writer), so they are inside the film's time
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._done)

    def _done(self, engine) -> None:
        end = timing.clock()
        self.end_to_end.append(end - self.t["start"])
        self.model.append(self.t["forward"] - self.t["batch"])
        self.t = {}


def run_engine(films: list[str], out: Path, overrides: dict) -> dict:
    """``inference.json`` with ``overrides`` over ``films`` into ``out``: per-film seconds and the peak RSS."""
    from monai.bundle import ConfigWorkflow

    from monaifrac.benchmark.processes import peak_rss_mb, reset_peak_rss

    if out.exists():
        shutil.rmtree(out)
    overrides = dict(overrides)
    configs = [CONFIG, *overrides.pop("__configs__", [])]
    reset_peak_rss()
    # logging_file=False: the bundle's logging.conf would send MONAI's INFO lines to stdout, the tables' place
    workflow = ConfigWorkflow(config_file=configs, workflow_type="infer", input_files=films, output_dir=str(out),
                              bundle_root=str(out.parent / ".bundle_root"), logging_file=False, **overrides)
    workflow.initialize()
    clock = FilmClock(workflow.parser.get_parsed_content("evaluator"))
    workflow.run()
    workflow.finalize()
    return {"end_to_end_s": clock.end_to_end, "model_s": clock.model, "peak_rss_mb": peak_rss_mb()}


def agreement(ref_dir: Path, other_dir: Path) -> dict:
    """How far ``other_dir``'s label maps and presence calls agree with ``ref_dir``'s (films of both)."""
    import numpy as np
    import torch

    from monaifrac import metrics
    from monaifrac.evaluation.score import find_predictions, read_scores
    from monaifrac.io import read_label_map
    from monaifrac.metrics import CLASS_INDEX

    ref, other = find_predictions(ref_dir), find_predictions(other_dir)
    common = sorted(set(ref) & set(other))
    equal = total = 0
    pairs = []
    for film in common:
        a, b = read_label_map(ref[film]), read_label_map(other[film])
        if a.shape != b.shape:
            pairs.append((0.0, float((a == CLASS_INDEX["fracture"]).sum() + (b == CLASS_INDEX["fracture"]).sum())))
            total += a.size
            continue
        equal += int((a == b).sum())
        total += a.size
        pairs.append(metrics.counts(torch.from_numpy(np.asarray(b == CLASS_INDEX["fracture"])),
                                    torch.from_numpy(np.asarray(a == CLASS_INDEX["fracture"])), "dice"))
    ref_calls, other_calls = read_scores(ref_dir), read_scores(other_dir)
    called = [f for f in common if f in ref_calls and f in other_calls]
    same = sum(ref_calls[f]["fractured"] == other_calls[f]["fractured"] for f in called)
    return {"films": len(common), "pixel_agreement": equal / total if total else float("nan"),
            "fracture_dice": metrics.pooled(pairs) if pairs else float("nan"),
            "presence_agreement": same / len(called) if called else float("nan"),
            "fractured_calls": sum(bool(other_calls[f]["fractured"]) for f in called)}


def against_truth(pred_dir: Path, truth: str, out: Path) -> dict:
    """dice_pos, hits and presence AUC of one engine's outputs
    (:func:`monaifrac.evaluation.score.score_predictions`, 200 bootstrap resamples: the intervals are not shown)."""
    from monaifrac.evaluation.score import score_predictions

    r = score_predictions(pred_dir, truth, out, n_boot=200)
    auc = r["presence"].get("roc_auc") or {}
    return {"dice_pos": r["fracture"]["dice_pos"]["value"], "hits": r["outcomes"]["hit"],
            "fractured_films": r["fractured"], "presence_auc": auc.get("value"), "films": r["films"]}


def main(args, report: Report) -> None:
    import torch

    from monaifrac.bundle import parse_overrides, require_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n < 2 or args.repeats < 1:
        raise ValueError("--n must be at least 2 (the first film of a run is its warm-up) and --repeats at least 1")
    require_model(args.model)
    model = str(Path(args.model).resolve())
    films = find_films(args.films, args.n)
    if len(films) < 2:
        raise ValueError(f"{args.films}: need at least 2 films (the first of each run is its warm-up)")
    common = parse_overrides(args.set)
    variants = {}
    for spec in args.variant:
        name, _, base = spec[0].partition("=")
        if base not in ENGINES or not name or name in ENGINES:
            raise ValueError(f"--variant {spec[0]}: expected NEW_NAME=ENGINE, ENGINE one of {', '.join(ENGINES)}")
        variants[name] = (base, parse_overrides(spec[1:]))
    if args.baseline:
        require_model(args.baseline[1])
        if not Path(args.baseline[0]).is_file():
            raise FileNotFoundError(f"{args.baseline[0]}: no such config file")
        variants["baseline"] = (str(Path(args.baseline[0]).resolve()), str(Path(args.baseline[1]).resolve()))
    asked = list(dict.fromkeys(args.engines or [e for e in ENGINES if e not in BY_NAME_ONLY]))
    asked = list(dict.fromkeys([REFERENCE, *asked, *variants]))
    names, skipped = available([f"{v}={variants[v][0]}" if v in variants and v != "baseline" else v
                                for v in asked], model)
    names = [n.split("=", 1)[0] for n in names]
    skipped = {k.split("=", 1)[0]: why for k, why in skipped.items()}
    default = "torch" if torch.cuda.is_available() or not _has_onnxruntime() else "onnxruntime"
    for name, why in skipped.items():
        progress(f"skipped {name}: {why}")
    progress(f"{len(films)} films from {args.films}; engines {', '.join(names)}; {args.repeats} run(s) each")

    tmp = Path(tempfile.mkdtemp(prefix="monaifrac_benchmark_infer_"))
    keep = Path(args.keep) if args.keep else tmp
    runs: dict[str, list[dict]] = {n: [] for n in names}
    try:
        for name in names:  # warm-up: one film each (the ONNX export, first sessions), not counted
            progress(f"warm-up {name}")
            run_engine(films[:1], tmp / "warm-up" / name, overrides_of(name, model, common, variants))
        for r in range(args.repeats):
            for name in timing.rotations(names, r):
                run = run_engine(films, keep / name, overrides_of(name, model, common, variants))
                runs[name].append(run)
                e2e = timing.summary(run["end_to_end_s"][1:])["median"]
                progress(f"run {r + 1}/{args.repeats} {name}: {e2e:.3f} s a film end to end, "
                         f"peak RSS {run['peak_rss_mb']:.0f} MB")
        results = {"films": films, "repeats": args.repeats, "default_engine": default, "reference": REFERENCE,
                   "skipped": skipped, "overrides": {n: overrides_of(n, model, common, variants) for n in names},
                   "engines": {}}
        for name in names:
            e2e = [t for run in runs[name] for t in run["end_to_end_s"][1:]]
            mod = [t for run in runs[name] for t in run["model_s"][1:]]
            results["engines"][name] = {
                "end_to_end_s": timing.summary(e2e), "model_s": timing.summary(mod),
                "films_per_s": len(e2e) / sum(e2e), "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[name]),
                "end_to_end_over_model": timing.summary(e2e)["median"] / timing.summary(mod)["median"],
                "agreement": agreement(keep / REFERENCE, keep / name)}
            if args.truth:
                progress(f"scoring {name} against {args.truth}")
                results["engines"][name]["truth"] = against_truth(keep / name, args.truth, tmp / "scores" / name)
        if args.profile:
            progress(f"cProfile of one more {default} run")
            report.notes.append(profile(films, tmp / "profile", overrides_of(default, model, common, variants),
                                        args.profile))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.results = results
    report.tables += tables(results, bool(args.truth))
    if default in results["engines"]:
        ratio = results["engines"][default]["end_to_end_over_model"]
        report.goal(f"end to end <= {E2E_GOAL} x model, per film ({default})", f"{ratio:.2f}", ratio <= E2E_GOAL)
    report.notes.append(f"{len(films)} films, {args.repeats} run(s) of each engine; the first film of each run is "
                        "its warm-up and not counted" + ("; skipped: " + "; ".join(f"{k} ({v})" for k, v in
                                                                                     skipped.items())
                                                         if skipped else ""))


def profile(films: list[str], out: Path, overrides: dict, top: int) -> str:
    """cProfile of one run: its ``top`` functions by own time, and the network's forward against the rest."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run = run_engine(films, out, overrides)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    # the network's forward: calls of Module.__call__ made by an inferer (monaifrac's or MONAI's)
    forward = 0.0
    for (file, _, name), (_, _, _, _, callers) in stats.stats.items():
        if name == "_wrapped_call_impl" and file.endswith("torch/nn/modules/module.py"):
            forward += sum(c[3] for (cfile, _, _), c in callers.items() if "inferers" in cfile)
    total = sum(run["end_to_end_s"])
    return (f"cProfile of one run over {len(films)} films, top {top} by own time:\n"
            + text.getvalue().split("\n", 4)[-1].rstrip()
            + f"\nper film under the profiler: {total / len(films):.3f} s end to end, of which the network's "
              f"forward {forward / len(films):.3f} s")


def tables(results: dict, truth: bool) -> list[Table]:
    engines = results["engines"]
    default = results["default_engine"] if results["default_engine"] in engines else next(iter(engines))
    base = engines[default]["end_to_end_s"]["median"]
    time = Table("inference, per film: median (p25-p75) over the counted films of every run",
                 ["engine", "model s", "end to end s", "films/s", f"x {default}", "e2e/model", "peak RSS MB"],
                 notes=["model: the inferer (network, flips, members); end to end: reading the film to its label "
                        "map written; films/s from end to end; peak RSS: this process, reset before each run"])
    agree = Table(f"agreement with {results['reference']} (float32 PyTorch)" + (", and against the truth" if truth
                                                                                   else ""),
                  ["engine", "pixels equal", "fracture Dice", "presence calls equal", "called fractured"]
                  + (["dice_pos", "hits", "presence AUC"] if truth else []),
                  notes=["pixels: share of equal label-map pixels over every film; fracture Dice: pooled over the "
                         "films; presence: films with the same call"]
                  + (["dice_pos, hits (fractured films the map overlaps / fractured films), AUC: "
                      "monaifrac.evaluation.score"] if truth else []))
    for name, r in engines.items():
        time.add(name, spread(r["model_s"]), spread(r["end_to_end_s"]), num(r["films_per_s"], 1),
                 num(r["end_to_end_s"]["median"] / base, 2), num(r["end_to_end_over_model"], 2),
                 num(r["peak_rss_mb"], 0))
        a = r["agreement"]
        cells = [name, num(a["pixel_agreement"], 4), num(a["fracture_dice"], 3), num(a["presence_agreement"], 3),
                 f"{a['fractured_calls']}/{a['films']}"]
        if truth:
            t = r["truth"]
            cells += [num(t["dice_pos"], 3), f"{t['hits']}/{t['fractured_films']}", num(t["presence_auc"], 3)]
        agree.add(*cells)
    return [time, agree]
