"""The command line, ``python -m core <command>``: one module per group of
commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.config import shared_data_dirs

EXIT_BAD_INPUT = 2   # exit status of every command for bad input (one line on stderr)
NO_DATA = "no --data folder given and ../shared/data not found"


def data_dirs(args) -> list[Path]:
    """The ``--data`` folders given, else :func:`core.config.shared_data_dirs` (may be empty)."""
    return [Path(d) for d in (args.data or [])] or shared_data_dirs()


def data_dirs_or_exit(args) -> list[Path]:
    """:func:`data_dirs`, or exit with ``error: …`` on stderr when there are none."""
    dirs = data_dirs(args)
    if not dirs:
        sys.exit(f"error: {NO_DATA}")
    return dirs
