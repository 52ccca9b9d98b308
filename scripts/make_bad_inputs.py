"""Write the bad-input corpus of issue 8, item 7 (every file generated; nothing copied from elsewhere).

Usage: python scripts/make_bad_inputs.py [OUT_DIR] [--no-huge]

OUT_DIR defaults to tests/data/bad/ (git-ignored). What is written and why: tests/bad_inputs.py,
which the tests import to write the same corpus into pytest's temporary folder; OUT_DIR/manifest.json
lists each case, what it is and where it lies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bad_inputs import make_bad_inputs, write_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(REPO / "tests" / "data" / "bad"))
    parser.add_argument("--no-huge", action="store_true", help="leave out the 6000 x 6000 film")
    args = parser.parse_args(argv)
    cases = make_bad_inputs(args.out_dir, huge=not args.no_huge)
    manifest = write_manifest(args.out_dir, cases)
    print(f"wrote {sum(not n.startswith('_') for n in cases)} cases under {args.out_dir}; see {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
