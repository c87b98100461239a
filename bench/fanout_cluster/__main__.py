"""python -m bench.fanout_cluster [options]: the cross-instance fan-out benchmark (see __init__.py)."""

import sys

from bench.fanout_cluster import main

main(sys.argv[1:])
