"""python -m bench.imaging [options]: run the imaging benchmark (see bench/imaging/__init__.py)."""

import sys

from bench.imaging import main

main(sys.argv[1:])
