"""``python -m core <command> --help``: see :mod:`core.cli.main`."""

import sys

from core.cli.main import main

sys.exit(main())
