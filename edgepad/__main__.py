import sys

from edgepad.cli import main

sys.exit(main())
