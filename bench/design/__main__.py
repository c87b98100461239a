"""python -m bench.design [options]: run the design benchmark (see bench/design/__init__.py)."""

import sys

from bench.design import main

main(sys.argv[1:])
