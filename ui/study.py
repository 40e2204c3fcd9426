"""The Listening study page's participant: kept in the session and in the
page's URL (``?participant=p-…``), so a participant whose connection dropped
or whose server restarted carries on where they were, and a failed answer is
one line on the page, never a traceback.

Every answer is committed to SQLite (``core.recommend.study.StudyStore``)
before the page shows it as given, so what a participant saw as saved is
saved.
"""

from __future__ import annotations

import streamlit as st

from core.recommend import study

EXPORTS = ("answers", "per_participant", "paired", "report")   # the Results view's CSV downloads

PID_KEY = "study_pid"
PARAM = "participant"
_ERROR_KEY = "study_answer_error"


def participant(store: study.StudyStore) -> str | None:
    """This session's participant id; else the one in the URL if the study
    database knows it (a participant coming back), with a line saying so."""
    pid = st.session_state.get(PID_KEY)
    if pid is not None:
        return pid
    pid = st.query_params.get(PARAM)
    if not pid:
        return None
    try:
        done, total = store.progress(pid)
    except study.StudyError:
        st.query_params.pop(PARAM, None)
        return None
    st.session_state[PID_KEY] = pid
    st.info(f"Welcome back — participant `{pid}`: your {done} answer(s) so far are saved; carry on where "
            f"you left off ({total - done} to go).", icon=":material/restore:")
    return pid


def set_participant(pid: str | None) -> None:
    """Start (``pid``) or end (``None``) this session's participation."""
    if pid is None:
        st.session_state.pop(PID_KEY, None)
        st.query_params.pop(PARAM, None)
    else:
        st.session_state[PID_KEY] = pid
        st.query_params[PARAM] = pid


def answer(store: study.StudyStore, track_id: str, liked: bool) -> None:
    """Button callback: store one answer; a failure is kept for :func:`show_answer_error`."""
    try:
        store.answer(st.session_state[PID_KEY], track_id, liked)
    except (study.StudyError, KeyError) as exc:
        st.session_state[_ERROR_KEY] = (f"Your answer could not be saved: {exc}. Please try again; "
                                        "the answers shown as given are saved.")


def show_answer_error() -> None:
    """The line for an answer that failed in the last click, once."""
    msg = st.session_state.pop(_ERROR_KEY, None)
    if msg:
        st.error(msg, icon=":material/error:")


@st.cache_data(show_spinner=False, max_entries=4)
def _results(path: str, revision: tuple[int, int, int], _store: study.StudyStore
             ) -> tuple[study.StudyResults, dict[str, str]]:
    res = _store.results()
    return res, {what: _store.export_csv(what=what, results=res) or "" for what in EXPORTS}


def results(store: study.StudyStore) -> tuple[study.StudyResults, dict[str, str]]:
    """The study's results and its CSV exports (:data:`EXPORTS`), computed once
    per database revision (every rerun of every participant's page would
    otherwise query and test everything again, five times over)."""
    return _results(str(store.path), store.revision(), store)
