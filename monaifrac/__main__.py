import sys

from monaifrac.cli import main

sys.exit(main())
