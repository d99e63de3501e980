"""``python -m edgepad.bench``: the same as ``edgepad bench`` (arguments, output, exit codes)."""
import sys

from edgepad.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
