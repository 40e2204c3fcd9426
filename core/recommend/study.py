"""Listening study: a blind test of the two recommenders, kept in SQLite.

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
import math
import os
import re
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from core.errors import GenreError

METHOD1, METHOD2, DECOY = "method1", "method2", "decoy"
METHODS = (METHOD1, METHOD2, DECOY)
METHOD_LABELS = {METHOD1: "Method 1 (cosine)", METHOD2: "Method 2 (cosine + genre)",
                 DECOY: "Random decoy"}
N_SEEDS = 5
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


class StudyError(GenreError, ValueError):
    """Bad study input or an unusable database; ``str(err)`` is one line."""


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Trial:
    """One track of a participant's list, with where it came from (never shown)."""

    participant: str
    position: int                    # order in the shuffled list, from 0
    track_id: str
    ranks: dict[str, int]            # method → rank in that method's list (from 1)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if m in self.ranks)


@dataclass(frozen=True)
class BlindTrial:
    """What the app may show: the track and the current answer, not the method."""

    position: int
    track_id: str
    liked: bool | None = None        # None until answered


def build_trials(participant: str, seeds: Sequence[str], method1_ids: Sequence[str],
                 method2_ids: Sequence[str], decoy_ids: Sequence[str],
                 rng: np.random.Generator | int | None = None,
                 n_decoys: int | None = None) -> list[Trial]:
    """The blind, shuffled trial list of one participant (pure; nothing stored).

    Seeds are dropped from every list and duplicates within a list keep their
    first rank. A track both methods recommend is one trial counted for both.
    ``n_decoys`` (default: the longer recommendation list's length) decoys are
    drawn at random from ``decoy_ids`` after removing seeds and recommended
    tracks; fewer if not enough remain.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    seed_set = {str(s) for s in seeds}
    ranks: dict[str, dict[str, int]] = {}
    for method, ids in ((METHOD1, method1_ids), (METHOD2, method2_ids)):
        rank = 0
        for tid in map(str, ids):
            if tid in seed_set or method in ranks.get(tid, {}):
                continue
            rank += 1
            ranks.setdefault(tid, {})[method] = rank
        if rank == 0:
            raise StudyError(f"{METHOD_LABELS[method]} gave no tracks besides the seeds")
    pool = list(dict.fromkeys(str(t) for t in decoy_ids if str(t) not in seed_set
                              and str(t) not in ranks))
    want = n_decoys if n_decoys is not None else max(
        sum(METHOD1 in r for r in ranks.values()), sum(METHOD2 in r for r in ranks.values()))
    if want < 0:
        raise StudyError(f"n_decoys must be >= 0, not {want}")
    chosen = [pool[i] for i in rng.permutation(len(pool))[:want]] if pool else []
    for k, tid in enumerate(chosen, start=1):
        ranks[tid] = {DECOY: k}
    order = list(ranks)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    return [Trial(participant, pos, tid, dict(ranks[tid])) for pos, tid in enumerate(shuffled)]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of per-participant like rates, ``a`` minus ``b``."""

    a: str
    b: str
    n: int                           # participants with answers for both
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float                    # 95 % CI of the mean difference (t distribution)
    ci_high: float
    t: float
    p: float                         # two-sided, scipy.stats.ttest_rel
    d_z: float                       # Cohen's d_z = mean(diff) / sd(diff)
    note: str = ""                   # why a value is NaN, if it is

    def describe(self) -> str:
        """One line for people, e.g. for the results page or the CLI."""
        head = (f"{METHOD_LABELS.get(self.a, self.a)} vs {METHOD_LABELS.get(self.b, self.b)}: "
                f"like rate {_fmt(self.mean_a)} vs {_fmt(self.mean_b)} (n={self.n})")
        if self.note:
            return f"{head}; {self.note}"
        return (f"{head}; difference {self.mean_diff:+.3f} [95% CI {self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], t={self.t:.2f}, p={self.p:.3g}, d_z={self.d_z:.2f}")

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.__dict__.items()}


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def paired_test(per_participant: pd.DataFrame, a: str = METHOD1, b: str = METHOD2,
                measure: str = "like_rate") -> PairedTest:
    """Paired t-test, Cohen's d_z and 95 % CI of ``measure`` between methods.

    Only participants who answered at least one track of both methods count.
    """
    from scipy import stats

    nan = float("nan")
    wide = per_participant[per_participant["answered"] > 0].pivot(
        index="participant", columns="method", values=measure) \
        if len(per_participant) else pd.DataFrame()
    if a not in wide or b not in wide:
        pairs = np.empty((0, 2))
    else:
        pairs = wide[[a, b]].dropna().to_numpy(dtype=float)
    n = len(pairs)
    mean_a = float(pairs[:, 0].mean()) if n else nan
    mean_b = float(pairs[:, 1].mean()) if n else nan
    if n < 2:
        return PairedTest(a, b, n, mean_a, mean_b, mean_a - mean_b if n else nan,
                          nan, nan, nan, nan, nan,
                          note="needs answers from at least 2 participants")
    diff = pairs[:, 0] - pairs[:, 1]
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    # Rates like 0.6-0.4 and 0.8-0.6 differ in the last bits only: that is no variance.
    if sd <= 1e-9:
        return PairedTest(a, b, n, mean_a, mean_b, mean, mean, mean, nan, nan, nan,
                          note="every participant has the same difference (no variance)")
    res = stats.ttest_rel(pairs[:, 0], pairs[:, 1])
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return PairedTest(a, b, n, mean_a, mean_b, mean, mean - half, mean + half,
                      float(res.statistic), float(res.pvalue), mean / sd)


POWER_TARGET = 0.8
ALPHA = 0.05


def paired_t_power(d_z: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with ``n`` participants when the true
    standardised effect is ``d_z`` (noncentral t)."""
    from scipy import stats

    if n < 2 or not math.isfinite(d_z):
        return float("nan")
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = d_z * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def participants_needed(d_z: float, power: float = POWER_TARGET, alpha: float = ALPHA,
                        n_max: int = 100_000) -> int | None:
    """Smallest number of participants whose paired t-test reaches ``power``
    for effect ``d_z`` (``None`` when ``d_z`` is 0/undefined or above ``n_max``)."""
    if not math.isfinite(d_z) or abs(d_z) < 1e-9:
        return None
    lo, hi = 2, 2
    while paired_t_power(d_z, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > n_max:
            return None
    while lo < hi:                      # power grows with n: bisect
        mid = (lo + hi) // 2
        if paired_t_power(d_z, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def power_note(test: PairedTest, power: float = POWER_TARGET, alpha: float = ALPHA) -> dict:
    """How many participants the observed difference needs: ``n_needed`` at
    ``power`` (two-sided paired t, level ``alpha``, taking the observed d_z as
    the true effect), the power the current ``n`` has, and a sentence."""
    d = test.d_z
    n_needed = participants_needed(d, power, alpha) if d == d else None
    now = paired_t_power(d, test.n, alpha) if d == d else float("nan")
    if d != d:
        text = f"Power: not computable yet ({test.note or 'no effect size'})."
    elif n_needed is None:
        text = "Power: the observed difference is zero, so no number of participants would detect it."
    else:
        text = (f"Power: to detect the observed difference ({test.mean_diff:+.3f}, d_z = {d:.2f}) with "
                f"{power:.0%} power at α = {alpha:g} (two-sided paired t-test) you need about "
                f"{n_needed} participants; the current {test.n} give {now:.0%} power.")
    return {"comparison": f"{test.a} vs {test.b}", "d_z": None if d != d else d, "n": test.n,
            "power_now": None if now != now else now, "target_power": power, "alpha": alpha,
            "n_needed": n_needed, "text": text}


def _rate_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over participants."""
    from scipy import stats

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def paired_table(per_participant: pd.DataFrame) -> pd.DataFrame:
    """One row per participant (the paper's paired design): like rate per
    source, ``method1_minus_method2`` and each method's like rate minus the
    participant's own decoy like rate (``*_adjusted``)."""
    cols = ["participant", METHOD1, METHOD2, DECOY, "method1_minus_method2",
            "method1_adjusted", "method2_adjusted"]
    if per_participant.empty:
        return pd.DataFrame(columns=cols)
    answered = per_participant[per_participant["answered"] > 0]
    wide = answered.pivot(index="participant", columns="method", values="like_rate")
    order = list(dict.fromkeys(per_participant["participant"]))
    wide = wide.reindex([p for p in order if p in wide.index])
    for m in METHODS:
        if m not in wide:
            wide[m] = np.nan
    out = wide[list(METHODS)].reset_index()
    out["method1_minus_method2"] = out[METHOD1] - out[METHOD2]
    out["method1_adjusted"] = out[METHOD1] - out[DECOY]
    out["method2_adjusted"] = out[METHOD2] - out[DECOY]
    out.columns.name = None
    return out[cols]


def adjusted_rates(per_participant: pd.DataFrame, tests: dict[str, "PairedTest"]) -> pd.DataFrame:
    """Per method: mean like rate over participants with its 95 % CI, and the
    decoy-adjusted like rate (like rate − the same participant's decoy like
    rate, i.e. how much more than *any* song) with its CI and p-value."""
    rows = []
    for m in METHODS:
        if len(per_participant):
            sub = per_participant[(per_participant["method"] == m) & (per_participant["answered"] > 0)]
        else:
            sub = per_participant
        mean, lo, hi = _rate_ci(sub["like_rate"].to_numpy(float) if len(sub) else np.array([]))
        row = {"method": m, "label": METHOD_LABELS[m], "participants": int(len(sub)),
               "like_rate": mean, "ci_low": lo, "ci_high": hi,
               "adjusted_like_rate": float("nan"), "adjusted_ci_low": float("nan"),
               "adjusted_ci_high": float("nan"), "adjusted_p": float("nan"), "adjusted_n": 0}
        t = tests.get(f"{m} vs {DECOY}")
        if t is not None:
            row.update(adjusted_like_rate=t.mean_diff, adjusted_ci_low=t.ci_low, adjusted_ci_high=t.ci_high,
                       adjusted_p=t.p, adjusted_n=t.n)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class StudyResults:
    """Everything the results view shows."""

    per_participant: pd.DataFrame    # participant, method, shown, answered, likes, like_rate
    summary: pd.DataFrame            # method, label, participants, shown, answered, likes,
    #                                  like_rate (pooled), mean_like_rate (over participants)
    tests: dict[str, PairedTest] = field(default_factory=dict)
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)     # see paired_table()
    adjusted: pd.DataFrame = field(default_factory=pd.DataFrame)   # see adjusted_rates()
    power: dict = field(default_factory=dict)                      # power_note(main_test)

    @property
    def main_test(self) -> PairedTest:
        return self.tests[f"{METHOD1} vs {METHOD2}"]

    @property
    def n_participants(self) -> int:
        return int(self.per_participant["participant"].nunique()) if len(self.per_participant) else 0

    def describe(self) -> str:
        """A short plain-text report."""
        lines = [f"participants: {self.n_participants}"]
        for r in self.summary.itertuples():
            lines.append(f"  {r.label:<28} shown {r.shown:>4}  answered {r.answered:>4}  "
                         f"likes {r.likes:>4}  like rate {_fmt(r.like_rate)}  "
                         f"(mean per participant {_fmt(r.mean_like_rate)})")
        lines.append("paired t-tests over participants (the paper's design):")
        lines += [f"  {t.describe()}" for t in self.tests.values()]
        if len(self.adjusted):
            lines.append("decoy-adjusted like rate (like rate minus the participant's decoy like rate):")
            for r in self.adjusted.itertuples():
                if r.method == DECOY:
                    continue
                lines.append(f"  {r.label:<28} {_fmt(r.adjusted_like_rate)} "
                             f"[95% CI {_fmt(r.adjusted_ci_low)}, {_fmt(r.adjusted_ci_high)}]"
                             f"  p={_fmt(r.adjusted_p)}")
        if self.power:
            lines.append(self.power["text"])
        return "\n".join(lines)

    def report(self) -> pd.DataFrame:
        """Every figure of the results as one long table (the report CSV):
        quantity, method / comparison, estimate, ci_low, ci_high, n, t, p, d_z, note."""
        rows = []
        for r in self.adjusted.itertuples():
            rows.append({"quantity": "like_rate", "what": r.method, "estimate": r.like_rate,
                         "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.participants})
            if r.method != DECOY:
                rows.append({"quantity": "decoy_adjusted_like_rate", "what": r.method,
                             "estimate": r.adjusted_like_rate, "ci_low": r.adjusted_ci_low,
                             "ci_high": r.adjusted_ci_high, "n": r.adjusted_n, "p": r.adjusted_p})
        for name, t in self.tests.items():
            rows.append({"quantity": "paired_t", "what": name, "estimate": t.mean_diff, "ci_low": t.ci_low,
                         "ci_high": t.ci_high, "n": t.n, "t": t.t, "p": t.p, "d_z": t.d_z, "note": t.note})
        if self.power:
            rows.append({"quantity": "participants_needed_80pct_power", "what": self.power["comparison"],
                         "estimate": self.power["n_needed"], "n": self.power["n"], "d_z": self.power["d_z"],
                         "note": self.power["text"]})
        cols = ["quantity", "what", "estimate", "ci_low", "ci_high", "n", "t", "p", "d_z", "note"]
        return pd.DataFrame(rows).reindex(columns=cols)


# --------------------------------------------------------------------------- store


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
        paired tests (method 1 vs method 2, and each method vs the decoys)."""
        df = self.table()
        cols = ["participant", "method", "shown", "answered", "likes", "like_rate"]
        if df.empty:
            per = pd.DataFrame(columns=cols)
        else:
            per = (df.assign(answered=df["liked"].notna().astype(int),
                             likes=df["liked"].fillna(0).astype(int))
                   .groupby(["participant", "method"], sort=False)
                   .agg(shown=("track_id", "size"), answered=("answered", "sum"),
                        likes=("likes", "sum"))
                   .reset_index())
            per["like_rate"] = np.where(per["answered"] > 0,
                                        per["likes"] / per["answered"].where(per["answered"] > 0, 1),
                                        np.nan)
            # Participants in enrolment order, methods in METHODS order.
            order = {pid: i for i, pid in enumerate(dict.fromkeys(df["participant"]))}
            per = per.assign(_p=per["participant"].map(order),
                             _m=per["method"].map({m: i for i, m in enumerate(METHODS)}))
            per = per.sort_values(["_p", "_m"]).reset_index(drop=True)[cols]
        rows = []
        for m in METHODS:
            sub = per[per["method"] == m]
            answered, likes = int(sub["answered"].sum()), int(sub["likes"].sum())
            rows.append({"method": m, "label": METHOD_LABELS[m],
                         "participants": int((sub["answered"] > 0).sum()),
                         "shown": int(sub["shown"].sum()), "answered": answered, "likes": likes,
                         "like_rate": likes / answered if answered else float("nan"),
                         "mean_like_rate": float(sub["like_rate"].mean()) if answered
                         else float("nan")})
        tests = {f"{a} vs {b}": paired_test(per, a, b)
                 for a, b in ((METHOD1, METHOD2), (METHOD1, DECOY), (METHOD2, DECOY))}
        return StudyResults(per_participant=per, summary=pd.DataFrame(rows), tests=tests,
                            paired=paired_table(per), adjusted=adjusted_rates(per, tests),
                            power=power_note(tests[f"{METHOD1} vs {METHOD2}"]))

    def export_csv(self, dest: str | Path | io.TextIOBase | None = None,
                   what: str = "answers") -> str | None:
        """CSV of :meth:`table` (``what="answers"``), of the per-participant
        likes (``"per_participant"``), of the paired per-participant rates
        (``"paired"``) or of every result figure (``"report"``: like rates and
        decoy-adjusted rates with 95 % CIs, the paired tests, the power note).
        Returns the text when ``dest`` is None."""
        if what == "answers":
            df = self.table()
        elif what == "per_participant":
            df = self.results().per_participant
        elif what == "paired":
            df = self.results().paired
        elif what == "report":
            df = self.results().report()
        else:
            raise StudyError(f"unknown export {what!r} (answers, per_participant, paired or report)")
        text = df.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        if dest is None:
            return text
        if isinstance(dest, (str, Path)):
            _atomic_write_text(Path(dest), text)
        else:
            dest.write(text)
        return None


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a CSV.
    (core.models.artifacts has the same helper but imports torch.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
