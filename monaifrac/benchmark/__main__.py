"""``python -m monaifrac.benchmark VERB ...``: the same as ``monaifrac benchmark VERB ...``."""

import sys

from monaifrac.benchmark.cli import main

sys.exit(main(sys.argv[1:]))
