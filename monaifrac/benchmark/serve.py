"""``monaifrac benchmark serve``: MONAI Label serving the bundle, measured under load: latency, throughput, and a
soak with bad requests.

Starts ``scripts/monailabel-serve`` on a free loopback port with the model (default the shipped
``bundle/models/model.pt``), a studies folder of one film, an app folder and a ``TMPDIR`` of its own,
all in a temporary folder; waits for ``GET /info/``; warms it up (the first request exports the ONNX
file: timed apart, not in the figures). Then, with the films held in memory and uploaded as a client
does (``POST /infer/fracture_xray_segmentation?output=image`` with the film as a multipart file):

* latency: for each level of ``--clients`` (threads, default 1, 4 and 8), ``--per-level`` uploads of
  films of 373 x 454 (W x H, the size of most FracAtlas films) shared out between the clients:
  round-trip p50/p95 and films/s (requests / wall time of the level); then a 2304 x 2880 scan,
  ``--big-requests`` times, one client. Beside them, the model-only time of the same films
  (:func:`model_alone`: ``inference.json``'s inferer on the films in memory, in this process,
  while the server is idle; one pass before each level, their median beside every level, since a
  shared machine's speed drifts) and the server's own time per request (MONAI Label's ``++ Latencies``
  log lines: pre-transforms, inferer, post, writer). Every answer must be 200 with the label
  ``inference.json`` writes for the film (computed in this process beforehand). Goals: p50 with one
  client <= 1.5 x model-only + 30 ms; no error at the highest level; films/s at the highest level >=
  films/s with one client.
* soak: ``--requests`` requests from ``--soak-clients`` clients, every 10th a bad one (in turn: a text
  file, a truncated film and an empty file uploaded, ids ``../x``, ``/etc/hosts`` and an unknown one).
  Every good one must be 200 with the right label, every bad one 4xx (the code the app documents is
  checked too); the resident memory of the server's process group (sum of VmRSS, /proc) is read at
  request 100, every 100 requests and at the end: growth from request 100 to the end, goal <= 50 MB.
  Files left in the server's TMPDIR that were not there before the soak: goal none.

Prints a table, the goals met or not with their numbers, and what bounds each goal not met (the round
trip split into MONAI Label's stages, the app's check of the upload and the rest: HTTP, multipart
parsing and waiting for the server; ``--profile``: for every level, goals met or not); ``--json OUT``
writes it all. Exit status 0 when the bench ran, goals met or not; 1 when the server did not start or
a request got no HTTP answer at all.

Films: ``--films DIR`` (JPG/PNG, searched recursively), else the shared copy of FracAtlas
(``../shared/data/fracatlas/images``), else (or with ``--synthetic``) synthetic films
(``monaifrac.data.synth``) of 373 x 454 and one of 2304 x 2880, written to the temporary folder.
``--quick``: a handful of requests (the smoke test). ``--keep``: keep the temporary folder (server
log, app folder) and print where it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from monaifrac.benchmark import timing
from monaifrac.benchmark.processes import group_rss_mb
from monaifrac.benchmark.tables import Report, Table, num, progress
from monaifrac.bundle import REPO_BUNDLE

REPO = REPO_BUNDLE.parent
CONFIG = str(REPO_BUNDLE / "configs" / "inference.json")
SHARED_FILMS = REPO.parent / "shared" / "data" / "fracatlas" / "images"
SMALL, BIG = (373, 454), (2304, 2880)  # displayed (width, height)
SOAK_RSS_FROM = 100  # the RSS growth is counted from this request on
RSS_GOAL_MB, P50_FACTOR, P50_SLACK_S = 50.0, 1.5, 0.030
LATENCY_LINE = re.compile(r"\+\+ Latencies => Total: ([\d.]+); Pre: ([\d.]+); Inferer: ([\d.]+); "
                          r"Invert: ([\d.]+); Post: ([\d.]+); Write: ([\d.]+)")
STAGES = ("total", "pre", "inferer", "invert", "post", "write")


# ------------------------------------------------------------------------------------------------ films

def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) as a viewer shows the film (EXIF orientation 5-8 swaps them), from the header only."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def pick_films(folder: Path, distinct: int) -> tuple[list[Path], Path | None]:
    """Up to ``distinct`` films of 373 x 454 (else of the most common size under 1,000 px) and one big scan
    (2304 x 2880, else the first of 2,000 px or more; None if there is none), sorted by path."""
    sizes, names = {}, set()
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.stem.endswith("_overlay") and p.stem not in names:
            names.add(p.stem)  # labels are known by the film's name: one film per name
            try:
                sizes[p] = displayed_size(p)
            except OSError:
                continue
    small = [p for p, s in sizes.items() if s == SMALL]
    if not small:
        counts: dict = {}
        for s in sizes.values():
            if max(s) < 1000:
                counts[s] = counts.get(s, 0) + 1
        if counts:
            common = max(counts, key=counts.get)
            small = [p for p, s in sizes.items() if s == common]
    big = [p for p, s in sizes.items() if s == BIG] or [p for p, s in sizes.items() if max(s) >= 2000]
    return small[:distinct], (big[0] if big else None)


def synthetic_films(where: Path, distinct: int, big: bool) -> tuple[list[Path], Path | None]:
    """Synthetic films (``monaifrac.data.synth``): ``distinct`` of 373 x 454 and, if ``big``, one of 2304 x 2880."""
    from monaifrac.data.synth import make_synthetic_fracatlas

    make_synthetic_fracatlas(where / "small", n=distinct + distinct // 3 + 1, size=SMALL)  # every 4th is landscape
    small, _ = pick_films(where / "small", distinct)
    scan = None
    if big:
        make_synthetic_fracatlas(where / "big", n=1, size=BIG)
        _, scan = pick_films(where / "big", 1)
        scan = scan.rename(scan.with_name(f"scan_{scan.name}"))  # its name is one of the small films' names
    return small, scan


def reference_labels(films: list[Path], model: str, out: Path) -> dict[str, np.ndarray]:
    """The label ``inference.json`` writes for each film (same model, in this process), by file name."""
    from PIL import Image

    from monaifrac.benchmark.infer import run_engine

    run_engine([str(f) for f in films], out, {"model_file": model, "save_overlays": False})
    return {f.name: np.asarray(Image.open(out / f"{f.stem}.png")) for f in films}


def films_and_network(files: list[str], model: str):
    """The films preprocessed as inference.json does (in memory), its inferer, and the network in eval mode."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser["model_file"] = model
    preprocessing, inferer, network = (parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "network"))
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    network.eval()
    return [preprocessing({"image": f})["image"][None] for f in files], inferer, network


def model_alone(files: list[str], model: str) -> float:
    """Median seconds a film of inference.json's inferer alone over ``files`` held in memory (one warm-up call)."""
    import torch

    films, inferer, network = films_and_network(files, model)
    with torch.no_grad():
        inferer(films[0], network)  # warm-up
        times = []
        for x in films:
            start = timing.clock()
            inferer(x, network)
            times.append(timing.clock() - start)
    return timing.summary(times)["median"]


def film_size(path: str) -> tuple[int, int]:
    """(width, height) as displayed."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).size


# ------------------------------------------------------------------------------------------------ server

class Server:
    """``scripts/monailabel-serve`` in a process group of its own, with its own TMPDIR and log."""

    def __init__(self, root: Path, model: str, studies_film: Path):
        from monaifrac.serving.client import MonaiLabelClient, free_port

        self.root = root
        self.studies, self.tmp, self.log_path = root / "studies", root / "tmp", root / "server.log"
        self.studies.mkdir()
        self.tmp.mkdir()
        shutil.copy(studies_film, self.studies / f"film_a{studies_film.suffix.lower()}")
        self.port = free_port()
        self.log = self.log_path.open("w")
        env = dict(os.environ, TMPDIR=str(self.tmp), PYTHONUNBUFFERED="1")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(REPO / "scripts" / "monailabel-serve"), str(self.studies), "--port", str(self.port),
             "--app-dir", str(root / "app"), "--model", model],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.client = MonaiLabelClient(f"http://127.0.0.1:{self.port}")

    def wait_ready(self, timeout: float) -> float:
        """Seconds from the start to the first 200 of /info/ (the environment is built first if need be)."""
        self.client.wait_ready(self.proc, timeout=timeout, log=self.log_path)
        return time.monotonic() - self.started

    def rss_mb(self) -> tuple[float, int]:
        return group_rss_mb(self.proc.pid)

    def temp_files(self) -> set[str]:
        return {str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*") if not p.is_dir()}

    def log_offset(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size

    def latencies_since(self, offset: int) -> list[dict]:
        """The ``++ Latencies`` lines MONAI Label logged since ``offset``: one dict (seconds per stage) per request."""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return [dict(zip(STAGES, map(float, m.groups()))) for m in LATENCY_LINE.finditer(text)]

    def stop(self) -> None:
        from monaifrac.serving.client import stop_server

        if self.proc.poll() is None:
            stop_server(self.proc)
        self.log.close()


def server_versions() -> dict:
    """Versions of the MONAI Label environment's packages that time inference (its interpreter, asked)."""
    env = subprocess.run(["bash", str(REPO / "scripts" / "monailabel-env.sh")], capture_output=True, text=True,
                         timeout=120)
    code = ("import json, importlib.metadata as m\n"
            "print(json.dumps({p: m.version(p) for p in ('monailabel', 'monai', 'torch', 'onnxruntime')}))")
    try:
        out = subprocess.run([os.path.join(env.stdout.strip(), "bin", "python"), "-c", code], capture_output=True,
                             text=True, timeout=120)
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


# ------------------------------------------------------------------------------------------------ load

class Tally:
    """Requests and their outcomes, filled in by client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows: list[dict] = []
        self.no_answer: list[str] = []

    def add(self, row: dict) -> int:
        with self.lock:
            self.rows.append(row)
            return len(self.rows)


def fire(client, n: int, clients: int, make, tally: Tally, on_done=None) -> float:
    """Send requests ``make(0..n-1)`` (each: (kind, query, files, expected)) from ``clients`` threads, as fast
    as answers come; return the wall time in seconds. ``on_done(count)`` after each answer."""
    counter = iter(range(n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            kind, query, files, expected = make(i)
            start = timing.clock()
            try:
                status, ctype, body = client.infer(query, files=files, timeout=600)
            except OSError as err:
                with tally.lock:
                    tally.no_answer.append(f"request {i} ({kind}): {err}")
                continue
            done = tally.add({"i": i, "kind": kind, "s": timing.clock() - start, "status": status,
                              "ctype": ctype, "body": body, "expected": expected})
            if on_done:
                on_done(done)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    start = timing.clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return timing.clock() - start


class Labels:
    """Checks an answer's PNG against the reference label (bytes first: identical PNGs need no decoding)."""

    def __init__(self, reference: dict[str, np.ndarray]):
        self.reference = reference
        self.good_bytes: dict[str, set[bytes]] = {name: set() for name in reference}

    def correct(self, name: str, body: bytes) -> bool:
        import io

        from PIL import Image

        if body in self.good_bytes[name]:
            return True
        try:
            got = np.asarray(Image.open(io.BytesIO(body)))
        except OSError:
            return False
        ok = got.shape == self.reference[name].shape and np.array_equal(got, self.reference[name])
        if ok:
            self.good_bytes[name].add(body)
        return ok


def summarize(rows: list[dict], wall: float, labels: Labels) -> dict:
    ok = [r for r in rows if r["status"] == 200]
    wrong = sum(not labels.correct(r["kind"], r["body"]) for r in ok)
    times = [r["s"] for r in rows]
    return {"requests": len(rows), "errors": len(rows) - len(ok), "wrong_labels": wrong,
            "p50_s": timing.quantile(times, 0.5), "p95_s": timing.quantile(times, 0.95),
            "mean_s": statistics.fmean(times),
            "wall_s": wall, "films_per_s": len(rows) / wall,
            "statuses": sorted({r["status"] for r in rows})}


def server_side(lines: list[dict]) -> dict:
    """Medians (s) of MONAI Label's own per-stage times over the requests of one level."""
    if not lines:
        return {}
    return {f"{stage}_p50_s": statistics.median(x[stage] for x in lines) for stage in STAGES} | {"lines": len(lines)}


def upload(name: str, content: bytes) -> dict:
    return {"file": (name, content)}


def bad_requests(small: bytes) -> list[tuple[str, str, dict | None, int]]:
    """(kind, query, files, expected status) of the bad requests the soak mixes in, in turn."""
    return [
        ("text upload", "output=image", upload("text.png", b"this is not a film\n"), 422),
        ("truncated upload", "output=image", upload("truncated.jpg", small[: len(small) // 2]), 422),
        ("empty upload", "output=image", upload("empty.png", b""), 422),
        ("id ../x", "image=../x&output=image", None, 422),
        ("id /etc/hosts", "image=/etc/hosts&output=image", None, 422),
        ("unknown id", "image=no_such_film&output=image", None, 404),
    ]


def transform_profile(film: Path, model: str, repeat: int = 5) -> list[dict]:
    """What the server's stages are made of, in this process: the median time (s) of each transform of
    ``inference.json``'s preprocessing, of its inferer and of each transform of its postprocessing (the file
    writers left out, as the app does) on ``film``, each step fed the previous one's output, ``repeat``
    times after one warm-up. MONAI Label adds its own steps (its ``Restored`` after the postprocessing,
    the writer): the server's stage times minus these are those steps and its bookkeeping."""
    import torch
    from monai.bundle import ConfigParser

    _films, inferer, network = films_and_network([str(film)], model)
    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser["model_file"] = model
    pre = list(parser.get_parsed_content("preprocessing").transforms)
    post = [t for t in parser.get_parsed_content("postprocessing").transforms
            if type(t).__name__ not in ("SaveImaged", "SaveOverlayd", "SaveDicomSegd")]

    def infer(d):
        with torch.no_grad():
            return dict(d, pred=inferer(d["image"][None], network)[0])

    steps = [("pre", type(t).__name__, t) for t in pre] + [("inferer", type(inferer).__name__, infer)] + \
        [("post", type(t).__name__, t) for t in post]
    times: list[list[float]] = [[] for _ in steps]
    for rnd in range(repeat + 1):
        data = {"image": str(film)}
        for k, (_stage, _name, step) in enumerate(steps):
            start = timing.clock()
            data = step(dict(data))
            if rnd:  # the first round warms up
                times[k].append(timing.clock() - start)
    return [{"stage": stage, "step": name, "s": timing.summary(t)["median"]}
            for (stage, name, _), t in zip(steps, times)]


def check_time(film: Path, repeat: int = 5) -> float:
    """Median seconds of the app's check of an upload (``check_film``: the film read once more) in this process."""
    from monaifrac.serving.requests import check_film

    times = []
    for _ in range(repeat):
        start = timing.clock()
        check_film(film)
        times.append(timing.clock() - start)
    return timing.summary(times)["median"]


# ------------------------------------------------------------------------------------------------ main

def add_arguments(parser) -> None:
    parser.add_argument("--films", type=Path, help=f"folder of films (default: {SHARED_FILMS} if present, "
                                                   "else synthetic films)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic films even where the shared copy is")
    parser.add_argument("--model", default=str(REPO / "bundle" / "models" / "model.pt"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrency levels (threads)")
    parser.add_argument("--per-level", type=int, default=40, help="uploads of 373x454 films per level (default 40)")
    parser.add_argument("--big-requests", type=int, default=5, help="uploads of the 2304x2880 scan (default 5; 0: "
                                                                    "none)")
    parser.add_argument("--requests", type=int, default=1000, help="soak requests, 10%% bad (default 1000; 0: no soak)")
    parser.add_argument("--soak-clients", type=int, default=4, help="concurrent clients of the soak (default 4)")
    parser.add_argument("--distinct", type=int, default=16, help="distinct 373x454 films uploaded in turn (default 16)")
    parser.add_argument("--quick", action="store_true", help="a handful of requests: --per-level 8 --big-requests 1 "
                                                             "--requests 60 --distinct 4 (the smoke test)")
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds to wait for the server (building "
                                                                          "the MONAI Label environment included)")
    parser.add_argument("--profile", action="store_true", help="what bounds the round trip, for every level, and "
                                                               "inference.json's steps timed in this process")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, app folder)")


def main(args, report: Report) -> int:
    if args.quick:
        args.per_level, args.big_requests, args.requests, args.distinct = 8, 1, 60, 4
    from monaifrac.bundle import require_model
    from monaifrac.errors import InputError

    require_model(args.model)
    args.model = str(Path(args.model).resolve())
    if min(args.clients) < 1 or args.per_level < 1 or args.distinct < 1:
        raise ValueError("--clients, --per-level and --distinct must be at least 1")

    root = Path(tempfile.mkdtemp(prefix="monaifrac_benchmark_serve_"))
    server = None
    try:
        if args.films:
            source = str(args.films)
            small, big = pick_films(args.films, args.distinct)
        elif SHARED_FILMS.is_dir() and not args.synthetic:
            source = str(SHARED_FILMS)
            small, big = pick_films(SHARED_FILMS, args.distinct)
        else:
            source, small, big = "synthetic", *synthetic_films(root / "synth", args.distinct, args.big_requests > 0)
        if not small:
            raise InputError(source, "no films")
        if big is None and args.big_requests > 0:  # a folder without a big scan: a synthetic one
            _, big = synthetic_films(root / "synth_big", 1, True)
        if args.big_requests == 0:
            big = None
        small_size = film_size(str(small[0]))
        films = small + ([big] if big else [])
        content = {f.name: f.read_bytes() for f in films}

        server = Server(root, args.model, small[0])
        progress(f"server starting on port {server.port}; meanwhile the labels inference.json writes for "
                 f"{len(films)} films")
        labels = Labels(reference_labels(films, args.model, root / "reference"))
        ready_s = server.wait_ready(args.start_timeout)
        progress(f"server ready after {ready_s:.1f} s; warm-up")
        versions = server_versions()

        def small_request(i):
            f = small[i % len(small)]
            return f.name, "output=image", upload(f.name, content[f.name]), 200

        def big_request(_i):
            return big.name, "output=image", upload(big.name, content[big.name]), 200

        # warm-up (not in the figures): the first request exports the ONNX file
        warm = Tally()
        first_s = fire(server.client, 1, 1, small_request, warm)
        fire(server.client, min(len(small), 3), 1, small_request, warm)
        if big:
            fire(server.client, 1, 1, big_request, warm)
        if warm.no_answer or any(r["status"] != 200 for r in warm.rows):
            bad = warm.no_answer or [f"HTTP {r['status']}: {r['body'][:300]!r}"
                                     for r in warm.rows if r["status"] != 200]
            raise RuntimeError("warm-up failed: " + "; ".join(bad) + f"\n(server log: {server.log_path})")

        # the model alone, in this process, while the server is idle: one pass over the films before each level
        # (a shared machine's speed drifts), the median of the passes beside every level
        check_small = check_time(small[0])
        check_big = check_time(big, 2) if big else None
        levels, no_answer, passes = [], list(warm.no_answer), []
        for c in args.clients:
            passes.append(model_alone([str(f) for f in small], args.model))
            progress(f"{args.per_level} uploads from {c} client(s)")
            tally, offset = Tally(), server.log_offset()
            wall = fire(server.client, args.per_level, c, small_request, tally)
            no_answer += tally.no_answer
            levels.append({"film": f"{small_size[0]}x{small_size[1]}", "clients": c,
                           **summarize(tally.rows, wall, labels), "model_only_pass_s": passes[-1],
                           "check_s": check_small, "server": server_side(server.latencies_since(offset))})
        for lv in levels:
            lv["model_only_s"] = statistics.median(passes)
        if big:
            model_big = model_alone([str(big)] * 3, args.model)
            tally, offset = Tally(), server.log_offset()
            wall = fire(server.client, args.big_requests, 1, big_request, tally)
            no_answer += tally.no_answer
            size = film_size(str(big))
            levels.append({"film": f"{size[0]}x{size[1]}", "clients": 1, **summarize(tally.rows, wall, labels),
                           "model_only_pass_s": model_big, "model_only_s": model_big, "check_s": check_big,
                           "server": server_side(server.latencies_since(offset))})

        if args.requests > 0:
            progress(f"soak: {args.requests} requests from {args.soak_clients} clients")
        soak = run_soak(server, args, small, content, labels) if args.requests > 0 else None
        if soak:
            no_answer += soak.pop("no_answer_list")
        # what the server's stages are made of (in this process, the server idle): with --profile, or where the
        # one-client goal is not met
        one = next((lv for lv in levels if lv["clients"] == 1 and lv["film"] == levels[0]["film"]), None)
        profiles = {}
        if args.profile or (one and one["p50_s"] > P50_FACTOR * one["model_only_s"] + P50_SLACK_S):
            profiles = {lv["film"]: transform_profile(film, args.model)
                        for lv, film in zip((levels[0], levels[-1]), (small[0], big)) if film is not None}
        fill(report, args, source, small, big, ready_s, first_s, versions, levels, soak, no_answer, profiles)
        return 1 if no_answer else 0
    finally:
        if server:
            server.stop()
        if args.keep:
            progress(f"kept: {root} (server log: {root / 'server.log'})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_soak(server: Server, args, small: list[Path], content: dict, labels: Labels) -> dict:
    bad = bad_requests(content[small[0].name])

    def make(i):
        if i % 10 == 9:  # 10 % bad, the kinds in turn
            return bad[(i // 10) % len(bad)]
        f = small[i % len(small)]
        return f.name, "output=image", upload(f.name, content[f.name]), 200

    n_bad = sum(1 for i in range(args.requests) if i % 10 == 9)
    before_files = server.temp_files()
    rss: list[tuple[int, float]] = []
    rss_lock = threading.Lock()

    def on_done(count):
        if count == SOAK_RSS_FROM or count % 100 == 0:
            with rss_lock:
                rss.append((count, server.rss_mb()[0]))

    rss.append((0, server.rss_mb()[0]))
    tally, offset = Tally(), server.log_offset()
    wall = fire(server.client, args.requests, args.soak_clients, make, tally, on_done)
    time.sleep(2)  # the endpoint removes its temporary files in background tasks, after the answer
    end_mb, processes = server.rss_mb()
    after_files = server.temp_files()
    good = [r for r in tally.rows if r["expected"] == 200]
    bads = [r for r in tally.rows if r["expected"] != 200]
    if args.requests > SOAK_RSS_FROM:
        at_from = next(mb for count, mb in rss if count >= SOAK_RSS_FROM)
    else:  # a short soak: from its start
        at_from = rss[0][1]
    by_kind: dict = {}
    for r in bads:
        k = by_kind.setdefault(r["kind"], {"expected": r["expected"], "statuses": {}})
        k["statuses"][str(r["status"])] = k["statuses"].get(str(r["status"]), 0) + 1
    lines = server.latencies_since(offset)
    return {
        "requests": args.requests, "clients": args.soak_clients, "wall_s": wall, "answered": len(tally.rows),
        "good": len(good), "good_200": sum(r["status"] == 200 for r in good),
        "good_correct": sum(r["status"] == 200 and labels.correct(r["kind"], r["body"]) for r in good),
        "good_p50_s": timing.quantile([r["s"] for r in good], 0.5),
        "good_p95_s": timing.quantile([r["s"] for r in good], 0.95),
        "bad": n_bad, "bad_4xx": sum(400 <= r["status"] < 500 for r in bads),
        "bad_expected_code": sum(r["status"] == r["expected"] for r in bads), "bad_by_kind": by_kind,
        "rss_mb": rss, "rss_from_request": SOAK_RSS_FROM if args.requests > SOAK_RSS_FROM else 0,
        "rss_at_from_mb": at_from, "rss_end_mb": end_mb, "rss_growth_mb": end_mb - at_from,
        "server_processes": processes, "temp_files_before": len(before_files),
        "temp_files_left": sorted(after_files - before_files), "server_infer_lines": len(lines),
        "no_answer_list": tally.no_answer,
    }


def fill(rep: Report, args, source, small, big, ready_s, first_s, versions, levels, soak, no_answer,
         profiles) -> None:
    """The run's tables, goals and notes into ``rep``; its figures into ``rep.results``."""
    ms = lambda s: f"{s * 1000:.0f}" if s is not None and s == s else "-"  # noqa: E731
    t = Table(f"MONAI Label server ({', '.join(f'{k} {v}' for k, v in versions.items()) or 'versions unknown'}); "
              f"films: {len(small)} distinct of {levels[0]['film']} from {source}"
              + (f", big scan {big.name}" if big else ""),
              ["film", "clients", "requests", "errors", "wrong", "p50 ms", "p95 ms", "films/s", "server ms",
               "model only ms"],
              notes=[f"server ready after {ready_s:.1f} s; first request (ONNX export) {first_s:.1f} s, not counted",
                     "p50/p95: round trip of POST /infer from upload to the last byte of the label; server: MONAI "
                     "Label's own time, median; model only: the inferer on the film in memory, this process, median; "
                     f"for {levels[0]['film']} the median of "
                     f"{sum(lv['film'] == levels[0]['film'] for lv in levels)} passes, one before each level"])
    for lv in levels:
        t.add(lv["film"], str(lv["clients"]), str(lv["requests"]), str(lv["errors"]), str(lv["wrong_labels"]),
              ms(lv["p50_s"]), ms(lv["p95_s"]), num(lv["films_per_s"], 2), ms(lv["server"].get("total_p50_s")),
              ms(lv["model_only_s"]))
    rep.tables.append(t)
    small_levels = [lv for lv in levels if lv["film"] == levels[0]["film"]]
    one = next((lv for lv in small_levels if lv["clients"] == 1), None)
    top = max(small_levels, key=lambda lv: lv["clients"])
    goals = {}
    if one:
        bound = P50_FACTOR * one["model_only_s"] + P50_SLACK_S
        goals["p50_one_client"] = {"p50_s": one["p50_s"], "bound_s": bound, "met": one["p50_s"] <= bound}
        rep.goal(f"p50 (1 client, {one['film']}) <= {P50_FACTOR} x model-only + {P50_SLACK_S * 1000:.0f} ms",
                 f"{ms(one['p50_s'])} ms vs {ms(bound)} ms ({P50_FACTOR} x {ms(one['model_only_s'])} + "
                 f"{P50_SLACK_S * 1000:.0f})", goals["p50_one_client"]["met"])
        goals["throughput"] = {"clients": top["clients"], "films_per_s": top["films_per_s"],
                               "one_client_films_per_s": one["films_per_s"],
                               "met": top["films_per_s"] >= one["films_per_s"]}
        rep.goal(f"films/s at {top['clients']} clients >= at 1", f"{top['films_per_s']:.2f} vs "
                 f"{one['films_per_s']:.2f}", goals["throughput"]["met"])
    errors = top["errors"] + top["wrong_labels"]
    goals["no_error_at_top"] = {"clients": top["clients"], "errors": top["errors"], "wrong_labels": top["wrong_labels"],
                                "met": errors == 0}
    rep.goal(f"no error at {top['clients']} clients", f"{top['errors']} errors, {top['wrong_labels']} wrong labels "
             f"of {top['requests']}", errors == 0)
    if soak:
        kinds = ", ".join(f"{k}: {' '.join(f'{n}x{s}' for s, n in v['statuses'].items())} (expected {v['expected']})"
                          for k, v in soak["bad_by_kind"].items())
        trend = " ".join(f"{c}:{mb:.0f}" for c, mb in soak["rss_mb"]) + f" end:{soak['rss_end_mb']:.0f}"
        st = Table(f"soak: {soak['requests']} requests ({soak['good']} good, {soak['bad']} bad) from "
                   f"{soak['clients']} clients in {soak['wall_s']:.0f} s", ["requests", "answered right", "p50 ms",
                                                                           "p95 ms"],
                   notes=[f"bad: {kinds}", f"server RSS ({soak['server_processes']} process(es)), MB after request "
                                           f"N: {trend}"])
        st.add(f"good ({soak['good']})", f"{soak['good_200']} x 200, {soak['good_correct']} labels equal to "
               "inference.json's", ms(soak["good_p50_s"]), ms(soak["good_p95_s"]))
        st.add(f"bad ({soak['bad']})", f"{soak['bad_4xx']} x 4xx, {soak['bad_expected_code']} with the documented "
               "code", "-", "-")
        rep.tables.append(st)
        goals["soak_answers"] = {"met": soak["good_correct"] == soak["good"] and soak["bad_4xx"] == soak["bad"]
                                 and soak["answered"] == soak["requests"]}
        goals["soak_rss"] = {"growth_mb": soak["rss_growth_mb"], "met": soak["rss_growth_mb"] <= RSS_GOAL_MB}
        goals["soak_temp_files"] = {"left": len(soak["temp_files_left"]), "met": not soak["temp_files_left"]}
        rep.goal("every good one 200 and right, every bad one 4xx", f"{soak['good_correct']}/{soak['good']} right, "
                 f"{soak['bad_4xx']}/{soak['bad']} 4xx", goals["soak_answers"]["met"])
        rep.goal(f"RSS growth from request {soak['rss_from_request']} to {soak['answered']} <= {RSS_GOAL_MB:.0f} MB",
                 f"{soak['rss_at_from_mb']:.0f} -> {soak['rss_end_mb']:.0f} MB, {soak['rss_growth_mb']:+.1f} MB",
                 goals["soak_rss"]["met"])
        left = soak["temp_files_left"]
        rep.goal(f"no temporary file left (server's TMPDIR; {soak['temp_files_before']} there before the soak)",
                 f"{len(left)} left{': ' + ', '.join(left[:5]) if left else ''}", goals["soak_temp_files"]["met"])
    if no_answer:
        rep.notes.append(f"requests without any HTTP answer: {len(no_answer)}; first: {no_answer[0]}")
    bounds = explain(levels, goals, args.profile, profiles)
    if bounds:
        rep.notes.append("what bounds the round trip:\n" + "\n".join("  " + line for line in bounds))
    rep.results = {"source": source, "films": [f.name for f in small], "big": big.name if big else None,
                   "server_versions": versions, "ready_s": ready_s, "first_request_s": first_s, "levels": levels,
                   "soak": soak, "goals": goals, "bounds": bounds, "transform_profile": profiles,
                   "no_answer": len(no_answer), "all_goals_met": all(g["met"] for g in goals.values())}


def explain(levels: list[dict], goals: dict, always: bool, profiles: dict) -> list[str]:
    """Where the round trip goes, per level: MONAI Label's stages (its log), the app's check of the upload, the
    rest (HTTP, multipart parsing, the temporary file, the answer, waiting for the server); printed for every
    level with ``--profile``, else for the levels of a goal not met."""
    unmet = {k for k, g in goals.items() if not g["met"]}
    lines = []
    one = next((lv for lv in levels if lv["clients"] == 1), None)
    for lv in levels:
        relevant = always or ("p50_one_client" in unmet and lv is one) or \
            ("throughput" in unmet and lv["film"] == levels[0]["film"])
        srv = lv["server"]
        if not relevant or not srv:
            continue
        rest = lv["p50_s"] - srv["total_p50_s"] - lv["check_s"]
        lines.append(f"{lv['film']}, {lv['clients']} client(s): round trip p50 {lv['p50_s'] * 1000:.0f} ms = server "
                     f"pipeline {srv['total_p50_s'] * 1000:.0f} (pre-transforms {srv['pre_p50_s'] * 1000:.0f}, inferer "
                     f"{srv['inferer_p50_s'] * 1000:.0f}, invert {srv['invert_p50_s'] * 1000:.0f}, post "
                     f"{srv['post_p50_s'] * 1000:.0f}, writer {srv['write_p50_s'] * 1000:.0f}) + the app's check "
                     f"of the upload ~{lv['check_s'] * 1000:.0f} + the rest {rest * 1000:.0f} (HTTP, multipart, "
                     f"temporary file, waiting for the server); model only {lv['model_only_s'] * 1000:.0f}")
    if "throughput" in unmet or always:
        top = [lv for lv in levels if lv["film"] == levels[0]["film"]]
        if len(top) > 1 and top[0]["server"] and top[-1]["server"]:
            lines.append(f"concurrency: server pipeline p50 {top[0]['server']['total_p50_s'] * 1000:.0f} ms at "
                         f"{top[0]['clients']} client(s), {top[-1]['server']['total_p50_s'] * 1000:.0f} ms at "
                         f"{top[-1]['clients']}; round trip p50 x{top[-1]['p50_s'] / top[0]['p50_s']:.1f} for "
                         f"x{top[-1]['clients'] / top[0]['clients']:.0f} clients (MONAI Label 0.8.5's infer endpoint "
                         "is an async function that runs the pipeline on the event loop: one request at a time)")
    for film, rows in profiles.items():
        parts = ", ".join(f"{r['step']} {r['s'] * 1000:.0f}" for r in rows)
        stages = {st: sum(r["s"] for r in rows if r["stage"] == st) * 1000 for st in ("pre", "inferer", "post")}
        lines.append(f"{film}, inference.json's steps in this process (median ms): {parts}; pre {stages['pre']:.0f}, "
                     f"inferer {stages['inferer']:.0f}, post {stages['post']:.0f}")
    if lines:
        lines.append("py-spy: " + ("installed, not run by this benchmark" if shutil.which("py-spy") else
                                   "not installed") + " (the server's stages: its log; their steps: timed in this "
                                                      "process)")
    return lines


