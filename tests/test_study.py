"""core.recommend.study: the study store (enrolment, answers, results,
exports, crash and concurrency safety) and ``python -m core study-results``.
(The trial list: tests/test_study_trials.py; the statistics: tests/test_study_stats.py.)"""

from __future__ import annotations

import dataclasses
import io
import math
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy import stats

from core.cli.main import main
from core.recommend.study import StudyStore
from core.recommend.study_stats import paired_test, participants_needed
from core.recommend.study_trials import DECOY, METHOD1, METHOD2, BlindTrial, StudyError, build_trials

CATALOG = [f"t{i:03d}" for i in range(200)]
SEEDS = CATALOG[:5]
M1 = CATALOG[10:20]
M2 = CATALOG[15:25]   # five tracks in common with M1


@pytest.fixture
def store(tmp_path) -> StudyStore:
    return StudyStore(tmp_path / "study.sqlite")


def _methods(store: StudyStore, pid: str) -> dict[str, set[str]]:
    """Ground truth the app never sees: track → methods it came from."""
    t = store.table()
    t = t[t["participant"] == pid]
    return t.groupby("track_id")["method"].agg(set).to_dict()


# --------------------------------------------------------------------------- store


def test_enroll_stores_seeds_and_a_blind_list(store):
    pid = store.enroll(SEEDS, M1, M2, CATALOG, rng=0)
    assert store.participants() == [pid] and pid.startswith("p-")
    assert store.seeds(pid) == SEEDS
    trials = store.trials(pid)
    assert trials == [BlindTrial(t.position, t.track_id) for t in
                      build_trials(pid, SEEDS, M1, M2, CATALOG, rng=0)]
    # Nothing the page receives says where a track came from.
    assert [f.name for f in dataclasses.fields(BlindTrial)] == ["position", "track_id", "liked"]
    assert store.progress(pid) == (0, 25)


def test_enroll_validates(store):
    with pytest.raises(StudyError, match="exactly 5 seed songs \\(4 given\\)"):
        store.enroll(SEEDS[:4], M1, M2, CATALOG)
    with pytest.raises(StudyError, match="must be different"):
        store.enroll([SEEDS[0]] * 5, M1, M2, CATALOG, n_seeds=5)
    with pytest.raises(StudyError, match="participant id"):
        store.enroll(SEEDS, M1, M2, CATALOG, participant="../x; DROP TABLE")
    store.enroll(SEEDS, M1, M2, CATALOG, participant="alice")
    with pytest.raises(StudyError, match="participant alice already exists"):
        store.enroll(SEEDS, M1, M2, CATALOG, participant="alice")
    assert store.participants() == ["alice"]   # the failed enrolments left nothing
    assert store.enroll(SEEDS[:3], M1, M2, CATALOG, n_seeds=None, participant="bob") == "bob"


def test_answers_latest_counts_and_history_is_kept(store):
    pid = store.enroll(SEEDS, M1, M2, CATALOG, rng=0)
    first, second = store.trials(pid)[:2]
    store.answer(pid, first.track_id, True)
    store.answer(pid, second.track_id, True)
    store.answer(pid, second.track_id, False)            # changed their mind
    trials = store.trials(pid)
    assert (trials[0].liked, trials[1].liked, trials[2].liked) == (True, False, None)
    assert store.progress(pid) == (2, 25)
    assert store.count_answers() == 3
    row = store.table().query("track_id == @second.track_id").iloc[0]
    assert row["liked"] == 0 and row["n_answers"] == 2 and row["answered_at"].endswith("+00:00")


def test_answer_validates(store):
    pid = store.enroll(SEEDS, M1, M2, CATALOG, rng=0)
    with pytest.raises(StudyError, match="not in the list of participant"):
        store.answer(pid, SEEDS[0], True)
    with pytest.raises(StudyError, match="not in the list"):
        store.answer("nobody", M1[0], True)
    with pytest.raises(StudyError, match="True or False"):
        store.answer(pid, M1[0], "yes")
    with pytest.raises(StudyError, match="unknown participant"):
        store.trials("nobody")
    assert store.count_answers() == 0


def test_store_reopens_and_refuses_garbage(tmp_path):
    db = tmp_path / "study.sqlite"
    pid = StudyStore(db).enroll(SEEDS, M1, M2, CATALOG, rng=0)
    assert StudyStore(db, create=False).participants() == [pid]
    with pytest.raises(StudyError, match="no study database"):
        StudyStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StudyError, match="junk.sqlite"):
        StudyStore(junk)


# --------------------------------------------------------------------------- results


def _run_study(store: StudyStore, like_prob: dict[str, list[float]]) -> list[str]:
    """Participants answer by a fixed rule: participant i likes the first
    ``round(p * n)`` tracks of each method's list (decided by true source)."""
    pids = []
    for i in range(len(like_prob[METHOD1])):
        pid = store.enroll(SEEDS, CATALOG[10:20], CATALOG[30:40], CATALOG, rng=i,
                           participant=f"p{i}")
        table = store.table().query("participant == @pid").set_index("track_id")
        for t in store.trials(pid):
            m, rank = table.loc[t.track_id, ["method", "rank"]]
            store.answer(pid, t.track_id, bool(rank <= round(like_prob[m][i] * 10)))
        pids.append(pid)
    return pids


def test_results_likes_per_method_and_paired_test(store):
    rates = {METHOD1: [0.3, 0.5, 0.4, 0.6], METHOD2: [0.6, 0.7, 0.4, 0.9],
             DECOY: [0.1, 0.2, 0.1, 0.3]}
    pids = _run_study(store, rates)
    res = store.results()
    per = res.per_participant
    assert list(per.columns) == ["participant", "method", "shown", "answered", "likes", "like_rate"]
    assert list(per["participant"]) == [p for p in pids for _ in range(3)]
    assert list(per["method"]) == [METHOD1, METHOD2, DECOY] * 4
    assert (per["shown"] == 10).all() and (per["answered"] == 10).all()
    for m, values in rates.items():
        got = per[per["method"] == m]
        assert list(got["likes"]) == [round(v * 10) for v in values]
        assert np.allclose(got["like_rate"], values)
    summary = res.summary.set_index("method")
    assert summary.loc[METHOD2, "likes"] == 26 and summary.loc[METHOD2, "like_rate"] == 0.65

    t = res.main_test
    a, b = np.array(rates[METHOD1]), np.array(rates[METHOD2])
    ref = stats.ttest_rel(a, b)
    diff = a - b
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert (t.a, t.b, t.n) == (METHOD1, METHOD2, 4)
    assert t.mean_diff == pytest.approx(diff.mean())
    assert t.t == pytest.approx(ref.statistic) and t.p == pytest.approx(ref.pvalue)
    assert t.d_z == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert (t.ci_low, t.ci_high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert t.note == ""
    assert set(res.tests) == {"method1 vs method2", "method1 vs decoy", "method2 vs decoy"}
    assert res.tests["method2 vs decoy"].mean_diff == pytest.approx(0.65 - 0.175)
    text = res.describe()
    assert "participants: 4" in text and "d_z=" in text and "Random decoy" in text


def test_paired_test_edge_cases(store):
    assert store.results().main_test.note.startswith("needs answers from at least 2")
    empty = store.results()
    assert empty.n_participants == 0 and empty.per_participant.empty
    pid = store.enroll(SEEDS, M1, M2, CATALOG, rng=0)
    res = store.results()
    assert res.n_participants == 1 and math.isnan(res.main_test.t)     # nothing answered
    per = pd.DataFrame({"participant": ["a", "a", "b", "b"], "method": [METHOD1, METHOD2] * 2,
                        "answered": [5] * 4, "like_rate": [0.6, 0.4, 0.8, 0.6]})
    same = paired_test(per)
    assert same.note.startswith("every participant has the same difference")
    assert same.mean_diff == pytest.approx(0.2) and math.isnan(same.p)
    assert same.to_dict()["p"] is None
    assert pid in store.participants()


def test_export_csv(store, tmp_path):
    pid = store.enroll(SEEDS, M1, M2, CATALOG, rng=0)
    tr = store.trials(pid)
    store.answer(pid, tr[0].track_id, True)
    text = store.export_csv()
    df = pd.read_csv(io.StringIO(text))
    assert list(df.columns) == ["participant", "created_at", "seeds", "position", "track_id",
                                "method", "rank", "liked", "answered_at", "n_answers"]
    assert len(df) == 30                       # 25 trials, 5 of them counted for both methods
    assert (df["seeds"] == ";".join(SEEDS)).all()
    assert df["liked"].notna().sum() == len(_methods(store, pid)[tr[0].track_id])
    out = tmp_path / "out" / "answers.csv"
    store.export_csv(out)
    assert out.read_text() == text
    per = pd.read_csv(io.StringIO(store.export_csv(what="per_participant")))
    assert list(per["method"]) == [METHOD1, METHOD2, DECOY]
    with pytest.raises(StudyError, match="unknown export"):
        store.export_csv(what="everything")


# --------------------------------------------------------------------------- CLI


def test_cli_study_results(store, tmp_path, capsys):
    _run_study(store, {METHOD1: [0.2, 0.4, 0.3], METHOD2: [0.5, 0.6, 0.6],
                       DECOY: [0.1, 0.1, 0.2]})
    out_csv = tmp_path / "answers.csv"
    assert main(["study-results", "--db", str(store.path), "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr()
    assert "participants: 3" in printed.out and "Method 1 (cosine) vs Method 2" in printed.out
    assert len(pd.read_csv(out_csv)) == 3 * 30
    assert main(["study-results", "--db", str(store.path), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["participants"] == 3
    assert data["tests"]["method1 vs method2"]["n"] == 3


def test_cli_study_results_missing_db(tmp_path, capsys):
    assert main(["study-results", "--db", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study database" in err
    assert not (tmp_path / "none.sqlite").exists()


# --------------------------------------------------------------------------- paired table, adjusted, power


def test_paired_table_and_decoy_adjusted_rates(store):
    rates = {METHOD1: [0.3, 0.5, 0.4, 0.6], METHOD2: [0.6, 0.7, 0.4, 0.9],
             DECOY: [0.1, 0.2, 0.1, 0.3]}
    pids = _run_study(store, rates)
    res = store.results()
    paired = res.paired
    assert list(paired["participant"]) == pids
    assert np.allclose(paired[METHOD1], rates[METHOD1]) and np.allclose(paired[DECOY], rates[DECOY])
    m1, m2, dec = (np.array(rates[m]) for m in (METHOD1, METHOD2, DECOY))
    assert np.allclose(paired["method1_minus_method2"], m1 - m2)
    assert np.allclose(paired["method2_adjusted"], m2 - dec)
    adj = res.adjusted.set_index("method")
    # Like rate: mean over participants with a t-interval.
    half = stats.t.ppf(0.975, 3) * m1.std(ddof=1) / 2
    assert adj.loc[METHOD1, "like_rate"] == pytest.approx(m1.mean())
    assert (adj.loc[METHOD1, "ci_low"], adj.loc[METHOD1, "ci_high"]) == pytest.approx(
        (m1.mean() - half, m1.mean() + half))
    # Decoy-adjusted: like rate minus the same participant's decoy rate, paired.
    d = m2 - dec
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert adj.loc[METHOD2, "adjusted_like_rate"] == pytest.approx(d.mean())
    assert (adj.loc[METHOD2, "adjusted_ci_low"], adj.loc[METHOD2, "adjusted_ci_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half))
    assert adj.loc[METHOD2, "adjusted_p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert math.isnan(adj.loc[DECOY, "adjusted_like_rate"])
    text = res.describe()
    assert "decoy-adjusted like rate" in text and "participants" in res.power["text"]


def test_power_note_and_report_csv(store, tmp_path, capsys):
    rates = {METHOD1: [0.3, 0.5, 0.4, 0.6], METHOD2: [0.6, 0.7, 0.4, 0.9],
             DECOY: [0.1, 0.2, 0.1, 0.3]}
    _run_study(store, rates)
    res = store.results()
    t = res.main_test
    assert res.power["n_needed"] == participants_needed(t.d_z) and res.power["n"] == 4
    assert f"about {res.power['n_needed']} participants" in res.power["text"]
    rep = pd.read_csv(io.StringIO(store.export_csv(what="report")))
    assert list(rep.columns) == ["quantity", "what", "estimate", "ci_low", "ci_high", "n", "t", "p", "d_z", "note"]
    main_row = rep[(rep["quantity"] == "paired_t") & (rep["what"] == "method1 vs method2")].iloc[0]
    assert main_row["p"] == pytest.approx(t.p) and main_row["d_z"] == pytest.approx(t.d_z)
    assert set(rep["quantity"]) == {"like_rate", "decoy_adjusted_like_rate", "paired_t",
                                    "participants_needed_80pct_power"}
    paired = pd.read_csv(io.StringIO(store.export_csv(what="paired")))
    assert len(paired) == 4 and "method1_adjusted" in paired
    out = tmp_path / "report.csv"
    assert main(["study-results", "--db", str(store.path), "--report-csv", str(out),
                 "--paired-csv", str(tmp_path / "paired.csv"), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["power"]["n_needed"] == res.power["n_needed"] and len(data["adjusted"]) == 3
    assert len(pd.read_csv(out)) == len(rep) and len(pd.read_csv(tmp_path / "paired.csv")) == 4
    # Too few answers: the note says why instead of a number.
    empty = StudyStore(tmp_path / "empty.sqlite").results()
    assert empty.power["n_needed"] is None and "not computable" in empty.power["text"]
    assert empty.paired.empty and len(empty.adjusted) == 3


# --------------------------------------------------------------------------- crash and concurrency safety


_WRITER = r"""
import sys
import numpy as np
from core.recommend.study import StudyStore
store = StudyStore(sys.argv[1])
catalog = [f"t{i}" for i in range(400)]
rng = np.random.default_rng(0)
k = 0
while True:
    seeds = [catalog[(5 * k + j) % 400] for j in range(5)]
    recs = [t for t in catalog if t not in seeds]
    pid = store.enroll(seeds, recs[:10], recs[5:15], catalog, rng=rng, n_decoys=200)
    print("enrolled", pid, flush=True)
    for t in store.trials(pid)[:20]:
        store.answer(pid, t.track_id, bool(rng.integers(2)))
        print("answered", pid, t.track_id, flush=True)
    k += 1
"""


def test_study_db_survives_a_killed_writer(tmp_path):
    """SIGKILL a process that is writing as fast as it can: every write it
    reported committed is there, the file is intact, and no participant is
    left without a complete trial list (enrolment is one transaction)."""
    db = tmp_path / "study.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported = []
    try:
        for line in proc.stdout:
            reported.append(line.split())
            if len(reported) >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    store = StudyStore(db)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    enrolled = [r[1] for r in reported if r[0] == "enrolled"]
    answered = [(r[1], r[2]) for r in reported if r[0] == "answered"]
    pids = store.participants()
    assert set(enrolled) <= set(pids) and len(pids) <= len(enrolled) + 1
    for pid in pids:
        assert len(store.seeds(pid)) == 5
        assert len(store.trials(pid)) == 215  # 15 distinct recommendations + 200 decoys
    table = store.table()
    stored = set(zip(table.loc[table["liked"].notna(), "participant"],
                     table.loc[table["liked"].notna(), "track_id"]))
    assert set(answered) <= stored
    assert len(answered) <= store.count_answers() <= len(answered) + 1
    # And the database keeps working after the crash.
    store.answer(pids[0], store.trials(pids[0])[-1].track_id, True)


def _enroll_one(store: StudyStore, pid: str) -> list[str]:
    catalog = [f"t{i}" for i in range(60)]
    store.enroll(catalog[:5], catalog[5:15], catalog[10:20], catalog, rng=1, participant=pid)
    return [t.track_id for t in store.trials(pid)]


def test_concurrent_threads_lose_no_likes(tmp_path):
    store = StudyStore(tmp_path / "study.sqlite")
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            tracks = _enroll_one(store, f"thread-{i}")
            for n in range(24):
                store.answer(f"thread-{i}", tracks[n % len(tracks)], n % 3 != 0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count_answers() == 8 * 24
    assert len(store.participants()) == 8
    per = store.results().per_participant
    assert per.groupby("participant")["answered"].sum().min() > 0


_PROC_WRITER = r"""
import sys
from core.recommend.study import StudyStore
store = StudyStore(sys.argv[1])
pid, n = sys.argv[2], int(sys.argv[3])
tracks = [t.track_id for t in store.trials(pid)]
for i in range(n):
    store.answer(pid, tracks[i % len(tracks)], True)
"""


def test_concurrent_processes_lose_no_likes(tmp_path):
    db = tmp_path / "study.sqlite"
    store = StudyStore(db)
    pids = [f"proc-{i}" for i in range(3)]
    for pid in pids:
        _enroll_one(store, pid)
    procs = [subprocess.Popen([sys.executable, "-c", _PROC_WRITER, str(db), pid, "40"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for pid in pids]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert store.count_answers() == 3 * 40
