"""How long a film waits for its results: ``monaifrac pacs-watch`` timed on a real Orthanc.

:func:`bench_watch` starts a private Orthanc (:class:`~monaifrac.dicom.orthanc.OrthancServer`, a
temporary folder, deleted after), runs a :class:`~monaifrac.serving.watch.Watcher` in this process
on the bundle's model, and stores ``n`` DX films by STOW-RS, one request each:

* ``burst``: all at once, as fast as the PACS takes them (a modality sending a batch);
* ``paced``: one every ``interval`` seconds (a steady department).

The latency of a film is from the end of its STOW request (it is in the PACS) to the end of
the watcher's STOW of its results (they are in the PACS), both on this machine's clock. Each
film's line in the watcher's state splits it: waiting to be seen (the poll), waiting behind
other films (the queue), retrieving, labelling (the model), building and storing the objects.
Every film must come out once (state lines and the PACS's own count of result instances).

Run it without a script::

    python -m monaifrac.serving.watch_bench --films 100 --mode burst paced

Films: the first ``n`` FracAtlas films of ``--fracatlas`` (default: ``$MONAIFRAC_FRACATLAS``, else the shared
copy beside this checkout: :func:`monaifrac.data.fracatlas.default_fracatlas_dir`), written as 12-bit DX; else
synthetic films of FracAtlas's usual 373 x 454.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_FRACATLAS = "default"  # the copy default_fracatlas_dir() finds


def make_films(out_dir: str | Path, n: int, fracatlas: str | Path | None = DEFAULT_FRACATLAS) -> list[Path]:
    """``n`` DX films (12 bits stored, one study each) in ``out_dir``: FracAtlas's first films where
    ``fracatlas`` holds them, else synthetic ones of 373 x 454."""
    from monaifrac.dicom.films import write_dx
    from monaifrac.io import read_raster

    out = Path(out_dir)
    if fracatlas == DEFAULT_FRACATLAS:
        from monaifrac.data.fracatlas import default_fracatlas_dir

        fracatlas = default_fracatlas_dir()
    images = sorted(Path(fracatlas).glob("images/*/*.jpg"))[:n] if fracatlas and Path(fracatlas).is_dir() else []
    if len(images) < n:
        from monaifrac.data.synth import make_synthetic_fracatlas

        make_synthetic_fracatlas(out / "synth", n=n, size=(373, 454))
        images = sorted((out / "synth").glob("images/*/*.jpg"))[:n]
    paths = []
    for i, image in enumerate(images):
        grey, _ = read_raster(image)
        pixels = np.round(grey.astype(np.float64) * (4095 / 255)).astype(np.uint16)
        path = out / f"film{i:04d}.dcm"
        write_dx(path, pixels, bits_stored=12, patient_id=f"BENCH-{i:04d}")
        paths.append(path)
    return paths


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _summary(values: list[float]) -> dict:
    return {"p50": round(_percentile(values, 50), 3), "p95": round(_percentile(values, 95), 3),
            "max": round(max(values), 3) if values else None}


def bench_watch(n: int = 100, modes: tuple[str, ...] = ("burst", "paced"), interval: float | None = None,
                kinds: str | None = None, poll: float = 0.5, fracatlas: str | Path | None = DEFAULT_FRACATLAS,
                bundle_root: str | Path | None = None, overrides: dict | None = None,
                report=print) -> dict:
    """Time film → results for ``n`` films in each of ``modes`` (see the module docstring).

    Args:
        n: films per mode. interval: seconds between films in ``paced`` (default: 1.5 x the
            median labelling time measured in ``burst``, or 1 s without a burst).
        kinds: the objects (default ``sr,sc`` where ``monaifrac.dicom.sr`` exists, else ``sc``).
        poll: the watcher's poll interval. fracatlas: where FracAtlas films are (else synthetic).
        bundle_root, overrides: the bundle and config overrides (``{"engine": "torch"}``).
        report: called with each line of progress and the table.

    Returns:
        ``{"films", "kinds", "poll_s", "load_s", "modes": {mode: {...}}}``; each mode holds the
        latency's p50/p95/max, the parts of it, throughput, duplicates and films lost.
    """
    from monaifrac.dicom.orthanc import OrthancServer
    from monaifrac.dicom.web import connect
    from monaifrac.serving.labeller import Labeller
    from monaifrac.serving.watch import Watcher

    if kinds is None:
        try:
            import monaifrac.dicom.sr  # noqa: F401

            kinds = "sr,sc"
        except ImportError:
            kinds = "sc"
    started = time.perf_counter()
    labeller = Labeller(bundle_root, **(overrides or {}))
    load_s = time.perf_counter() - started
    result = {"films": n, "kinds": kinds, "poll_s": poll, "load_s": round(load_s, 2), "modes": {}}
    with tempfile.TemporaryDirectory(prefix="monaifrac-watch-bench-") as tmp:
        tmp = Path(tmp)
        report(f"writing {n} films ...")
        for mode in modes:
            films = make_films(tmp / f"films-{mode}", n, fracatlas)  # new UIDs per mode
            with OrthancServer(tmp / f"pacs-{mode}") as pacs:
                client = connect(pacs.dicomweb_url, *pacs.auth, timeout=30).client
                watcher = Watcher(pacs.dicomweb_url, tmp / f"state-{mode}", labeller, kinds, *pacs.auth, timeout=30,
                                  poll=poll)
                thread = threading.Thread(target=watcher.run, daemon=True)
                thread.start()
                gap = 0.0
                if mode == "paced":
                    burst = result["modes"].get("burst")
                    gap = interval or (1.5 * burst["label_s"]["p50"] if burst else 1.0)
                import pydicom

                datasets = [pydicom.dcmread(p) for p in films]
                pushed: dict[str, float] = {}
                first = time.time()
                for ds in datasets:
                    client.store_instances([ds])
                    pushed[ds.SOPInstanceUID] = time.time()
                    if gap:
                        time.sleep(gap)
                push_s = time.time() - first
                deadline = time.monotonic() + 60 + 20 * n
                while len(watcher.state.records) < n and time.monotonic() < deadline:
                    time.sleep(0.05)
                watcher.stop()
                thread.join(60)
                watcher.close()
                records = dict(watcher.state.records)
                lines = (watcher.state.path.read_text().splitlines())
                in_pacs = client.search_for_instances(search_filters={"Modality": "OT"}, get_remaining=True) \
                    if "sc" in kinds else []
            done = [r for sop, r in records.items() if r.get("status") == "done" and sop in pushed]
            latency = [r["stored"] - pushed[r["sop"]] for r in done]
            seen = [r["found"] - pushed[r["sop"]] for r in done]
            queued = [r["started"] - r["found"] for r in done]
            retrieve = [r["retrieved"] - r["started"] for r in done]
            label = [r["labelled"] - r["retrieved"] for r in done]
            store = [r["stored"] - r["labelled"] for r in done]
            last = max((r["stored"] for r in done), default=first)
            row = {
                "latency_s": _summary(latency), "seen_after_s": _summary(seen), "queued_s": _summary(queued),
                "retrieve_s": _summary(retrieve), "label_s": _summary(label), "build_store_s": _summary(store),
                "throughput_films_per_s": round(len(done) / (last - first), 3) if done else 0.0,
                "push_s": round(push_s, 2), "interval_s": round(gap, 3) if gap else None,
                "done": len(done), "lost": n - len(done), "state_lines": len(lines),
                "duplicate_lines": len(lines) - len({json.loads(x)["sop"] for x in lines if x.strip()}),
            }
            if "sc" in kinds:
                row["sc_instances_in_pacs"] = len(in_pacs)
            result["modes"][mode] = row
            report(f"{mode}: {json.dumps(row)}")
    return result


def main(argv: list[str] | None = None) -> int:
    from monaifrac.bundle import parse_overrides

    p = argparse.ArgumentParser(prog="python -m monaifrac.serving.watch_bench", description=__doc__.split("\n")[0])
    p.add_argument("--films", type=int, default=100, help="films per mode (default 100)")
    p.add_argument("--mode", nargs="+", choices=("burst", "paced"), default=["burst", "paced"])
    p.add_argument("--interval", type=float, help="seconds between films in paced mode (default 1.5 x the burst's "
                                                  "median labelling time)")
    p.add_argument("--dicom", help="objects (default sr,sc where monaifrac.dicom.sr exists, else sc)")
    p.add_argument("--poll", type=float, default=0.5, help="the watcher's poll interval (default 0.5 s)")
    p.add_argument("--fracatlas", default=DEFAULT_FRACATLAS, help="FracAtlas folder for real films (else synthetic)")
    p.add_argument("--bundle-root", help="the bundle (default this repository's)")
    p.add_argument("--set", nargs="+", metavar="ID=VALUE", help="config overrides, e.g. engine=torch")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = bench_watch(args.films, tuple(args.mode), args.interval, args.dicom, args.poll, args.fracatlas,
                         args.bundle_root, parse_overrides(args.set), report=lambda line: print(line, flush=True))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
