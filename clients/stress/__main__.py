"""``python -m clients.stress``: the same as ``ftrace-stress``."""

import sys

from clients.stress import main

sys.exit(main())
