"""Listening study: a blind test of the two recommenders, kept in SQLite.

This module is the store and the study's public face: the trial list comes
from :mod:`core.recommend.study_trials`, the statistics from
:mod:`core.recommend.study_stats`; their public names are importable from here.

Adiyansjah et al. (2019) asked listeners to rate recommendations only, so
every song they heard was "a recommendation" and liking was inflated. Here a
participant picks seed songs, then hears one shuffled list that mixes
method 1 picks (cosine only), method 2 picks (cosine + genre) and random
decoys from the catalog, without being told which is which, and answers
like / dislike for each. Decoys give the baseline like rate; the paired
t-test compares the like rates of method 1 and method 2 within participants.

Nothing here imports Streamlit or the recommender: recommendations come in as
plain lists of track ids. Use from the app::

    from core.config import Paths
    from core.recommend.study import StudyError, StudyStore

    store = StudyStore(Paths().study_db)      # cheap: one short connection per call,
                                              # safe to share across sessions/threads
    pid = store.enroll(seeds,                 # the participant's 5 seed track ids
                       method1_ids,           # method 1 recommendations, best first
                       method2_ids,           # method 2 recommendations, best first
                       decoy_ids,             # candidate random tracks (e.g. the whole
                                              #   catalog); n are drawn, recs/seeds excluded
                       rng=np.random.default_rng())
    for t in store.trials(pid):               # BlindTrial(position, track_id, liked):
        ...                                   #   no method field: show it blind
        store.answer(pid, t.track_id, liked=True)   # like; liked=False: dislike
    store.progress(pid)                       # (answered, total)
    res = store.results()                     # StudyResults
    res.per_participant                       # DataFrame: participant, method, shown,
                                              #   answered, likes, like_rate
    res.summary                               # DataFrame: one row per method
    res.main_test                             # PairedTest method1 vs method2 (t, p, d_z, CI)
    res.tests                                 # also method1/method2 vs decoy
    res.paired                                # DataFrame: one row per participant, the
                                              #   paper's paired design (rates per method,
                                              #   method1 - method2, each minus the decoys)
    res.adjusted                              # decoy-adjusted like rates with 95 % CIs
    res.power                                 # participants needed at 80 % power
    csv_text = store.export_csv()             # for st.download_button
    store.export_csv(what="report")           # every figure above as one CSV

Storage: WAL journal, ``synchronous=FULL``, every write one ``BEGIN
IMMEDIATE`` transaction, so a process killed mid-write loses nothing that was
committed (and never leaves a participant without their trial list), and
concurrent sessions writing answers wait for each other instead of losing
rows. Answers are appended, never updated; a participant who changes their
mind adds a row and the latest one counts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import sqlite3
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from core.files import atomic_write_text
from core.recommend.study_stats import PairedTest, StudyResults, study_results
from core.recommend.study_trials import (
    DECOY,
    K_PER_METHOD,
    METHOD1,
    METHOD2,
    METHOD_LABELS,
    METHODS,
    N_SEEDS,
    BlindTrial,
    StudyError,
    Trial,
    build_trials,
)

__all__ = ["DECOY", "METHOD1", "METHOD2", "METHOD_LABELS", "METHODS", "K_PER_METHOD", "N_SEEDS", "BlindTrial",
           "PairedTest",
           "StudyError", "StudyResults", "StudyStore", "Trial", "build_trials"]

SCHEMA_VERSION = 1
_ID_RE = re.compile(r"^[\w.\-@+]{1,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    participant TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS seeds (
    participant TEXT NOT NULL REFERENCES participants(participant),
    position    INTEGER NOT NULL,
    track_id    TEXT NOT NULL,
    PRIMARY KEY (participant, position)
);
CREATE TABLE IF NOT EXISTS trials (
    participant TEXT NOT NULL REFERENCES participants(participant),
    position    INTEGER NOT NULL,
    track_id    TEXT NOT NULL,
    PRIMARY KEY (participant, position),
    UNIQUE (participant, track_id)
);
CREATE TABLE IF NOT EXISTS trial_sources (
    participant TEXT NOT NULL,
    track_id    TEXT NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('method1', 'method2', 'decoy')),
    rank        INTEGER NOT NULL,
    PRIMARY KEY (participant, track_id, method),
    FOREIGN KEY (participant, track_id) REFERENCES trials(participant, track_id)
);
CREATE TABLE IF NOT EXISTS answers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    participant TEXT NOT NULL,
    track_id    TEXT NOT NULL,
    liked       INTEGER NOT NULL CHECK (liked IN (0, 1)),
    answered_at TEXT NOT NULL,
    FOREIGN KEY (participant, track_id) REFERENCES trials(participant, track_id)
);
CREATE INDEX IF NOT EXISTS answers_by_trial ON answers(participant, track_id, id);
"""



def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class StudyStore:
    """The study database. Every public method opens its own short connection,
    so one store can be shared by threads (Streamlit sessions) and processes."""

    def __init__(self, path: str | Path, create: bool = True, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout
        if not create and not self.path.is_file():
            raise StudyError(f"no study database at {self.path}")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    # -- connections ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        con = None
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            # FULL: a commit is on disk before answer() returns (WAL alone already
            # survives a killed process; FULL also survives power loss).
            con.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            if con is not None:
                con.close()
            raise StudyError(f"cannot open study database {self.path}: {exc}") from None
        return con

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"study database {self.path} unreadable: {exc}") from None
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so two
        writers queue (busy_timeout) instead of failing on lock upgrade."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise StudyError(f"study database rejected the write: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"study database {self.path} unusable: {exc}") from None
        finally:
            con.close()

    def _init_schema(self) -> None:
        con = self._connect()
        try:
            for attempt in range(50):
                try:
                    # Persistent: once set, every later connection uses WAL.
                    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError:  # another process is switching it
                    time.sleep(0.05 * (attempt + 1))
            else:
                raise StudyError(f"study database {self.path} is locked")
            if str(mode).lower() != "wal":
                raise StudyError(f"study database {self.path}: cannot use WAL mode ({mode})")
            con.execute("BEGIN IMMEDIATE")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise StudyError(f"study database {self.path} is from a newer version "
                                 f"(schema {version} > {SCHEMA_VERSION})")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"study database {self.path} unusable: {exc}") from None
        finally:
            con.close()

    # -- writing ----------------------------------------------------------

    def enroll(self, seeds: Sequence[str], method1_ids: Sequence[str],
               method2_ids: Sequence[str], decoy_ids: Sequence[str],
               rng: np.random.Generator | int | None = None, participant: str | None = None,
               note: str = "", n_seeds: int | None = N_SEEDS,
               n_decoys: int | None = None) -> str:
        """Add a participant with their seeds and blind trial list; returns the id.

        All of it is one transaction: a participant never exists without the
        trial list. ``participant`` defaults to a fresh random id; a given one
        must be new (1–64 letters, digits, ``._-@+``). ``n_seeds=None`` skips
        the seed-count check (the paper uses 5).
        """
        seeds = [str(s) for s in seeds]
        if n_seeds is not None and len(seeds) != n_seeds:
            raise StudyError(f"pick exactly {n_seeds} seed songs ({len(seeds)} given)")
        if len(set(seeds)) != len(seeds):
            raise StudyError("the seed songs must be different")
        pid = participant if participant is not None else f"p-{uuid.uuid4().hex[:12]}"
        if not _ID_RE.match(pid):
            raise StudyError("participant id must be 1-64 letters, digits or ._-@+")
        trials = build_trials(pid, seeds, method1_ids, method2_ids, decoy_ids, rng, n_decoys)
        with self._write() as con:
            if con.execute("SELECT 1 FROM participants WHERE participant = ?", (pid,)).fetchone():
                raise StudyError(f"participant {pid} already exists")
            con.execute("INSERT INTO participants (participant, created_at, note) VALUES (?, ?, ?)",
                        (pid, _now(), note))
            con.executemany("INSERT INTO seeds VALUES (?, ?, ?)",
                            [(pid, i, s) for i, s in enumerate(seeds)])
            con.executemany("INSERT INTO trials VALUES (?, ?, ?)",
                            [(pid, t.position, t.track_id) for t in trials])
            con.executemany("INSERT INTO trial_sources VALUES (?, ?, ?, ?)",
                            [(pid, t.track_id, m, r) for t in trials for m, r in t.ranks.items()])
        return pid

    def answer(self, participant: str, track_id: str, liked: bool) -> int:
        """Record like (``True``) or dislike (``False``) with the time; returns its row id.

        Committed when this returns. Answering again adds a row; the latest counts.
        """
        if not isinstance(liked, (bool, np.bool_)):
            raise StudyError(f"liked must be True or False, not {liked!r}")
        with self._write() as con:
            if not con.execute("SELECT 1 FROM trials WHERE participant = ? AND track_id = ?",
                               (participant, str(track_id))).fetchone():
                raise StudyError(f"track {track_id} is not in the list of participant {participant}")
            cur = con.execute("INSERT INTO answers (participant, track_id, liked, answered_at) "
                              "VALUES (?, ?, ?, ?)", (participant, str(track_id), int(liked), _now()))
            return int(cur.lastrowid)

    # -- reading ----------------------------------------------------------

    def participants(self) -> list[str]:
        """Participant ids, oldest first."""
        with self._read() as con:
            return [r[0] for r in con.execute(
                "SELECT participant FROM participants ORDER BY created_at, rowid")]

    def seeds(self, participant: str) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute(
                "SELECT track_id FROM seeds WHERE participant = ? ORDER BY position", (participant,))]

    def trials(self, participant: str) -> list[BlindTrial]:
        """The participant's list in its shuffled order, with current answers.

        Deliberately carries no method: the page cannot leak it.
        """
        with self._read() as con:
            rows = con.execute(
                """SELECT t.position, t.track_id,
                          (SELECT a.liked FROM answers a WHERE a.participant = t.participant
                             AND a.track_id = t.track_id ORDER BY a.id DESC LIMIT 1)
                   FROM trials t WHERE t.participant = ? ORDER BY t.position""",
                (participant,)).fetchall()
        if not rows and participant not in self.participants():
            raise StudyError(f"unknown participant {participant}")
        return [BlindTrial(pos, tid, None if liked is None else bool(liked))
                for pos, tid, liked in rows]

    def progress(self, participant: str) -> tuple[int, int]:
        """(answered, total) trials of a participant."""
        trials = self.trials(participant)
        return sum(t.liked is not None for t in trials), len(trials)

    def count_answers(self) -> int:
        """Every answer row ever written (changes of mind included)."""
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def revision(self) -> tuple[int, int, int]:
        """Changes whenever an answer or a participant is written: (answer rows,
        last answer id, participants); a key for caching :meth:`results`."""
        with self._read() as con:
            return tuple(int(v or 0) for v in con.execute(
                "SELECT (SELECT COUNT(*) FROM answers), (SELECT MAX(id) FROM answers), "
                "(SELECT COUNT(*) FROM participants)").fetchone())

    def table(self) -> pd.DataFrame:
        """Long table, one row per trial and source method (a track both methods
        recommended appears once per method): participant, created_at, seeds,
        position, track_id, method, rank, liked (1/0, <NA> if unanswered),
        answered_at, n_answers."""
        query = """
            WITH latest AS (
                SELECT participant, track_id, MAX(id) AS id, COUNT(*) AS n_answers
                FROM answers GROUP BY participant, track_id)
            SELECT p.participant, p.created_at,
                   (SELECT group_concat(track_id, ';') FROM
                        (SELECT track_id FROM seeds s WHERE s.participant = p.participant
                         ORDER BY position)) AS seeds,
                   t.position, t.track_id, ts.method, ts.rank,
                   a.liked, a.answered_at, COALESCE(l.n_answers, 0) AS n_answers
            FROM participants p
            JOIN trials t ON t.participant = p.participant
            JOIN trial_sources ts ON ts.participant = t.participant AND ts.track_id = t.track_id
            LEFT JOIN latest l ON l.participant = t.participant AND l.track_id = t.track_id
            LEFT JOIN answers a ON a.id = l.id
            ORDER BY p.created_at, p.rowid, t.position, ts.method"""
        with self._read() as con:
            df = pd.read_sql_query(query, con)
        df["liked"] = df["liked"].astype("Int64")
        return df

    def results(self) -> StudyResults:
        """Likes per method per participant, the per-method summary and the
        paired tests (:func:`core.recommend.study_stats.study_results`)."""
        return study_results(self.table())

    def export_csv(self, dest: str | Path | io.TextIOBase | None = None,
                   what: str = "answers", results: StudyResults | None = None) -> str | None:
        """CSV of :meth:`table` (``what="answers"``), of the per-participant
        likes (``"per_participant"``), of the paired per-participant rates
        (``"paired"``) or of every result figure (``"report"``: like rates and
        decoy-adjusted rates with 95 % CIs, the paired tests, the power note).
        ``results``: :meth:`results` if already computed. Returns the text when
        ``dest`` is None."""
        if what in ("per_participant", "paired", "report") and results is None:
            results = self.results()
        if what == "answers":
            df = self.table()
        elif what == "per_participant":
            df = results.per_participant
        elif what == "paired":
            df = results.paired
        elif what == "report":
            df = results.report()
        else:
            raise StudyError(f"unknown export {what!r} (answers, per_participant, paired or report)")
        text = df.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        if dest is None:
            return text
        if isinstance(dest, (str, Path)):
            atomic_write_text(dest, text)
        else:
            dest.write(text)
        return None
