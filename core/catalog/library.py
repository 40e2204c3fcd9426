"""User upload library: safe file names, validated and atomic saves.

Uploaded tracks are kept in one folder (``Paths().library``, ``$GENRE_LIBRARY``)
that :func:`core.catalog.sources.read_catalog` lists and the index embeds. Use from the
app (no Streamlit here)::

    from core.config import Paths
    from core.catalog.library import LibraryError, MAX_UPLOAD_BYTES, save_upload

    for up in st.file_uploader(..., accept_multiple_files=True) or []:
        try:
            saved = save_upload(up.name, up.getvalue(), Paths().library)
        except LibraryError as exc:
            st.error(str(exc))          # one line, starts with the (safe) file name
            continue                    # the other files still go through
        saved.path      # Path inside the library folder
        saved.created   # False when the identical file was already there

Guarantees:

* the name is reduced by :func:`sanitize_filename` (no folders, no ``..``,
  NFKC-normalised unicode, letters/digits/``-_.()`` only, extension kept);
* the bytes must be audio the models can use: the header is checked with
  :func:`core.audio.load.probe` and the model excerpt decoded with
  :func:`core.audio.load.load` (empty, too short, silent, NaN, unknown format →
  :class:`LibraryError` with the loader's one-line reason) before anything is
  kept;
* nothing is written outside ``library_dir``; a file is never overwritten: a
  different file with the same name gets a ``-<sha256 prefix>`` suffix, the
  identical file is reused;
* the write is atomic (hidden temporary file, fsync, then a hard link that
  fails instead of replacing), so a crash never leaves a half-written track
  under a real name.
"""

from __future__ import annotations

import io
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from core.audio.load import SUPPORTED_EXTENSIONS, AudioError, AudioInfo, load, probe
from core.errors import GenreError
from core.files import fsync_dir, sha256_of

MAX_UPLOAD_MB = 50  # keep equal to server.maxUploadSize in .streamlit/config.toml
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_STEM_BYTES = 120  # well under the 255-byte name limit of common file systems
_SAFE_PUNCT = "-_.()"
# Names Windows reserves for devices; a library may be copied there.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}


class LibraryError(GenreError, ValueError):
    """An upload that was not kept; ``str(err)`` is one readable line."""


@dataclass(frozen=True)
class SavedUpload:
    """Where an upload was kept and what it is."""

    path: Path          # inside the library folder
    digest: str         # SHA-256 of the bytes (core.files.sha256_of, as the index)
    info: AudioInfo     # header: sample rate, channels, frames, format
    created: bool       # False: an identical file was already in the library

    @property
    def name(self) -> str:
        return self.path.name


def sanitize_filename(name: str, default: str = "upload") -> str:
    """A file name that is safe to create in the library folder.

    Keeps only the last path component (``/`` and ``\\`` both count), so
    ``../../etc/passwd.mp3`` becomes ``passwd.mp3``; normalises unicode (NFKC)
    and drops control/format characters (e.g. right-to-left overrides);
    replaces anything but letters, digits and ``-_.()`` with ``_``; strips
    leading dots and dashes (no hidden files, nothing that reads as an option);
    keeps the extension, lower-cased; caps the length. Never returns ``""``,
    ``.`` or ``..``.
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = "".join(" " if c.isspace() else c for c in text
                   if c.isspace() or unicodedata.category(c)[0] != "C")
    text = text.replace("\\", "/").rstrip("/ ").rsplit("/", 1)[-1]
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem.strip(". "):  # "track", ".mp3", "..": no real extension
        stem, ext = text, ""
    ext = "".join(c for c in ext.lower() if c.isascii() and c.isalnum())[:10]
    safe = "".join(c if (c.isalnum() or c in _SAFE_PUNCT) else "_" for c in stem)
    while "__" in safe:
        safe = safe.replace("__", "_")
    safe = safe.lstrip("._-").rstrip("._ ")
    safe = _cap_utf8(safe, MAX_STEM_BYTES).rstrip("._ ") or default
    if safe.split(".")[0].lower() in _RESERVED:
        safe = f"{safe}_"
    return f"{safe}.{ext}" if ext else safe


def _cap_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def save_upload(name: str, data: bytes, library_dir: str | os.PathLike,
                max_bytes: int = MAX_UPLOAD_BYTES, decode: bool = True) -> SavedUpload:
    """Validate ``data`` and keep it in ``library_dir`` under a sanitised ``name``.

    ``decode=False`` checks the header only (skips decoding the model excerpt).
    Raises :class:`LibraryError` (one line naming the file) and writes nothing
    when the upload is rejected.
    """
    safe = sanitize_filename(name)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LibraryError(f"{safe}: upload must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise LibraryError(f"{safe}: file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise LibraryError(f"{safe}: too large ({len(data) / 2**20:.1f} MB; "
                           f"the limit is {max_bytes / 2**20:.3g} MB)")
    ext = Path(safe).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = f"'{ext}'" if ext else "no extension"
        raise LibraryError(f"{safe}: unsupported file type ({shown}; accepted: "
                           f"{', '.join(SUPPORTED_EXTENSIONS)})")
    try:
        info = probe(_named_bytes(data, safe))
        if decode:
            load(_named_bytes(data, safe))
    except AudioError as exc:
        raise LibraryError(str(exc)) from None
    digest = sha256_of(data)  # the same digest the index keys tracks by
    path, created = _store(data, digest, safe, Path(library_dir))
    return SavedUpload(path=path, digest=digest, info=info, created=created)


def _named_bytes(data: bytes, name: str) -> io.BytesIO:
    buf = io.BytesIO(data)
    buf.name = name  # AudioError messages then name the upload, not "uploaded audio"
    return buf


def _store(data: bytes, digest: str, safe: str, library_dir: Path) -> tuple[Path, bool]:
    """Atomically place ``data`` in ``library_dir``; never replaces another file."""
    try:
        library_dir.mkdir(parents=True, exist_ok=True)
        root = library_dir.resolve(strict=True)
    except OSError as exc:
        raise LibraryError(f"{safe}: library folder {library_dir} is not usable "
                           f"({exc.strerror or exc})") from None
    stem, ext = Path(safe).stem, Path(safe).suffix
    candidates = [safe, f"{stem}-{digest[:12]}{ext}", f"{stem}-{digest}{ext}"]
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for cand in candidates:
            target = root / cand
            # Defence in depth: the sanitised name cannot leave the folder.
            if target.parent != root or cand in ("", ".", ".."):
                raise LibraryError(f"{safe}: refusing to write outside the library folder")
            if _place(Path(tmp), target):
                fsync_dir(root)
                return target, True
            if _same_content(target, digest):
                return target, False
        raise LibraryError(f"{safe}: a different file already uses this name")
    except OSError as exc:
        raise LibraryError(f"{safe}: could not save ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _place(tmp: Path, target: Path) -> bool:
    """Give ``tmp``'s content the name ``target`` unless that name exists."""
    try:
        os.link(tmp, target)  # atomic and fails instead of overwriting
        return True
    except FileExistsError:
        return False
    except OSError:
        # File systems without hard links: check, then rename (a tiny race
        # window, but still never a partly written file under a real name).
        if os.path.lexists(target):
            return False
        os.replace(tmp, target)
        return True


def _same_content(path: Path, digest: str) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    return sha256_of(path) == digest
