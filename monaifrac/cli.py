"""The ``monaifrac`` command: a table of sub-commands, each declared and run by a module beside its stage.

This module only dispatches. The modules of :data:`COMMAND_MODULES` declare each command's options
and run it; they import nothing heavy, so ``--help``, a bad option or a missing input answers
before torch, MONAI or any bundle config is loaded; a command's ``run`` imports its stage.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: the modules that declare the commands, beside the stages they drive, in the order ``--help`` lists them. Each
#: has ``COMMANDS``: name → (one line of help, add_arguments(parser), run(args) -> exit status).
COMMAND_MODULES = ("monaifrac.data.commands", "monaifrac.bundle_commands", "monaifrac.evaluation.commands",
                   "monaifrac.dicom.commands")
#: ``monaifrac benchmark ARGS`` hands ARGS to ``main(argv)`` of this module, which parses them itself
BENCHMARK_MODULE = "monaifrac.benchmark.cli"
DESCRIPTION = ("Fracture and bone segmentation on musculoskeletal X-rays: prepare FracAtlas, train, evaluate and "
               "run the MONAI Bundle, score, and exchange results with a PACS.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monaifrac", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        for name, (text, add_arguments, run) in importlib.import_module(module_name).COMMANDS.items():
            p = sub.add_parser(name, help=text, description=text)
            add_arguments(p)
            p.set_defaults(func=run)
    # benchmark parses its own arguments (its --help included): everything after the verb goes to it as is
    p = sub.add_parser("benchmark", add_help=False, help="measure what the bundle costs here, side by side "
                                                         "(monaifrac benchmark --help)")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: run_benchmark(args.argv))
    return parser


def run_benchmark(argv: list[str]) -> int:
    """``monaifrac benchmark ARGS``: ``monaifrac.benchmark.cli.main(ARGS)``, imported only now."""
    try:
        module = importlib.import_module(BENCHMARK_MODULE)
    except ModuleNotFoundError as err:
        if err.name not in ("monaifrac.benchmark", BENCHMARK_MODULE):
            raise
        print(f"monaifrac benchmark: error: not part of this installation (no module {BENCHMARK_MODULE})",
              file=sys.stderr)
        return 1
    return module.main(list(argv))


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["benchmark"]:
        # argparse would take an option right after the verb (--help, --json) for one of its own
        return run_benchmark(argv[1:])
    args = build_parser().parse_args(argv)
    from monaifrac.data.cases import DataError
    from monaifrac.errors import InputError

    try:
        return args.func(args)
    except (OSError, DataError, InputError) as err:
        cause = err
    except RuntimeError as err:
        # MONAI wraps a config expression's error ("Failed to evaluate ...") around ours, e.g. a
        # missing datalist.json; show the user the cause, not the parser's traceback. (Only a bundle
        # run gets here, so these imports cost nothing more.)
        from monaifrac.handlers import TrainingDiverged
        from monaifrac.networks.onnx import EngineError

        cause = _root_cause(err)
        if not isinstance(cause, (OSError, DataError, InputError, ValueError, TrainingDiverged, EngineError)):
            raise
    # bad input (a missing or unreadable file, a bad dataset) exits 2; the machine failing us
    # (a full disk, a read-only folder) exits 1; either way one line naming the file
    print(f"monaifrac {args.command}: error: {cause}", file=sys.stderr)
    return 1 if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError) else 2


if __name__ == "__main__":
    sys.exit(main())
