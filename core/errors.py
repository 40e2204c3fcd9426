"""The project's one error root.

Every error the project raises for bad input or bad state derives from
:class:`GenreError`, whose ``reason`` is one readable line without the
subject's name, so a CLI or a page can print ``f"{name}: {err.reason}"``
without cutting message strings apart. ``str(err)`` is ``"name: reason"``
when a name (file, track, artifact) is known, else just the reason.

The subclasses keep the builtin base their callers already catch
(``ValueError`` for bad input, ``RuntimeError`` for broken artifacts).
"""

from __future__ import annotations


class GenreError(Exception):
    """Root of every project error; ``reason`` is one line, ``name`` optional."""

    def __init__(self, message: str, name: str | None = None):
        self.name = name
        self.reason = " ".join(str(message).split())
        super().__init__(f"{name}: {self.reason}" if name else self.reason)


class ArtifactError(GenreError, RuntimeError):
    """A missing, tampered or unreadable artifact (weights, metrics, checkpoint)."""
