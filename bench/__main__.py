"""`python -m bench [options]`: see bench/README.md."""

import sys

from bench.run import main

sys.exit(main(sys.argv[1:]))
