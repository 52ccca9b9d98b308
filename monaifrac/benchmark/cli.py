"""``monaifrac benchmark VERB ...``: parses arguments, runs one benchmark module, prints its tables, writes its JSON.

``monaifrac/cli.py`` forwards ``monaifrac benchmark``'s arguments to :func:`main`; ``python -m
monaifrac.benchmark`` is the same. Each verb's module has ``add_arguments(parser)`` and
``main(args, report)``, which fills a :class:`monaifrac.benchmark.tables.Report`. Exit status 0 when
the benchmark ran (goals met or not), 2 on bad input (one line naming the file and the problem), 1
when the machine failed it (a server that did not start, a full disk).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

VERBS = {  # verb: (module, one line of help)
    "infer": ("infer", "inference engines side by side: time, memory, agreement of their labels (and the truth)"),
    "serve": ("serve", "the MONAI Label server under load: latency, throughput, a soak with bad requests"),
    "train": ("train", "training: the bundle's pipeline against the bare network step (or --networks, --epoch)"),
    "memory": ("memory", "training's peak memory (PSS of the process tree), shipped against a change"),
    "prepare": ("prepare", "monaifrac prepare's throughput: one process against every core"),
    "big-film": ("big_film", "time and peak memory of reading and labelling one 6000 x 6000 film"),
    "watch": ("watch", "film stored in a PACS -> its results stored, with monaifrac pacs-watch: latency, losses"),
    "compare": ("compare", "how much two inference runs' label maps differ, film by film"),
    "ddp-shutdown": ("ddp_shutdown", "aborts at exit of 2-rank gloo DDP runs, with and without our shutdown"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs (sub-commands) of ``monaifrac benchmark`` on ``parser``."""
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, text) in VERBS.items():
        p = sub.add_parser(verb, help=text, description=text)
        importlib.import_module(f"monaifrac.benchmark.{module}").add_arguments(p)
        p.add_argument("--json", metavar="OUT", help="also write the result (with the machine block) as JSON here")
    p = sub.add_parser("render", help="a result JSON as the markdown table of the README's Performance sections")
    from monaifrac.benchmark import render

    render.add_arguments(p)


def quiet_logging() -> None:
    """Warnings and errors of every library on stderr; stdout holds only the tables."""
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    # ConfigWorkflow(logging_file=False) says so at every run
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monaifrac benchmark", description=__doc__.splitlines()[0])
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.verb == "render":
        from monaifrac.benchmark import render

        return render.main(args)
    from monaifrac.benchmark.machine import describe
    from monaifrac.benchmark.tables import Report
    from monaifrac.data.cases import DataError
    from monaifrac.errors import InputError

    quiet_logging()
    module = importlib.import_module(f"monaifrac.benchmark.{VERBS[args.verb][0]}")
    report = Report(args.verb, ["monaifrac", "benchmark", *argv], {})
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        report.machine = describe()
        # whatever a library prints while the benchmark runs (MONAI's StatsHandler logs to stdout) goes to
        # stderr: stdout holds only the tables
        with contextlib.redirect_stdout(sys.stderr):
            rc = module.main(args, report) or 0
    except (InputError, DataError, ValueError, FileNotFoundError) as err:
        print(f"monaifrac benchmark {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:
        print(f"monaifrac benchmark {args.verb}: error: {err}", file=sys.stderr)
        return 1
    report.emit(args.json)
    return rc
