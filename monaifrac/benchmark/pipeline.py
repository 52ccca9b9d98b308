"""The machinery of ``monaifrac benchmark train``: the bundle's real training against the bare network step.

* **bundle**: the objects of ``bundle/configs/train.json``, built by ``monai.bundle.ConfigParser``
  and run as the bundle runs them (``initialize``, then ``train#trainer.run()``): CacheDataset,
  transforms, DataLoader with its workers and sampler, the network (by default
  ``PresenceFlexibleUNet``, in its ``memory_format``), the loss (``PresenceLoss``), AdamW, the Ignite
  ``SupervisedTrainer`` with its inferer (``AutocastInferer``), post-processing, train metric and
  every training handler. Only what is outside the measure is changed: ``bundle_root`` is a temporary
  folder, ``max_epochs`` 1 with ``train#trainer#epoch_length`` = warm-up + timed iterations,
  ``val_interval`` so large that the ``ValidationHandler`` never fires, ``val_max_items`` 1 (the
  evaluator is built, never run), and ``max_items`` (default: enough films for every iteration, so the
  DataLoader is not restarted inside the timed window, as in the middle of a real epoch). ``cpu_bf16``
  is true for bf16 only and MONAI's ``amp`` (CUDA float16 autocast with a gradient scaler) for amp
  only. Caching happens once, before any timing; the later precisions reuse the cached dataset object.
* **bare**: the same ``network`` (same ``memory_format``), ``loss`` and ``optimizer`` of the same
  config (fresh instances, same seed), on one batch of the same shape held in memory as plain
  tensors, drawn once through the training transforms from the cached dataset: zero_grad, forward,
  loss, backward, step. bf16 autocasts exactly what ``AutocastInferer`` autocasts in the bundle: the
  forward only; amp does what MONAI's trainer does with ``amp=True``.

Both time W warm-up iterations (not counted), then N timed ones, on :func:`monaifrac.benchmark.timing.clock`
(which waits for the GPU). An iteration's time is split alike for both: ``data`` (waiting for the
DataLoader), ``prep`` (prepare_batch, zero_grad), ``forward``, ``loss``, ``backward``, ``optim``,
``post`` (decollate, post-processing, train metric, handlers) and ``other`` (the rest of the window);
plus the CPU the main process (of it in the kernel) and the DataLoader workers used in the window, and
the main process's minor page faults per iteration (memory the allocator got afresh).
"""

from __future__ import annotations

import gc
import os
import resource

import torch

from monaifrac.benchmark.processes import proc_stats
from monaifrac.benchmark.timing import clock
from monaifrac.bundle import REPO_BUNDLE

CONFIGS = REPO_BUNDLE / "configs"
SEGMENTS = ("data", "prep", "forward", "loss", "backward", "optim", "post", "other")


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
    return tuple(b - a for a, b in zip(start, usage_now(clock())))


def recipe(config) -> dict:
    """What one sample of the config's training batch is: a crop (an id ``num_samples``: patches.json; or one
    ``film_crop`` of the enlarged film: train.json above 1x) or a whole film padded to ``film_size`` (train.json
    at 1x); how many a film gives, and their size."""
    if "num_samples" in config:
        return {"recipe": "crops", "samples_per_film": int(config.get_parsed_content("num_samples")),
                "sample_size": list(config.get_parsed_content("patch_size"))}
    crop = config.get_parsed_content("film_crop") if "film_crop" in config else None
    if crop:
        return {"recipe": "crops", "samples_per_film": 1, "sample_size": list(crop)}
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
        self.t[name] = clock()

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
        now, it, t = clock(), engine.state.iteration, self.t
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
    start = clock()
    parser.get_parsed_content("initialize")  # preflight, determinism, caching, trainer (as the bundle's workflow)
    trainer = parser.get_parsed_content("train#trainer")
    if "dataset" not in cache:
        cache["cache_s"] = clock() - start
        cache["dataset"] = parser.get_parsed_content("train#dataset")
        cache["batch"] = first_batch(cache["dataset"], parser.get_parsed_content("batch_size"))
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    profiler = Profiler(args.profile) if profile else None
    marks = IterationClock(trainer, network, optimizer, first=args.warmup, last=args.warmup + args.iters,
                           profile_until=args.warmup + args.iters + profile_iters, profiler=profiler)
    inferer = parser.get_parsed_content("train#inferer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    trainer.run()
    parser.get_parsed_content("finalize")  # closes the TensorBoard writer, as the bundle's workflow does
    result = {"sums": marks.sums, "samples": marks.samples, "iters": args.iters, "window": marks.window}
    # the same objects the trainer ran (the parser resolves each id once): its loss, its network
    result["layout"] = layout(sorted(marks.shapes), network, sorted(marks.output_channels),
                              loss_terms(parser.get_parsed_content("loss")))
    result["autocast_active"] = bool(inferer.active(torch.device(parser.get_parsed_content("device"))))
    result["validation_iterations"] = int(evaluator.state.iteration)  # 0: the ValidationHandler never fired
    result["films"] = len(cache["dataset"])
    result["iterations_per_loader_pass"] = len(trainer.data_loader)
    if profiler is not None:
        result["profile"] = profiler.report(f"{args.profile} profile, bundle {precision}, "
                                            f"{profile_iters} iterations after the timed window")
    del trainer, parser, network, optimizer, marks, inferer, evaluator
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

    now = clock

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


