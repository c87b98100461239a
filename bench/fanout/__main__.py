"""python -m bench.fanout [options]: run the fan-out benchmark (see bench/fanout/__init__.py)."""

import sys

from bench.fanout import main

main(sys.argv[1:])
