"""Files that are never half-written: atomic replace, directory fsync and
streamed SHA-256, used by every store of the project (log-mel cache, model
artifacts, catalog index, upload library, study exports); and safetensors
files whose bytes depend only on their tensors and metadata."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import IO, Callable

from core.types import PathLike

_BLOCK = 1 << 20   # 1 MiB reads: large files hash in bounded memory


def sha256_of(source: PathLike | bytes | bytearray) -> str:
    """Hex SHA-256 of a file's bytes (streamed) or of ``bytes`` given directly."""
    h = hashlib.sha256()
    if isinstance(source, (bytes, bytearray)):
        h.update(source)
    else:
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                h.update(block)
    return h.hexdigest()


@functools.cache
def _umask() -> int:
    """The process's umask, read once, without setting it (``os.umask`` would
    change it for every thread for a moment); 0o022 where it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def atomic_write(path: PathLike, write: Callable[[IO], None], text: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it
    over ``path``: readers see the old file or the whole new one, never part.
    The file gets the mode a plain ``open(path, "w")`` would give it (the old
    file's, else 0o666 less the umask), not the temporary file's private
    0o600. The temporary file is removed if ``write`` fails or is interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        perm = path.stat().st_mode & 0o7777
    except OSError:
        perm = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, perm)
        mode = {"mode": "w", "encoding": "utf-8", "newline": ""} if text else {"mode": "wb"}
        with os.fdopen(fd, **mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file's bytes) with its header's ``__metadata__``
    keys in sorted order. The writer puts several metadata keys in an order
    that changes from run to run, so the same tensors and metadata gave
    different bytes (and SHA-256s). Tensors, offsets and values are kept; the
    header is padded with spaces to 8 bytes, as the writer pads it."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | header
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def write_safetensors(path: PathLike, data: bytes) -> Path:
    """Write ``data`` (from ``safetensors.torch.save`` or ``safetensors.numpy.save``)
    to ``path`` atomically in :func:`canonical_safetensors` form."""
    data = canonical_safetensors(data)
    atomic_write(path, lambda f: f.write(data))
    return Path(path)


def read_json_or_none(path: PathLike) -> dict | None:
    """The JSON at ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text), text=True)


def fsync_dir(path: PathLike) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_WRITE_PROBLEMS = {"ENOSPC": "the disk is full (no space left)", "EDQUOT": "the disk quota is used up",
                   "EROFS": "the folder is on a read-only file system",
                   "EACCES": "the folder cannot be written (permission denied)",
                   "EPERM": "the folder cannot be written (operation not permitted)",
                   "EFBIG": "a file grew past the size this process may write"}


def write_problem(exc: BaseException, folder: PathLike) -> str | None:
    """One plain line for a failed write into ``folder`` (disk full, read-only,
    no permission…), or ``None`` when ``exc`` is not such an error."""
    import errno
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):     # SQLite's own words for the same faults
        text = str(exc)
        code = "ENOSPC" if "disk is full" in text else "EROFS" if "readonly database" in text else ""
    elif isinstance(exc, OSError) and exc.errno is not None:
        code = errno.errorcode.get(exc.errno, "")
    else:
        return None
    what = _WRITE_PROBLEMS.get(code)
    return f"cannot write to {folder}: {what}" if what else None
