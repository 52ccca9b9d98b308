"""Training pipeline efficiency: the bundle's real training against the bare network step, side by side.

Usage: python scripts/bench_train.py PREPARED_DIR [--iters 10] [--warmup 2] [--precision fp32 bf16 amp]
                                    [--rounds R] [--films F] [--num-workers K] [--threads T]
                                    [--config bundle/configs/gpu_train.json] [--set ID=VALUE ...]
                                    [--profile [cprofile|torch]]

For each precision, in one process, one right after the other:

* **bundle**: the objects of ``bundle/configs/train.json``, built by ``monai.bundle.ConfigParser``
  and run as the bundle runs them (``initialize``, then ``train#trainer.run()``): CacheDataset,
  transforms, DataLoader with its workers and sampler, the network (by default
  ``PresenceFlexibleUNet``, in its ``memory_format``), the loss (``PresenceLoss``), AdamW, the Ignite
  ``SupervisedTrainer`` with its inferer (``AutocastInferer``), post-processing, train metric and
  every training handler (TensorBoard, progress bar, ...). Only what is outside the measure is
  changed: ``bundle_root`` is a temporary folder, ``max_epochs`` 1 with
  ``train#trainer#epoch_length`` = warm-up + timed iterations, ``val_interval`` so large that the
  ``ValidationHandler`` never fires, ``val_max_items`` 1 (the evaluator is built, never run), and
  ``max_items`` = ``--films`` (default: enough films for every iteration, so the DataLoader is not
  restarted inside the timed window, as in the middle of a real epoch). ``cpu_bf16`` is true for
  bf16 only and MONAI's ``amp`` (CUDA float16 autocast with a gradient scaler) for amp only.
  ``--config`` adds override files after train.json, as ``monai.bundle run`` would (the GPU
  recipe: ``bundle/configs/gpu_train.json``). Caching happens once, before any timing; the later
  precisions reuse the cached dataset object (new loader, network, optimiser and trainer each time).
* **bare**: the same ``network`` (same ``memory_format``), ``loss`` and ``optimizer`` of the same
  config (fresh instances, same seed), on one batch of the same shape held in memory as plain
  tensors, drawn once through the training transforms from the cached dataset: zero_grad
  (torch's default ``set_to_none``; the trainer zeroes in place), forward, loss, backward, step.
  bf16 autocasts exactly what ``AutocastInferer`` autocasts in the bundle: the forward only; its
  output is cast back to float32 and the loss runs in float32. amp does what MONAI's trainer does
  with ``amp=True``: forward and loss under CUDA float16 autocast, a ``GradScaler`` around
  backward and step. On CUDA every mark first synchronises the device, in both runs alike.

A **sample** is what the network sees as one item of a batch: a whole film padded to ``film_size``
(train.json's recipe: batch_size samples an iteration) or a crop of ``patch_size``
(``--config bundle/configs/patches.json``: batch_size films x num_samples crops). Rates are samples/s;
the figures of different recipes are not comparable with each other. The bare step's batch shape,
input strides, weights' memory format, output channels and loss terms are checked against the
bundle's (a line says whether they agree; the JSON holds both as ``layout``).

Both time W warm-up iterations (not counted), then N timed ones, with the same torch threads.
``--rounds R`` repeats each bundle/bare pair R times, bundle first in odd rounds and bare first in
even ones, and pools the figures (total samples / total time; each round's efficiency is printed
too): on a machine shared with other jobs one pair is only a smoke check.
The bundle's window runs from the end of iteration W to the end of iteration W + N (ITERATION_COMPLETED
after every other handler). Prints samples/s of both, the efficiency bundle / bare (the
project's goal: >= 0.9), the bf16 / fp32 speed-ups, and where an iteration's time goes, split
alike for both: ``data`` (waiting for the DataLoader), ``prep`` (prepare_batch, zero_grad),
``forward``, ``loss``, ``backward``, ``optim`` (optimizer.step), ``post`` (decollate,
post-processing, train metric, handlers) and ``other`` (the rest of the window); plus the CPU the
main process (of it in the kernel) and the DataLoader workers used in the window, in cores busy on
average, and the main process's minor page faults per iteration (memory the allocator got afresh).
``--profile`` runs cProfile (or ``--profile torch``: torch.profiler) over N more bundle iterations
after the timed window, so the figures above are not taken under the profiler, and prints the top
15 entries. The last line is one JSON object with every figure and the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time

import torch

from _machine import cpu_model, proc_stats  # scripts/ is on sys.path when a script runs
from monaifrac.bundle import REPO_BUNDLE, parse_overrides

CONFIGS = REPO_BUNDLE / "configs"
CUDA = torch.cuda.is_available()
SEGMENTS = ("data", "prep", "forward", "loss", "backward", "optim", "post", "other")


def machine() -> dict:
    from monaifrac.inferers import cpu_bf16_supported

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_bf16_native": cpu_bf16_supported(), "load_avg_1min": round(os.getloadavg()[0], 2),
            "gpu": torch.cuda.get_device_name(0) if CUDA else None}


def sync() -> None:
    """Wait for the GPU's queued work, so that a time mark means the work before it is done."""
    if CUDA:
        torch.cuda.synchronize()


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children: live ones (DataLoader workers) from /proc, plus reaped ones."""
    ticks, me, live = os.sysconf("SC_CLK_TCK"), str(os.getpid()), 0.0
    for _, fields in proc_stats():
        if fields[1] == me:  # ppid
            live += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return live + kids.ru_utime + kids.ru_stime


def usage_now(t: float) -> tuple:
    """(wall, main user CPU, main system CPU, main minor page faults, children CPU) at wall time ``t``."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return t, me.ru_utime, me.ru_stime, me.ru_minflt, children_cpu_seconds()


def usage_since(start: tuple) -> tuple:
    return tuple(b - a for a, b in zip(start, usage_now(time.perf_counter())))


def recipe(config) -> dict:
    """What one sample of the config's training batch is: a crop (an id ``num_samples``: patches.json) or a
    whole film padded to ``film_size`` (train.json); how many a film gives, and their size."""
    if "num_samples" in config:
        return {"recipe": "crops", "samples_per_film": int(config.get_parsed_content("num_samples")),
                "sample_size": list(config.get_parsed_content("patch_size"))}
    return {"recipe": "whole films", "samples_per_film": 1, "sample_size": list(config.get_parsed_content("film_size"))}


def weights_format(network) -> str:
    """Memory format of the network's weights, read on its first k x k convolution (k > 1) over more than one
    channel (for a 1 x 1 or a one-channel kernel both formats are the same strides)."""
    for m in network.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[2] * m.weight.shape[3] > 1:
            return "channels_last" if m.weight.is_contiguous(memory_format=torch.channels_last) else "contiguous"
    return "n/a"


def loss_terms(loss_fn) -> list[str] | None:
    """The terms the last loss call summed (``PresenceLoss.last_terms``: seg, and presence on a 4-channel output)."""
    terms = getattr(loss_fn, "last_terms", None)
    return sorted(terms) if isinstance(terms, dict) else None


def make_parser(dataset_dir: str, root: str, overrides: dict, precision: str, epoch_length: int,
                configs: list[str] = ()):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), *configs])
    parser.update({"dataset_dir": dataset_dir, "bundle_root": root, "val_max_items": 1, **overrides,
                   # what the measure needs, after the user's --set: one epoch of exactly the iterations
                   # timed, no validation, the precision asked for
                   "max_epochs": 1, "val_interval": 10 ** 9, "cpu_bf16": precision == "bf16",
                   "amp": precision == "amp", "train#trainer#epoch_length": epoch_length})
    return parser


class IterationClock:
    """Per-iteration marks on the trainer's events and torch hooks, summed over iterations (first, last]."""

    def __init__(self, trainer, network, optimizer, first: int, last: int, profile_until: int, profiler):
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        self.first, self.last, self.profile_until, self.profiler = first, last, profile_until, profiler
        self.sums = dict.fromkeys(SEGMENTS, 0.0)
        self.samples = 0
        self.shapes: set[tuple] = set()  # (shape, stride) of the network's input, over the timed iterations
        self.output_channels: set[int] = set()
        self.t: dict[str, float] = {}
        self.window = None
        mark = self._marker
        trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("get"))
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._got_batch)
        network.register_forward_pre_hook(self._forward_start)
        network.register_forward_hook(self._forward_end)
        trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, mark("forward"))
        trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, mark("loss"))
        trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, mark("backward"))
        optimizer.register_step_post_hook(lambda *_: self._mark("optim"))
        # attached last, so it runs after every ITERATION_COMPLETED handler of the config
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._completed)

    def _mark(self, name):
        sync()
        self.t[name] = time.perf_counter()

    def _marker(self, name):
        return lambda engine: self._mark(name)

    def _forward_start(self, module, inputs):
        self._mark("forward_start")
        self.input = (tuple(inputs[0].shape), tuple(inputs[0].stride()))

    def _forward_end(self, module, inputs, output):
        self.output = int(output.shape[1])

    def _got_batch(self, engine):
        self._mark("got")
        self.batch_samples = int(engine.state.batch["image"].shape[0])

    def _completed(self, engine):
        sync()
        now, it, t = time.perf_counter(), engine.state.iteration, self.t
        if self.first < it <= self.last:
            # optimizer.step marks "optim"; without it (a skipped step) the optimiser took no time
            t_optim = t.get("optim", t["backward"])
            for name, start, end in (("data", "get", "got"), ("prep", "got", "forward_start"),
                                     ("forward", "forward_start", "forward"), ("loss", "forward", "loss"),
                                     ("backward", "loss", "backward")):
                self.sums[name] += t[end] - t[start]
            self.sums["optim"] += t_optim - t["backward"]
            self.sums["post"] += now - t_optim
            self.samples += self.batch_samples
            self.shapes.add(self.input)
            self.output_channels.add(self.output)
        if it == self.first:
            self.window = usage_now(now)
        elif it == self.last:
            self.window = usage_since(self.window)
            self.sums["other"] = self.window[0] - sum(self.sums.values())
            if self.profiler is not None:
                self.profiler.start()
        if it >= self.profile_until:
            if self.profiler is not None:
                self.profiler.stop()
            engine.terminate()
        self.t = {}


class Profiler:
    def __init__(self, kind: str):
        self.kind = kind
        self.prof = None

    def start(self):
        if self.kind == "torch":
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.__enter__()
        else:
            import cProfile

            self.prof = cProfile.Profile()
            self.prof.enable()

    def stop(self):
        if self.prof is None:
            return
        if self.kind == "torch":
            self.prof.__exit__(None, None, None)
        else:
            self.prof.disable()

    def report(self, title: str) -> str:
        if self.prof is None:
            return ""
        if self.kind == "torch":
            table = self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        else:
            import io
            import pstats

            out = io.StringIO()
            pstats.Stats(self.prof, stream=out).sort_stats("tottime").print_stats(15)
            table = out.getvalue().strip()
        return f"--- {title} ---\n{table}"


def run_bundle(args, root: str, overrides: dict, precision: str, cache: dict, profile: bool) -> dict:
    """Time the bundle's trainer; fills ``cache`` (dataset, cache seconds, a batch for the bare step) on first use."""
    profile_iters = args.iters if profile else 0
    parser = make_parser(args.dataset_dir, root, overrides, precision, args.warmup + args.iters + profile_iters,
                         args.config)
    if "dataset" in cache:
        parser.parse()  # then hand the resolver the dataset cached by the first precision
        parser.ref_resolver.resolved_content["train#dataset"] = cache["dataset"]
    start = time.perf_counter()
    parser.get_parsed_content("initialize")  # preflight, determinism, caching, trainer (as the bundle's workflow)
    trainer = parser.get_parsed_content("train#trainer")
    if "dataset" not in cache:
        cache["cache_s"] = time.perf_counter() - start
        cache["dataset"] = parser.get_parsed_content("train#dataset")
        cache["batch"] = first_batch(cache["dataset"], parser.get_parsed_content("batch_size"))
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    profiler = Profiler(args.profile) if profile else None
    clock = IterationClock(trainer, network, optimizer, first=args.warmup, last=args.warmup + args.iters,
                           profile_until=args.warmup + args.iters + profile_iters, profiler=profiler)
    inferer = parser.get_parsed_content("train#inferer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    trainer.run()
    parser.get_parsed_content("finalize")  # closes the TensorBoard writer, as the bundle's workflow does
    result = {"sums": clock.sums, "samples": clock.samples, "iters": args.iters, "window": clock.window}
    # the same objects the trainer ran (the parser resolves each id once): its loss, its network
    result["layout"] = layout(sorted(clock.shapes), network, sorted(clock.output_channels),
                              loss_terms(parser.get_parsed_content("loss")))
    result["autocast_active"] = bool(inferer.active(torch.device(parser.get_parsed_content("device"))))
    result["validation_iterations"] = int(evaluator.state.iteration)  # 0: the ValidationHandler never fired
    result["films"] = len(cache["dataset"])
    result["iterations_per_loader_pass"] = len(trainer.data_loader)
    if profiler is not None:
        result["profile"] = profiler.report(f"{args.profile} profile, bundle {precision}, "
                                            f"{profile_iters} iterations after the timed window")
    del trainer, parser, network, optimizer, clock, inferer, evaluator
    gc.collect()  # the DataLoader iterator goes, and its workers with it, before the bare step runs
    return result


def layout(shapes: list[tuple], network, output_channels: list[int], terms: list[str] | None) -> dict:
    """What the bare step must share with the bundle's: the network input's shapes and strides, the weights'
    memory format, the output channels and the loss terms."""
    return {"batch_shapes": [list(shape) for shape, _ in shapes], "input_strides": [list(st) for _, st in shapes],
            "weights": weights_format(network), "output_channels": output_channels, "loss_terms": terms}


def first_batch(dataset, films: int):
    """``films`` films through the training transforms (a whole film each, or its random crops), collated as the
    loader does; plain tensors."""
    from monai.data import list_data_collate
    from monai.utils import convert_to_tensor

    batch = list_data_collate([dataset[i % len(dataset)] for i in range(films)])
    return tuple(convert_to_tensor(batch[key], track_meta=False).clone() for key in ("image", "label"))


def run_bare(args, root: str, overrides: dict, precision: str, batch) -> dict:
    from monai.utils import set_determinism

    parser = make_parser(args.dataset_dir, root, overrides, precision, 1, args.config)
    set_determinism(seed=parser.get_parsed_content("seed"))  # as train.json's initialize, before the network
    network = parser.get_parsed_content("network")
    loss_fn, optimizer = parser.get_parsed_content("loss"), parser.get_parsed_content("optimizer")
    device = parser.get_parsed_content("device")
    x, y = batch[0].to(device), batch[1].to(device)
    network.train()
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    sums = dict.fromkeys(SEGMENTS, 0.0)
    window = None

    def now() -> float:
        sync()
        return time.perf_counter()

    for it in range(1, args.warmup + args.iters + 1):
        t0 = now()
        optimizer.zero_grad()
        t1 = now()
        if precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                pred = network(x)
            pred = pred.float()
            t2 = now()
            loss = loss_fn(pred, y).mean()
        elif precision == "amp":  # MONAI's trainer with amp=True: forward and loss autocast, scaled backward
            with torch.autocast("cuda"):
                pred = network(x)
                t2 = now()
                loss = loss_fn(pred, y).mean()
        else:
            pred = network(x)
            t2 = now()
            loss = loss_fn(pred, y).mean()
        t3 = now()
        (scaler.scale(loss) if scaler else loss).backward()
        t4 = now()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        t5 = now()
        if it > args.warmup:
            for name, d in zip(("prep", "forward", "loss", "backward", "optim"), (t1 - t0, t2 - t1, t3 - t2,
                                                                                 t4 - t3, t5 - t4)):
                sums[name] += d
        if it == args.warmup:
            window = usage_now(t5)
    window = usage_since(window)
    sums["other"] = window[0] - sum(sums.values())
    return {"sums": sums, "samples": args.iters * x.shape[0], "iters": args.iters, "window": window,
            "layout": layout([(tuple(x.shape), tuple(x.stride()))], network, [int(pred.shape[1])], loss_terms(loss_fn))}


def summary(runs: list[dict]) -> dict:
    """Figures of one or more timed runs (rounds) of one kind, pooled: total samples over total wall time."""
    sums = {k: sum(r["sums"][k] for r in runs) for k in SEGMENTS}
    samples, iters = sum(r["samples"] for r in runs), sum(r["iters"] for r in runs)
    wall, user, system, faults, kids_cpu = (sum(r["window"][i] for r in runs) for i in range(5))
    pooled = dict(runs[0]["layout"])
    for key in ("batch_shapes", "input_strides", "output_channels"):  # over every round
        pooled[key] = sorted({tuple(v) if isinstance(v, list) else v for r in runs for v in r["layout"][key]})
        pooled[key] = [list(v) if isinstance(v, tuple) else v for v in pooled[key]]
    return {"samples": samples, "wall_s": round(wall, 3), "samples_per_s": round(samples / wall, 3),
            "ms_per_iteration": {k: round(1000 * v / iters, 1) for k, v in sums.items()},
            "cores_busy": {"main": round((user + system) / wall, 2), "main_system": round(system / wall, 2),
                           "loader_workers": round(kids_cpu / wall, 2)},
            "minor_page_faults_per_iteration": round(faults / iters), "layout": pooled}


def same_step(precision: str, bundle: dict, bare: dict) -> str:
    """One line: whether the bare step ran what the bundle's trainer ran (shape, layout, output, loss terms)."""
    shapes = " ".join("x".join(map(str, s)) for s in bundle["batch_shapes"])
    terms = "+".join(bundle["loss_terms"]) if bundle["loss_terms"] else "n/a"
    if bundle == bare:
        return (f"{precision}: the bare step runs the bundle's batch {shapes} (same strides), {bundle['weights']} "
                f"weights, {'/'.join(map(str, bundle['output_channels']))} output channels, loss terms {terms}")
    diff = ", ".join(f"{k} {bundle[k]} vs {bare[k]}" for k in bundle if bundle[k] != bare.get(k))
    return f"warning: {precision}: the bare step differs from the bundle's (bundle vs bare): {diff}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up iterations before them (default 2)")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16", "amp"), default=None,
                        help="default: fp32 bf16 on a CPU, fp32 amp on CUDA (amp: CUDA only)")
    parser.add_argument("--config", nargs="+", default=[], metavar="JSON",
                        help="override files read after train.json (bundle/configs/gpu_train.json: the GPU recipe)")
    parser.add_argument("--films", type=int, default=None,
                        help="training films cached (max_items; default batch_size x (warmup + iters))")
    parser.add_argument("--num-workers", type=int, default=None, help="num_workers (default: train.json's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE", help="more train.json overrides")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat each bundle/bare pair R times, alternating which goes first; figures pooled")
    parser.add_argument("--profile", nargs="?", const="cprofile", choices=("cprofile", "torch"), default=None,
                        help="profile N more bundle iterations after the timed window; print the top 15")
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 1 or args.rounds < 1:
        parser.error("--iters, --warmup and --rounds must be at least 1 "
                     "(the first iteration starts the loader workers)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision is None:
        args.precision = ["fp32", "amp"] if CUDA else ["fp32", "bf16"]
    if "amp" in args.precision and not CUDA:
        parser.error("--precision amp needs a CUDA GPU (MONAI's amp autocasts on CUDA only)")

    from monai.bundle import ConfigParser

    config = ConfigParser()
    config.read_config([str(CONFIGS / "train.json"), *args.config])
    overrides = parse_overrides(args.set)
    config.update(overrides)
    batch_size = config.get_parsed_content("batch_size")
    sample = recipe(config)
    per_iteration = batch_size * sample["samples_per_film"]
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    overrides.setdefault("max_items", args.films if args.films is not None
                         else batch_size * (args.warmup + args.iters + (args.iters if args.profile else 0)))
    num_workers = overrides.get("num_workers", config.get_parsed_content("num_workers"))
    mach = machine()
    print(f"machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs ({mach['usable_cpus']} usable), torch "
          f"{mach['torch']}, {mach['torch_threads']} threads, native bf16 "
          f"{'yes' if mach['cpu_bf16_native'] else 'no'}, "
          f"load average {mach['load_avg_1min']} at start" + (f", GPU {mach['gpu']}" if mach["gpu"] else ""))
    if args.config:
        print(f"configs: train.json + {' + '.join(args.config)}")
    size = "x".join(map(str, sample["sample_size"]))
    if sample["recipe"] == "crops":
        what = (f"{batch_size} films x {sample['samples_per_film']} crops = {per_iteration} samples (crops) of "
                f"{size}")
    else:
        what = f"{batch_size} samples (whole films, padded to {size})"
    print(f"batch: {what} per iteration; num_workers {num_workers}; {args.warmup} warm-up + "
          f"{args.iters} timed iterations per run, {args.rounds} round(s)")

    runs = {p: {"bundle": [], "bare": []} for p in args.precision}
    cache: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as root:
        for rnd in range(args.rounds):
            for precision in args.precision:
                # bundle first in even rounds, bare first in odd ones (the bare step needs a batch: round 0 is even)
                for kind in ("bundle", "bare") if rnd % 2 == 0 else ("bare", "bundle"):
                    if kind == "bundle":
                        run = run_bundle(args, root, dict(overrides), precision, cache,
                                         profile=bool(args.profile) and rnd == 0)
                        if not cache.get("announced"):
                            cache["announced"] = True
                            print(f"set-up (preflight, caching {run['films']} training films, building) "
                                  f"{cache['cache_s']:.1f} s, not timed; {run['iterations_per_loader_pass']} "
                                  f"iterations per pass over them")
                        if run["autocast_active"] != (precision == "bf16"):
                            print(f"warning: the bundle's autocast was {'on' if run['autocast_active'] else 'off'}")
                    else:
                        run = run_bare(args, root, dict(overrides), precision, cache["batch"])
                    runs[precision][kind].append(run)
                b, a = runs[precision]["bundle"][-1], runs[precision]["bare"][-1]
                if rnd == 0:
                    print(same_step(precision, b["layout"], a["layout"]))
                rate_b, rate_a = b["samples"] / b["window"][0], a["samples"] / a["window"][0]
                print(f"round {rnd + 1}/{args.rounds} {precision}: bundle {rate_b:.2f} samples/s, bare {rate_a:.2f} "
                      f"samples/s, efficiency {rate_b / rate_a:.2f}", flush=True)
    first = runs[args.precision[0]]["bundle"][0]
    results: dict = {"films": first["films"], "iterations_per_loader_pass": first["iterations_per_loader_pass"]}
    for p in args.precision:
        bundle, bare = summary(runs[p]["bundle"]), summary(runs[p]["bare"])
        bundle["autocast_active"] = all(r["autocast_active"] for r in runs[p]["bundle"])
        bundle["validation_iterations"] = sum(r["validation_iterations"] for r in runs[p]["bundle"])
        profile = next((r["profile"] for r in runs[p]["bundle"] if r.get("profile")), None)
        if profile:
            bundle["profile"] = profile
        results[p] = {"bundle": bundle, "bare": bare,
                      "efficiency": round(bundle["samples_per_s"] / bare["samples_per_s"], 3),
                      "efficiency_per_round": [round((b["samples"] / b["window"][0]) / (a["samples"] / a["window"][0]),
                                                     3) for b, a in zip(runs[p]["bundle"], runs[p]["bare"])]}
    faster = [p for p in ("bf16", "amp") if p in results and "fp32" in results]
    for p in faster:
        results[f"{p}_speedup"] = {k: round(results[p][k]["samples_per_s"]
                                            / results["fp32"][k]["samples_per_s"], 3) for k in ("bundle", "bare")}
    print()
    print(f"{'precision':<10}{'bundle samples/s':>17}{'bare samples/s':>15}{'bundle/bare':>12}   "
          f"(goal: bundle/bare >= 0.9)" + ("   per round" if args.rounds > 1 else ""))
    for p in args.precision:
        r = results[p]
        print(f"{p:<10}{r['bundle']['samples_per_s']:>17.2f}{r['bare']['samples_per_s']:>15.2f}"
              f"{r['efficiency']:>12.2f}" + ("   " + " ".join(f"{e:.2f}" for e in r["efficiency_per_round"])
                                             if args.rounds > 1 else ""))
    for p in faster:
        s = results[f"{p}_speedup"]
        print(f"{p} / fp32 speed-up: bundle {s['bundle']:.2f}x, bare {s['bare']:.2f}x")
    print()
    print("ms per iteration" + " " * 8 + "".join(f"{s:>9}" for s in (*SEGMENTS, "total"))
          + "   cores busy: main (of it system) + workers; page faults/it")
    for p in args.precision:
        for kind in ("bundle", "bare"):
            r = results[p][kind]
            ms, busy = r["ms_per_iteration"], r["cores_busy"]
            print(f"{p + ' ' + kind:<24}" + "".join(f"{ms[s]:>9.0f}" for s in SEGMENTS)
                  + f"{sum(ms.values()):>9.0f}   {busy['main']:.2f} ({busy['main_system']:.2f}) + "
                  f"{busy['loader_workers']:.2f}; {r['minor_page_faults_per_iteration']}")
    print("data: waiting for the DataLoader; prep: prepare_batch + zero_grad; post: decollate, post-processing, "
          "train metric, handlers; other: the rest of the window")
    if results["iterations_per_loader_pass"] < args.warmup + args.iters:
        print(f"note: {results['films']} films give {results['iterations_per_loader_pass']} iterations per pass, fewer "
              f"than the {args.warmup + args.iters} run: the DataLoader restarted (new workers) inside the window and "
              f"'data' includes that start-up, which a real epoch pays once")
    for p in args.precision:
        if results[p]["bundle"].get("profile"):
            print()
            print(results[p]["bundle"].pop("profile"))
    print()
    print(json.dumps({"dataset_dir": args.dataset_dir, "machine": mach, "iters": args.iters, "warmup": args.warmup,
                      "rounds": args.rounds,
                      "batch_films": batch_size, **sample, "samples_per_iteration": per_iteration,
                      "num_workers": num_workers, "overrides": overrides, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
