"""Faults: the server killed (SIGKILL) during the background indexing and
during a study answer, then restarted; a full disk under the index folder.

* After a kill the index opens at its last committed snapshot and the next
  run resumes; the study database passes ``PRAGMA integrity_check`` and holds
  every answer that was acknowledged; the user sees a plain line (the index
  resuming, "welcome back" on the study), never a traceback.
* A full index disk (a small tmpfs, or a read-only folder where mounting is
  not allowed): the indexing stops with a line that says so, and the last
  good snapshot stays readable.

The real-server test needs Debian's chromium (skipped without it).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_dataset

from benchmarks.browser import CHROMIUM, SCRIPT_DONE, chromium_page, free_port, streamlit_server, wait_rendered
from core.catalog.store import indexed_tracks


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def answers(db: Path) -> dict[tuple[str, str], int]:
    con = sqlite3.connect(db)
    try:
        return {(p, t): n for p, t, n in con.execute(
            "SELECT participant, track_id, COUNT(*) FROM answers GROUP BY 1, 2")}
    finally:
        con.close()


# ------------------------------------------------------------ study store, killed mid-write

WRITER = textwrap.dedent("""
    import sys
    from core.recommend.study import StudyStore
    store = StudyStore(sys.argv[1])
    tracks = [f"t{i}" for i in range(40)]
    pid = store.enroll(tracks[:5], tracks[5:15], tracks[10:20], tracks, rng=0, participant="p-kill")
    print("enrolled", flush=True)
    for i in range(100000):                      # bounded; killed long before the end
        trial = store.trials(pid)[i % 15]
        store.answer(pid, trial.track_id, i % 2 == 0)
        print("ack", trial.track_id, flush=True)  # acknowledged: committed before this line
""")


def test_study_store_killed_mid_answer_keeps_every_acknowledged_answer(tmp_path):
    db = tmp_path / "study.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acked: dict[str, int] = {}
    try:
        assert proc.stdout.readline().strip() == "enrolled"
        for _ in range(60):                       # kill in the middle of the stream of answers
            kind, track = proc.stdout.readline().split()
            acked[track] = acked.get(track, 0) + 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert integrity(db) == "ok"
    stored = answers(db)
    for track, n in acked.items():              # every acknowledged answer is there (one more may be)
        assert stored[("p-kill", track)] >= n
    assert sum(stored.values()) - sum(acked.values()) in (0, 1)
    from core.recommend.study import StudyStore

    assert StudyStore(db).progress("p-kill")[0] == 15   # and the store opens and reads after the kill


# ------------------------------------------------------------ the real server, killed twice

def kill(server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def no_traceback(page, what: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{what}: {boxes.first.inner_text()[:400]}"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
def test_server_killed_during_indexing_and_during_a_study_answer(app_env, tmp_path):
    from core.catalog.store import load_live

    N = 120
    data = make_dataset(tmp_path / "data", per_genre=40, seconds=8.0)   # 120 tracks: four commits
    env = {**app_env, "GENRE_DATA": str(data), "GENRE_INDEX": str(tmp_path / "index"),
           "GENRE_STUDY_DB": str(tmp_path / "study.sqlite"), "GENRE_LIBRARY": str(tmp_path / "library")}
    index, db, port, log = Path(env["GENRE_INDEX"]), Path(env["GENRE_STUDY_DB"]), free_port(), tmp_path / "st.log"
    with chromium_page() as page:
        # 1. Killed while the background indexing runs, after its first commit.
        with streamlit_server(env, log=log, port=port) as srv:
            page.goto(srv.url + "/")                                # the sidebar starts the indexing
            for _ in range(6000):                                   # ≤ 300 s
                if 0 < indexed_tracks(index) < N:
                    break
                time.sleep(0.05)
            kill(srv)
        committed = indexed_tracks(index)
        assert 0 < committed < N, committed
        assert len(load_live(index)) == committed                   # opens at its last committed snapshot
        # 2. Restarted: the user reloads, sees a plain line, and the indexing resumes to the end.
        with streamlit_server(env, log=log, port=port) as srv:
            page.reload()
            wait_rendered(page)
            no_traceback(page, "after the indexing kill")
            if indexed_tracks(index) < N:                            # the run resumes, and says so
                page.get_by_text("The last indexing run was interrupted").wait_for(timeout=60_000)
            for _ in range(480):                                     # ≤ 240 s
                if f"Index ready: {N} tracks" in sidebar_text(page):
                    break
                page.wait_for_timeout(500)
            assert f"Index ready: {N} tracks" in sidebar_text(page)
            assert len(load_live(index)) == N
            # 3. A participant answers one trial (acknowledged), then the server dies during the next.
            page.locator('[data-testid="stSidebarNav"] a', has_text="Recommender").first.click()
            page.get_by_role("button", name="Surprise me").click()
            page.get_by_text("Method 1 · sound only").wait_for(timeout=120_000)
            page.locator('[data-testid="stSidebarNav"] a', has_text="Listening study").first.click()
            page.get_by_role("button", name="Start listening").click()
            progress = page.get_by_text(re.compile(r"answered 0 of \d+"))
            progress.wait_for(timeout=120_000)
            page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
            pid = re.search(r"p-[0-9a-f]+", progress.inner_text()).group(0)
            page.locator('[class*="st-key-study_like_"] button').filter(visible=True).first.click()
            page.get_by_text(re.compile(r"answered 1 of \d+")).wait_for(timeout=120_000)   # acknowledged
            page.locator('[class*="st-key-study_dislike_"] button').filter(visible=True).nth(1).click()
            page.wait_for_timeout(30)
            kill(srv)
        assert integrity(db) == "ok"
        stored = answers(db)
        assert sum(n for (p, _), n in stored.items() if p == pid) in (1, 2)   # the acknowledged one, at most one more
        assert all(n == 1 for n in stored.values())
        # 4. Restarted: the participant's link brings them back, with their answers.
        with streamlit_server(env, log=log, port=port) as srv:
            assert f"participant={pid}" in page.url
            page.reload()
            wait_rendered(page)
            no_traceback(page, "after the study kill")
            page.get_by_text("Welcome back").first.wait_for(timeout=60_000)
            assert page.get_by_text(re.compile(rf"answered {sum(stored.values())} of \d+")).count() == 1


# ------------------------------------------------------------ a full disk under the index

@pytest.fixture
def full_folder(tmp_path):
    """A folder whose disk fills up: a 2 MiB tmpfs when this process may mount
    one, else a folder made read-only (as a non-root user)."""
    folder = tmp_path / "index"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted and os.geteuid() == 0:
        pytest.skip("cannot mount a tmpfs here, and root ignores read-only folders")
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    else:
        folder.chmod(0o755)


def test_disk_full_under_the_index_says_so_and_keeps_the_last_snapshot(full_folder, tiny_dataset,
                                                                        tiny_artifacts, tmp_path):
    from core.catalog.indexer import BackgroundIndexer
    from core.catalog.sources import read_catalog
    from core.catalog.store import load_live
    from core.models.artifacts import load_models

    folder, mounted = full_folder
    models = load_models(tiny_artifacts)
    first = BackgroundIndexer(folder, checkpoint=4)
    first.start(read_catalog((str(tiny_dataset),), str(tmp_path / "lib")), models)
    assert first.wait(300).state == "done"
    good = load_live(folder)
    assert len(good) == 18
    # More music arrives, and the disk is full (or the folder read-only).
    from benchmarks.inputs import generate_clips, write_metadata

    more = write_metadata(tmp_path / "more", generate_clips(tmp_path / "more" / "audio", 6, seconds=4.0))
    if mounted:
        with open(folder / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
    else:
        folder.chmod(0o555)
    svc = BackgroundIndexer(folder, checkpoint=4)
    svc.start(read_catalog((str(tiny_dataset), str(more)), str(tmp_path / "lib")), models)
    status = svc.wait(300)
    assert status.state == "failed"
    line = status.line()                                   # what the sidebar shows
    assert "Indexing failed: cannot write to" in line
    assert ("the disk is full" if mounted else "cannot be written") in line
    assert "last complete snapshot (18 tracks)" in line and "Traceback" not in line
    # The last good snapshot stays readable, in this process and in a fresh one.
    assert len(svc.snapshot()) == 18
    again = load_live(folder)
    assert again.version == good.version and len(again) == 18


def test_write_problem_names_full_and_read_only_disks(tmp_path):
    import errno

    from core.files import write_problem

    assert write_problem(OSError(errno.ENOSPC, "No space left on device"), tmp_path) == \
        f"cannot write to {tmp_path}: the disk is full (no space left)"
    assert "read-only file system" in write_problem(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert "disk is full" in write_problem(sqlite3.OperationalError("database or disk is full"), tmp_path)
    assert write_problem(OSError(errno.ENOENT, "No such file"), tmp_path) is None
    assert write_problem(ValueError("x"), tmp_path) is None


def test_a_run_left_by_a_dead_process_counts_as_interrupted(tmp_path):
    from core.catalog.indexer import RUNNING, BackgroundIndexer

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "index").mkdir()
    assert BackgroundIndexer(tmp_path / "index").interrupted_at is None        # no marker: a clean start
    (tmp_path / "index" / RUNNING).write_text(f"{os.getpid()} 0\n")
    assert BackgroundIndexer(tmp_path / "index").interrupted_at is None        # a live writer: not interrupted
    (tmp_path / "index" / RUNNING).write_text(f"{dead.pid} 0\n")
    assert BackgroundIndexer(tmp_path / "index").interrupted_at == 0           # its writer is gone
