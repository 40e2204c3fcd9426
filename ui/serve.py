"""The server's housekeeping, started once per process by ``app.py``: the
:class:`core.serve.MemoryTrimmer` (see :mod:`core.serve`), which before each
of its runs shuts down the sessions whose reconnect time ran out.

Streamlit keeps a closed tab's session for ``server.disconnectedSessionTTL``
seconds so the browser can reconnect to it. After that, Streamlit 1.67 only
stops offering it: its session storage (a ``TTLCache``) drops the entry the
next time another session is stored, and never calls the session's
``shutdown()``. So the session's uploaded files (``UploadedFileManager``)
and its references to media files (every ``st.audio`` it drew) stayed in the
server's memory for good: with four users × two rounds, 7 sessions, 7
sessions' uploads and 38 media files (8.7 MB) were still held after every tab
had closed (measured in the load run). :func:`release_dropped_sessions` makes
the storage shut down each session it drops, and the trimmer reaps the
expired ones every period instead of waiting for the next stored session.

:func:`keep_finishing_runs` works around a second Streamlit 1.67 gap: a
fragment's timer rerun that replaced a just-finished script run lost that
run's page (shown, and the fix measured, by ``benchmarks/fragment_race.py``).
"""

from __future__ import annotations

import threading

import streamlit as st

from core.serve import MemoryTrimmer, ServeConfig, ServeError


def release_dropped_sessions(mgr) -> bool:
    """Make the session storage of ``mgr`` (Streamlit's session manager) shut
    down every session it drops (expired, or evicted when full), unless the
    session is being resumed (then it is active again); once per manager.
    False when this Streamlit keeps its sessions some other way."""
    cache = getattr(getattr(mgr, "_session_storage", None), "_cache", None)
    if cache is None or not hasattr(cache, "_on_remove") or not hasattr(cache, "expire"):
        return False
    if getattr(cache, "genre_release", False):
        return True
    previous = cache._on_remove

    def on_remove(session_id, info) -> None:
        if previous is not None:
            previous(session_id, info)
        if not mgr.is_active_session(session_id):      # dropped, not resumed: free its files now
            info.session.shutdown()                     # (idempotent: close_session may call it too)

    cache._on_remove, cache.genre_release = on_remove, True
    return True


def _runtime():
    from streamlit import runtime

    return runtime.get_instance() if runtime.exists() else None


def close_expired_sessions(timeout_s: float = 5.0) -> int | None:
    """Reap the expired sessions of the running server's session storage (on
    its event loop: the storage is not thread-safe), which shuts them down
    (:func:`release_dropped_sessions`); waits at most ``timeout_s``; how many,
    or ``None`` without a server (or when it is stopping)."""
    rt = _runtime()
    try:
        loop = rt._get_async_objs().eventloop
        mgr = rt._session_mgr
    except (AttributeError, RuntimeError):   # no runtime, not started, or a Streamlit without these
        return None
    if not release_dropped_sessions(mgr):
        return None
    done, out = threading.Event(), []

    def on_loop() -> None:
        try:
            out.append(len(mgr._session_storage._cache.expire()))
        finally:
            done.set()

    try:
        loop.call_soon_threadsafe(on_loop)
    except RuntimeError:        # the loop is closed: the server is stopping
        return None
    done.wait(timeout_s)
    return out[0] if out else None


def session_counts() -> dict[str, int]:
    """Sessions the server holds (connected, kept for reconnecting, expired
    but not yet shut down) and the sessions with uploaded files, for the
    memory trimmer's report."""
    rt = _runtime()
    try:
        mgr = rt._session_mgr
        cache = mgr._session_storage._cache
        return {"active": len(mgr.list_active_sessions()), "stored": len(cache._data),
                "upload_sessions": len(rt.uploaded_file_mgr.file_storage)}
    except (AttributeError, RuntimeError):
        return {}


@st.cache_resource(show_spinner=False, max_entries=1)
def _trimmer() -> MemoryTrimmer:
    # Shared by every session: it holds no state a session reads or writes.
    cfg = ServeConfig()
    return MemoryTrimmer(cfg.trim_every_s, probe=cfg.probe_path, before=close_expired_sessions,
                         report=session_counts)


def housekeeping() -> None:
    """Install :func:`keep_finishing_runs` and start the process's memory
    trimmer (once; later calls find them in place); a bad setting of the
    trimmer is one line on the page, and the app still works."""
    keep_finishing_runs()
    try:
        _trimmer()
    except ServeError as exc:
        st.error(str(exc))


def keep_finishing_runs() -> bool:
    """Stop a fragment's timer rerun from replacing a script run that has just
    finished (Streamlit 1.67's ``AppSession``), which loses that run's output.

    A ``run_every`` fragment's timer sends a rerun request. When it reaches
    the session while the session's script runner has finished its script
    but its last events (the run's page elements) are still queued on the
    server's event loop, the runner refuses it and ``AppSession`` starts a new
    runner; the old runner's queued events then come from a "non-current"
    runner and are dropped. The user's click ran (its session state changed)
    but its page never arrives, and the browser waits for good. Under load
    (a busy event loop) this is the load run's "lost rerun". This drops such a
    timer rerun instead: the finished run's output is delivered, and the
    fragment's next tick redraws it. User reruns are untouched. Once per
    process; False when this Streamlit has no such method."""
    from streamlit.runtime.app_session import AppSession

    create = getattr(AppSession, "_create_scriptrunner", None)
    if create is None:
        return False
    if getattr(create, "genre_keeps_runs", False):
        return True

    def _create_scriptrunner(self, data) -> None:
        if (getattr(self, "_scriptrunner", None) is not None and getattr(data, "is_auto_rerun", False)
                and (getattr(data, "fragment_id", None) or getattr(data, "fragment_id_queue", None))):
            return          # the current runner is finishing; its output comes first
        create(self, data)

    _create_scriptrunner.genre_keeps_runs = True
    AppSession._create_scriptrunner = _create_scriptrunner
    return True
