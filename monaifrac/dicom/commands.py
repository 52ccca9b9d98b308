"""The PACS commands: ``monaifrac pacs-push``, ``pacs-pull`` and ``pacs-watch`` (DICOMweb, :mod:`monaifrac.dicom.web`).

Each is a pair, registered in :data:`COMMANDS`: ``add_<name>_arguments(parser)`` declares its
options and imports nothing heavy; ``run_<name>(args)`` imports :mod:`monaifrac.dicom.web` and runs it.
"""

from __future__ import annotations

import argparse

from monaifrac.errors import InputError, require_exists

#: monaifrac.dicom.web.DEFAULT_TIMEOUT, spelled out so that declaring --timeout imports no MONAI (a test keeps
#: them equal)
DEFAULT_TIMEOUT = 30.0


def add_pacs_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--user", help="PACS user (default: $MONAIFRAC_PACS_USER)")
    p.add_argument("--password", help="PACS password (default: $MONAIFRAC_PACS_PASSWORD, the better place: a "
                                      "command line is visible to other users)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the PACS, per request (default {DEFAULT_TIMEOUT:g})")


def add_pacs_push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an inference output folder written with --dicom (or --dicom-seg)")
    p.add_argument("--films", action="store_true", help="also store the folder's other DICOM files (films)")
    add_pacs_options(p)


def run_pacs_push(args) -> int:
    require_exists(args.folder)
    from monaifrac.dicom.web import push

    stored = push(args.folder, args.url, user=args.user, password=args.password, films=args.films,
                  timeout=args.timeout, report=print)
    print(f"stored {len(stored)} instance(s) in {args.url}")
    return 0


def add_pacs_pull_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="folder for the films (created; files of the same instance replaced)")
    p.add_argument("--labels", metavar="OUT", help="also write the films that a SEG in the PACS labels (any tool's; "
                                                   "the newest wins) as a FracAtlas-layout folder that `monaifrac "
                                                   "prepare` reads (created; it is this pull's)")
    p.add_argument("--study", help="Study Instance UID (default: every study)")
    p.add_argument("--modality", nargs="+", default=["DX"], help="series modalities to retrieve (default DX)")
    add_pacs_options(p)


def run_pacs_pull(args) -> int:
    if args.out is None and args.labels is None:
        raise InputError("pacs-pull", "give --out FOLDER (the films), --labels FOLDER (the labelled films), or both")
    where = f"study {args.study}" if args.study else "all studies"
    kinds = "/".join(args.modality)
    if args.labels is not None:
        from monaifrac.dicom.labels import pull_labels

        result = pull_labels(args.url, args.labels, study=args.study, modalities=tuple(args.modality),
                             user=args.user, password=args.password, timeout=args.timeout, films_dir=args.out,
                             report=print)
        if args.out is not None:
            print(f"pulled {result.films} {kinds} instance(s) of {where} into {args.out}")
        print(f"wrote {len(result.fractured)} fractured and {len(result.normal)} normal labelled film(s) of "
              f"{result.films} into {args.labels} (FracAtlas layout: `monaifrac prepare {args.labels} --out ...`)")
        return 0
    from monaifrac.dicom.web import pull

    written = pull(args.url, args.out, study=args.study, modalities=tuple(args.modality), user=args.user,
                   password=args.password, timeout=args.timeout, report=print)
    print(f"pulled {len(written)} {kinds} instance(s) of {where} into {args.out}")
    return 0


def dicom_kinds(text: str | None) -> str | None:
    """``--dicom`` checked (one line for an unknown kind) and passed on as inference.json's ``save_dicom``."""
    if text is None:
        return None
    from monaifrac.dicom.results import parse_kinds

    try:
        return ",".join(parse_kinds(text)) or "none"
    except ValueError as err:
        raise InputError("--dicom", str(err)) from None


def add_pacs_watch_arguments(p: argparse.ArgumentParser) -> None:
    from monaifrac.bundle import add_bundle_options

    p.add_argument("--state", required=True, help="folder of the watcher's state (films.jsonl: the films handled; "
                                                  "keep it across restarts)")
    p.add_argument("--dicom", metavar="KINDS", default="sr,sc", help="which objects, as for infer (default sr,sc)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between two looks for new films (default 0.5)")
    p.add_argument("--max-backoff", type=float, default=30.0,
                   help="the longest wait between tries while the PACS is down (default 30 s)")
    p.add_argument("--once", action="store_true", help="handle the films there now, then exit")
    p.add_argument("--model", help="weights (default <bundle-root>/models/model.pt)")
    add_pacs_options(p)
    add_bundle_options(p)


def run_pacs_watch(args) -> int:
    import logging
    import sys

    from monaifrac.bundle import require_models, run_options

    require_models([args.model])
    kinds = dicom_kinds(args.dicom)
    if kinds == "none":
        raise InputError("--dicom", "pacs-watch needs at least one of sr, sc, seg")
    from monaifrac.serving.watch import StateLocked, watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s pacs-watch: %(message)s", stream=sys.stderr)
    for noisy in ("highdicom", "dicomweb_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    configs, overrides = run_options(args)
    try:
        handled = watch(args.url, args.state, kinds=kinds, once=args.once, bundle_root=args.bundle_root,
                        model_file=args.model, configs=tuple(configs), user=args.user, password=args.password,
                        timeout=args.timeout, poll=args.poll, max_backoff=args.max_backoff, overrides=overrides,
                        ready=lambda: print("pacs-watch: ready", file=sys.stderr, flush=True))
    except StateLocked as err:
        raise InputError(args.state, str(err).split(": ", 1)[-1]) from None
    print(f"pacs-watch: handled {handled} film(s)", file=sys.stderr)
    return 0


#: name → (one line of help, add_arguments(parser), run(args) -> exit status), in the order ``--help`` lists them
COMMANDS = {
    "pacs-push": ("store the DICOM results of a folder (*.sr.dcm, *.sc.dcm, *.seg.dcm) in a PACS by DICOMweb STOW-RS",
                  add_pacs_push_arguments, run_pacs_push),
    "pacs-pull": ("retrieve the DX films of a PACS (all studies, or one) by DICOMweb into a folder, as "
                  "<SOPInstanceUID>.dcm; with --labels, those its SEGs label as a FracAtlas-layout folder", add_pacs_pull_arguments, run_pacs_pull),
    "pacs-watch": ("give every new DX/CR film of a PACS its DICOM results (SR and SC by default) in its study, by "
                   "DICOMweb, each film once; runs until stopped", add_pacs_watch_arguments, run_pacs_watch),
}
