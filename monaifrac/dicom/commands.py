"""The PACS commands: ``monaifrac pacs-push`` and ``pacs-pull`` (DICOMweb, :mod:`monaifrac.dicom.web`).

Each is a pair, registered in :data:`COMMANDS`: ``add_<name>_arguments(parser)`` declares its
options and imports nothing heavy; ``run_<name>(args)`` imports :mod:`monaifrac.dicom.web` and runs it.
"""

from __future__ import annotations

import argparse

from monaifrac.errors import require_exists

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
    p.add_argument("folder", help="an inference output folder written with --dicom-seg")
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
    p.add_argument("--out", required=True, help="folder for the films (created; files of the same instance replaced)")
    p.add_argument("--study", help="Study Instance UID (default: every study)")
    p.add_argument("--modality", nargs="+", default=["DX"], help="series modalities to retrieve (default DX)")
    add_pacs_options(p)


def run_pacs_pull(args) -> int:
    from monaifrac.dicom.web import pull

    written = pull(args.url, args.out, study=args.study, modalities=tuple(args.modality), user=args.user,
                   password=args.password, timeout=args.timeout, report=print)
    where = f"study {args.study}" if args.study else "all studies"
    print(f"pulled {len(written)} {'/'.join(args.modality)} instance(s) of {where} into {args.out}")
    return 0


#: name → (one line of help, add_arguments(parser), run(args) -> exit status), in the order ``--help`` lists them
COMMANDS = {
    "pacs-push": ("store the DICOM Segmentations of a folder (*.seg.dcm) in a PACS by DICOMweb STOW-RS",
                  add_pacs_push_arguments, run_pacs_push),
    "pacs-pull": ("retrieve the DX films of a PACS (all studies, or one) by DICOMweb into a folder, as "
                  "<SOPInstanceUID>.dcm", add_pacs_pull_arguments, run_pacs_pull),
}
