"""Type aliases shared across the package (one place, as in librosa's ``_typing``)."""

from __future__ import annotations

import os
from typing import BinaryIO, Callable, Union

#: A file path, raw bytes or an open binary file: anything :mod:`core.audio.load` decodes.
AudioSource = Union[str, os.PathLike, bytes, BinaryIO]
#: A path given as text or as a path object.
PathLike = Union[str, os.PathLike]
#: ``progress(done, total)``: called after each unit of long work (bars in the app and CLI).
Progress = Callable[[int, int], None]
