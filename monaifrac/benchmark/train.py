"""``monaifrac benchmark train``: what training costs here, each figure measured side by side in one run.

* ``train PREPARED_DIR`` (default): the bundle's real training pipeline against the bare network step
  (:mod:`.pipeline`), for each precision (fp32 and bf16 on a CPU, fp32 and amp on CUDA): samples/s of
  both and the efficiency bundle / bare (the project's goal: >= 0.9), the bf16 (amp) / fp32 speed-ups,
  and where an iteration's time goes. ``--rounds R`` repeats each bundle/bare pair R times, bundle first
  in odd rounds and bare first in even ones; figures are pooled (total samples / total time) and each
  round's efficiency is kept as the spread. A **sample** is one item of a batch: a whole film padded to
  ``film_size`` (train.json) or a crop (``--config bundle/configs/patches.json``). ``--config`` adds
  override files after train.json, as ``monai.bundle run`` would (``bundle/configs/gpu_train.json``).
  ``--profile [cprofile|torch]`` profiles N more bundle iterations after the timed window.
* ``train --networks``: the training step of the network alone and of its cost levers (:mod:`.networks`);
  needs no data.
* ``train PREPARED_DIR --epoch``: one whole epoch of ``train.json`` (``ConfigWorkflow``, as ``monaifrac
  train`` runs it): wall and CPU time of caching, of the epoch's training and of its validation (CPU:
  user + system of this process and its workers).
"""

from __future__ import annotations

import tempfile

from monaifrac.benchmark.tables import Report, Table, num, progress, spread

PRECISIONS = ("fp32", "bf16", "amp")
EFFICIENCY_GOAL = 0.9


def add_arguments(p) -> None:
    p.add_argument("dataset_dir", nargs="?", help="a folder written by `monaifrac prepare` (not for --networks)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--networks", action="store_true", help="the network's training step alone, and its levers")
    mode.add_argument("--epoch", action="store_true", help="one whole epoch: caching, training, validation")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up iterations before them (default 2)")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=None,
                   help="default: fp32 bf16 on a CPU, fp32 amp on CUDA (amp: CUDA only)")
    p.add_argument("--config", nargs="+", default=[], metavar="JSON",
                   help="override files read after train.json (bundle/configs/gpu_train.json: the GPU recipe)")
    p.add_argument("--films", type=int, default=None,
                   help="training films cached (max_items; default batch_size x (warmup + iters))")
    p.add_argument("--num-workers", type=int, default=None, help="num_workers (default: train.json's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE", help="more train.json overrides")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat each bundle/bare pair R times, alternating which goes first (default 1)")
    p.add_argument("--profile", nargs="?", const="cprofile", choices=("cprofile", "torch"), default=None,
                   help="profile N more bundle iterations after the timed window; print the top 15")
    p.add_argument("--size", type=int, nargs=2, default=[480, 384], metavar=("H", "W"),
                   help="--networks: input size (default 480 384)")
    p.add_argument("--batch", type=int, default=4, help="--networks: batch (default 4)")
    p.add_argument("--steps", type=int, default=3, help="--networks: timed steps per variant (default 3)")
    p.add_argument("--only", nargs="+", default=None, help="--networks: variants to time (names as printed)")


def main(args, report: Report) -> None:
    from monaifrac.bundle import parse_overrides

    if args.networks:
        return networks(args, report, parse_overrides(args.set))
    if not args.dataset_dir:
        raise ValueError("a prepared folder (monaifrac prepare) is needed, except with --networks")
    if args.epoch:
        return epoch(args, report, parse_overrides(args.set))
    return pipeline(args, report)


def networks(args, report: Report, overrides: dict) -> None:
    from monaifrac.benchmark import networks as nets

    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    results = nets.run(tuple(args.size), args.batch, args.steps, args.only, overrides, progress)
    report.results = {"size": list(args.size), "batch": args.batch, "steps": args.steps, "variants": results}
    t = Table(f"training step of the network alone, {args.batch} x 1 x {args.size[0]} x {args.size[1]}: "
              f"median (p25-p75) of {args.steps} steps after a warm-up",
              ["variant", "M params", "s an image", "x default", "layout"])
    for name, r in results.items():
        if "skipped" in r:
            t.add(name, "-", "skipped", "-", r["skipped"][:60])
        else:
            t.add(name, num(r["params_m"], 2), spread(r["s_per_image"]), num(r["over_default"], 2),
                  r["layout"] + (", bf16" if r["bf16"] else ""))
    report.tables.append(t)


def epoch(args, report: Report, overrides: dict) -> None:
    """One epoch of train.json through ConfigWorkflow; caching, training and validation timed apart."""
    import resource

    from monai.bundle import ConfigWorkflow

    from monaifrac.benchmark.timing import clock
    from monaifrac.bundle import REPO_BUNDLE

    def cpu_seconds() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    configs = REPO_BUNDLE / "configs"
    overrides = {"max_epochs": 1, **overrides}
    with tempfile.TemporaryDirectory(prefix="monaifrac_benchmark_epoch_") as root:
        wf = ConfigWorkflow(config_file=[str(configs / "train.json"), *args.config],
                            meta_file=str(configs / "metadata.json"), logging_file=False, workflow_type="train",
                            dataset_dir=args.dataset_dir, bundle_root=root, **overrides)
        marks = [(clock(), cpu_seconds())]
        progress("caching (initialize)")
        wf.initialize()  # builds the trainer, so both datasets are cached here
        trainer = wf.parser.get_parsed_content("train#trainer")
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
        marks.append((clock(), cpu_seconds()))
        progress("one epoch")
        wf.run()
        marks.append((clock(), cpu_seconds()))
        wf.finalize()
    val_wall = float(evaluator.state.times.get("COMPLETED") or 0.0)
    epoch_wall = marks[2][0] - marks[1][0]
    r = {"overrides": overrides, "train_films": len(trainer.data_loader.dataset),
         "iterations": trainer.state.iteration, "validation_films": len(evaluator.data_loader.dataset),
         "cache_wall_s": marks[1][0] - marks[0][0], "cache_cpu_s": marks[1][1] - marks[0][1],
         "epoch_with_validation_wall_s": epoch_wall, "epoch_with_validation_cpu_s": marks[2][1] - marks[1][1],
         "validation_wall_s": val_wall, "training_only_wall_s": epoch_wall - val_wall}
    report.results = r
    t = Table(f"one epoch of train.json on {args.dataset_dir}: {r['train_films']} training films, "
              f"{r['iterations']} iterations, {r['validation_films']} validation films",
              ["step", "wall s", "CPU s"])
    t.add("caching (initialize)", num(r["cache_wall_s"], 1), num(r["cache_cpu_s"], 1))
    t.add("training", num(r["training_only_wall_s"], 1), "-")
    t.add("validation", num(r["validation_wall_s"], 1), "-")
    t.add("epoch with validation", num(epoch_wall, 1), num(r["epoch_with_validation_cpu_s"], 1))
    t.notes.append("CPU: user + system of this process and its worker processes")
    report.tables.append(t)


def pipeline(args, report: Report) -> None:
    import torch
    from monai.bundle import ConfigParser

    from monaifrac.benchmark import pipeline as pl
    from monaifrac.bundle import parse_overrides

    cuda = torch.cuda.is_available()
    if args.iters < 1 or args.warmup < 1 or args.rounds < 1:
        raise ValueError("--iters, --warmup and --rounds must be at least 1 (the first iteration starts the "
                         "loader workers)")
    if args.precision is None:
        args.precision = ["fp32", "amp"] if cuda else ["fp32", "bf16"]
    if "amp" in args.precision and not cuda:
        raise ValueError("--precision amp needs a CUDA GPU (MONAI's amp autocasts on CUDA only)")
    config = ConfigParser()
    config.read_config([str(pl.CONFIGS / "train.json"), *args.config])
    overrides = parse_overrides(args.set)
    config.update(overrides)
    batch_size = config.get_parsed_content("batch_size")
    sample = pl.recipe(config)
    per_iteration = batch_size * sample["samples_per_film"]
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    overrides.setdefault("max_items", args.films if args.films is not None
                         else batch_size * (args.warmup + args.iters + (args.iters if args.profile else 0)))
    num_workers = overrides.get("num_workers", config.get_parsed_content("num_workers"))
    size = "x".join(map(str, sample["sample_size"]))
    what = (f"{batch_size} films x {sample['samples_per_film']} crops = {per_iteration} samples (crops) of {size}"
            if sample["recipe"] == "crops" else f"{batch_size} samples (whole films, padded to {size})")
    batch_line = (f"batch: {what} per iteration; num_workers {num_workers}; {args.warmup} warm-up + {args.iters} "
                  f"timed iterations per run, {args.rounds} round(s)"
                  + (f"; configs: train.json + {' + '.join(args.config)}" if args.config else ""))
    progress(batch_line)

    runs = {p: {"bundle": [], "bare": []} for p in args.precision}
    cache: dict = {}
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="monaifrac_benchmark_train_") as root:
        for rnd in range(args.rounds):
            for precision in args.precision:
                # bundle first in even rounds, bare first in odd ones (the bare step needs a batch: round 0 is even)
                for kind in ("bundle", "bare") if rnd % 2 == 0 else ("bare", "bundle"):
                    if kind == "bundle":
                        run = pl.run_bundle(args, root, dict(overrides), precision, cache,
                                            profile=bool(args.profile) and rnd == 0)
                        if not cache.get("announced"):
                            cache["announced"] = True
                            progress(f"set-up (preflight, caching {run['films']} training films, building) "
                                     f"{cache['cache_s']:.1f} s, not timed")
                        if run["autocast_active"] != (precision == "bf16"):
                            checks.append(f"warning: the bundle's autocast was "
                                          f"{'on' if run['autocast_active'] else 'off'} in {precision}")
                    else:
                        run = pl.run_bare(args, root, dict(overrides), precision, cache["batch"])
                    runs[precision][kind].append(run)
                b, a = runs[precision]["bundle"][-1], runs[precision]["bare"][-1]
                if rnd == 0:
                    checks.append(pl.same_step(precision, b["layout"], a["layout"]))
                rate_b, rate_a = b["samples"] / b["window"][0], a["samples"] / a["window"][0]
                progress(f"round {rnd + 1}/{args.rounds} {precision}: bundle {rate_b:.2f} samples/s, bare "
                         f"{rate_a:.2f} samples/s, efficiency {rate_b / rate_a:.2f}")
    first = runs[args.precision[0]]["bundle"][0]
    results: dict = {"dataset_dir": args.dataset_dir, "iters": args.iters, "warmup": args.warmup,
                     "rounds": args.rounds, "batch_films": batch_size, **sample,
                     "samples_per_iteration": per_iteration, "num_workers": num_workers, "overrides": overrides,
                     "configs": list(args.config), "films": first["films"],
                     "iterations_per_loader_pass": first["iterations_per_loader_pass"]}
    profiles = []
    for p in args.precision:
        bundle, bare = pl.summary(runs[p]["bundle"]), pl.summary(runs[p]["bare"])
        bundle["autocast_active"] = all(r["autocast_active"] for r in runs[p]["bundle"])
        bundle["validation_iterations"] = sum(r["validation_iterations"] for r in runs[p]["bundle"])
        profiles += [r["profile"] for r in runs[p]["bundle"] if r.get("profile")]
        results[p] = {"bundle": bundle, "bare": bare,
                      "efficiency": round(bundle["samples_per_s"] / bare["samples_per_s"], 3),
                      "efficiency_per_round": [round((b["samples"] / b["window"][0]) / (a["samples"] / a["window"][0]),
                                                     3) for b, a in zip(runs[p]["bundle"], runs[p]["bare"])]}
    faster = [p for p in ("bf16", "amp") if p in results and "fp32" in results]
    for p in faster:
        results[f"{p}_speedup"] = {k: round(results[p][k]["samples_per_s"] / results["fp32"][k]["samples_per_s"], 3)
                                   for k in ("bundle", "bare")}
    report.results = results

    t = Table(f"training, the bundle's pipeline against the bare network step ({batch_line})",
              ["precision", "bundle samples/s", "bare samples/s", "bundle/bare", "per round"])
    for p in args.precision:
        r = results[p]
        t.add(p, num(r["bundle"]["samples_per_s"], 2), num(r["bare"]["samples_per_s"], 2), num(r["efficiency"], 2),
              " ".join(f"{e:.2f}" for e in r["efficiency_per_round"]))
        report.goal(f"bundle/bare >= {EFFICIENCY_GOAL} ({p})", f"{r['efficiency']:.2f}",
                    r["efficiency"] >= EFFICIENCY_GOAL)
    t.notes += [f"{p} / fp32 speed-up: bundle {results[f'{p}_speedup']['bundle']:.2f}x, bare "
                f"{results[f'{p}_speedup']['bare']:.2f}x" for p in faster]
    t.notes += checks
    ms = Table("ms per iteration", ["run", *pl.SEGMENTS, "total", "cores busy: main (system) + workers",
                                    "page faults/it"],
               notes=["data: waiting for the DataLoader; prep: prepare_batch + zero_grad; post: decollate, "
                      "post-processing, train metric, handlers; other: the rest of the window"])
    for p in args.precision:
        for kind in ("bundle", "bare"):
            r = results[p][kind]
            m, busy = r["ms_per_iteration"], r["cores_busy"]
            ms.add(f"{p} {kind}", *[num(m[s], 0) for s in pl.SEGMENTS], num(sum(m.values()), 0),
                   f"{busy['main']:.2f} ({busy['main_system']:.2f}) + {busy['loader_workers']:.2f}",
                   str(r["minor_page_faults_per_iteration"]))
    if results["iterations_per_loader_pass"] < args.warmup + args.iters:
        ms.notes.append(f"note: {results['films']} films give {results['iterations_per_loader_pass']} iterations per "
                        f"pass, fewer than the {args.warmup + args.iters} run: the DataLoader restarted (new "
                        "workers) inside the window and 'data' includes that start-up, which a real epoch pays once")
    report.tables += [t, ms]
    report.notes += profiles
