"""Many listeners at once: the real server under load, measured.

``streamlit run app.py`` on loopback (127.0.0.1) with an empty index of the
data folders, so the background indexing runs while the users do; once the
index has its first tracks, ``users`` headless-Chromium sessions (one
browser, a context per user) each walk :mod:`benchmarks.load_user`'s script
for ``rounds`` rounds at the same time. Recorded (``python -m core bench
--load N`` → ``"load"``):

* ``errors`` (steps that failed or timed out), ``exceptions_on_pages``;
* ``p50_s`` / ``p95_s`` over every page action, and per action;
* ``server_rss_mb``: the server process at ``start`` (after one warm-up user
  walked the script once: models loaded, first analyses cached), ``peak``
  while the users run, ``after`` they closed (once the server's
  disconnected-session TTL has passed and the indexing run ended), and
  ``before_warmup``;
* ``study_answers_written`` (rows in the study database),
  ``study_answers_expected`` (users × rounds × 2), ``study_answers_acknowledged``
  (what the pages showed as saved) and ``study_answers_duplicated``.

:func:`breaking_users` raises N until p95 passes 30 s or errors appear.
Every loop here is bounded in count and time; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.browser import async_chromium, browser_missing, streamlit_server
from benchmarks.config import Log, pct
from benchmarks.first_run import app_env
from benchmarks.load_user import ANSWERS_PER_ROUND, UserLog, walk
from benchmarks.rss import RssSampler
from core.catalog.indexer import RUNNING
from core.catalog.store import indexed_tracks
from core.serve import SERVER_ENV, ServeConfig


@dataclass(frozen=True)
class LoadConfig:
    """The load run's settings (the defaults are the README figures)."""

    users: int = 12
    rounds: int = 2
    batches: int = 1                       # the users, then as many new ones after they closed… (RSS after each)
    step_timeout_s: float = 120.0          # one page action
    run_timeout_s: float = 1800.0          # the whole run, all users
    warm_tracks: int = 32                  # users start once the index has this many (or all) tracks
    session_ttl_s: int = 20                # server.disconnectedSessionTTL: closed sessions freed after it
    trim_every_s: float = ServeConfig().trim_every_s   # the server's MemoryTrimmer period (GENRE_SERVE_TRIM_EVERY_S)
    # After the TTL, before RSS "after": one trimmer period and a little (the server's
    # trimmer shuts down the expired sessions and returns the freed memory).
    settle_s: float = ServeConfig().trim_every_s + 5.0
    after_wait_s: float = 300.0            # at most this long for the indexing run to end before "after"
    breaking_step: int = 6                 # breaking_users raises N by this…
    breaking_max: int = 36                 # …up to this many
    breaking_p95_s: float = 30.0


def snapshot_mb(index_dir: Path) -> float:
    """Size on disk of the live snapshot of ``index_dir`` (MB; about what the
    server holds of the index in memory: its table and matrices)."""
    from core.catalog.store import current_name

    name = current_name(index_dir)
    if name is None:
        return 0.0
    return round(sum(p.stat().st_size for p in (index_dir / name).iterdir() if p.is_file()) / 2**20, 2)


def last_probe(path: Path) -> dict | None:
    """The latest :func:`core.serve.memory_report` line the server's trimmer wrote to ``path``."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    return json.loads(lines[-1]) if lines else None


def catalog_size(data_dirs: list[Path]) -> int:
    from core.catalog.sources import read_catalog

    return len(read_catalog(tuple(str(d) for d in data_dirs), "").tracks)


def study_counts(db: Path, exclude: set[str] = frozenset()) -> tuple[int, int, dict[str, int]]:
    """(answer rows, rows beyond the first per participant and track, answers per
    participant), leaving out the participants in ``exclude`` (the warm-up's)."""
    if not db.is_file():
        return 0, 0, {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT participant, track_id, COUNT(*) FROM answers GROUP BY 1, 2").fetchall()
    finally:
        con.close()
    rows = [r for r in rows if r[0] not in exclude]
    per: dict[str, int] = {}
    for pid, _, n in rows:
        per[pid] = per.get(pid, 0) + n
    return sum(n for *_, n in rows), sum(n - 1 for *_, n in rows), per


async def _users(url: str, clips: list[Path], cfg: LoadConfig) -> list[UserLog]:
    deadline = time.monotonic() + cfg.run_timeout_s
    async with async_chromium() as browser:
        mine = [clips[u * cfg.rounds:(u + 1) * cfg.rounds] for u in range(cfg.users)]
        return list(await asyncio.gather(*(walk(browser, url, mine[u], u, cfg.rounds, cfg.step_timeout_s,
                                                deadline) for u in range(cfg.users))))


async def _warm(url: str, ready, clip: Path, cfg: LoadConfig) -> UserLog:
    """One session opens the app (the models start loading, the sidebar starts
    the background indexing) and stays until ``ready()``; then one user walks
    the script once, so the server's one-time costs (models, first analyses)
    are paid before RSS ``start`` is taken. Bounded by ``cfg.run_timeout_s``."""
    end = time.monotonic() + cfg.run_timeout_s
    async with async_chromium() as browser:
        page = await browser.new_page()
        await page.goto(url + "/", timeout=cfg.step_timeout_s * 1000)
        while not ready():
            if time.monotonic() > end:
                raise TimeoutError(f"load run: the app was not ready within {cfg.run_timeout_s:.0f} s")
            await page.wait_for_timeout(500)
        await page.close()
        return await walk(browser, url, [clip], -1, 1, cfg.step_timeout_s, end)


def load_run(data_dirs: list[Path], artifacts: Path, cfg: LoadConfig = LoadConfig(), log: Log = print,
             clips: list[Path] | None = None) -> dict:
    """Run ``cfg.users`` users for ``cfg.rounds`` rounds against a fresh server
    (see the module docstring); the ``"load"`` record."""
    why = browser_missing()
    if why:
        return {"users": cfg.users, "rounds": cfg.rounds, "note": f"not measured: {why}"}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp_s:
        tmp = Path(tmp_s)
        env = app_env(data_dirs, artifacts, tmp)
        need = cfg.batches * cfg.users * cfg.rounds + 1    # one file per user and round, one for the warm-up
        if clips is None or len(clips) < need:
            from benchmarks.inputs import generate_clips

            clips = generate_clips(tmp / "upload", need, seconds=30.0, seed=7)
        total = catalog_size(data_dirs)
        args = ["--server.disconnectedSessionTTL", str(cfg.session_ttl_s)]
        probe = tmp / "memory_probe.jsonl"      # core.serve.MemoryTrimmer's report after each of its runs
        with streamlit_server({**env, "GENRE_SERVE_PROBE": str(probe),
                               "GENRE_SERVE_TRIM_EVERY_S": str(cfg.trim_every_s)}, log=tmp / "streamlit.log",
                              args=args) as srv:
            index_dir = Path(env["GENRE_INDEX"])
            want = min(cfg.warm_tracks, total)
            cold_mb = RssSampler(srv.proc.pid).now()
            warm = asyncio.run(_warm(srv.url, lambda: indexed_tracks(index_dir) >= want, clips[-1], cfg))
            end = time.monotonic() + cfg.trim_every_s + 5     # the trimmer's first report (bounded)
            while last_probe(probe) is None and time.monotonic() < end:
                time.sleep(0.5)
            with RssSampler(srv.proc.pid) as rss:
                start_mb, start_probe = rss.now(), last_probe(probe)
                at_start = indexed_tracks(index_dir)
                index_mb_start = snapshot_mb(index_dir)
                log(f"load: {cfg.batches} × {cfg.users} users × {cfg.rounds} rounds; index has {at_start} / "
                    f"{total} tracks, server {start_mb:.0f} MB")
                users: list[UserLog] = []
                afters, wall, at_end, indexing_ended = [], 0.0, None, False
                for b in range(cfg.batches):
                    t0 = time.perf_counter()
                    batch = asyncio.run(_users(srv.url, clips[b * cfg.users * cfg.rounds:], cfg))
                    wall += time.perf_counter() - t0
                    users += batch
                    at_end = indexed_tracks(index_dir) if at_end is None else at_end
                    log(f"load: batch {b + 1} done after {wall:.0f} s: {sum(len(u.errors) for u in batch)} errors; "
                        f"p50 {pct([t for u in batch for _, t in u.timings], 50)} s, "
                        f"p95 {pct([t for u in batch for _, t in u.timings], 95)} s; peak {rss.peak:.0f} MB")
                    # Closed sessions are freed after the TTL; the indexing run ends too (or a bounded wait).
                    end = time.monotonic() + cfg.after_wait_s
                    while (index_dir / RUNNING).exists() and time.monotonic() < end:
                        time.sleep(1.0)
                    indexing_ended = not (index_dir / RUNNING).exists()
                    time.sleep(cfg.session_ttl_s + cfg.settle_s)
                    afters.append(round(rss.now(), 1))
                after_mb, after_probe = afters[-1], last_probe(probe)
                peak_mb = rss.peak
                at_after, index_mb_after = indexed_tracks(index_dir), snapshot_mb(index_dir)
            written, duplicated, per_pid = study_counts(Path(env["GENRE_STUDY_DB"]), set(warm.acknowledged))
    timings = [t for u in users for _, t in u.timings]
    by_step: dict[str, list[float]] = {}
    for u in users:
        for name, t in u.timings:
            by_step.setdefault(name, []).append(t)
    acknowledged = {pid: n for u in users for pid, n in u.acknowledged.items()}
    errors = [e for u in users for e in u.errors]
    out = {"users": cfg.users, "rounds": cfg.rounds, "batches": cfg.batches, "errors": len(errors),
           "exceptions_on_pages": sum(u.exceptions for u in users),
           "p50_s": pct(timings, 50), "p95_s": pct(timings, 95),
           "server_rss_mb": {"start": round(start_mb, 1), "peak": round(peak_mb, 1), "after": round(after_mb, 1),
                             "before_warmup": round(cold_mb, 1), "after_each_batch": afters},
           # What the server's memory was made of (core.serve.memory_report: glibc's heap in use / free…).
           "server_memory": {"start": start_probe, "after": after_probe},
           # One user walked the script once before "start" (one-time costs); its errors are not counted.
           "warmup_errors": warm.errors,
           "study_answers_written": written,
           "study_answers_expected": cfg.batches * cfg.users * cfg.rounds * ANSWERS_PER_ROUND,
           "study_answers_acknowledged": sum(acknowledged.values()),
           "study_answers_duplicated": duplicated,
           # Every answer a page showed as saved is in the database, once.
           "acknowledged_answers_stored": all(per_pid.get(p, 0) == n for p, n in acknowledged.items()),
           "actions": len(timings), "rounds_completed": sum(u.rounds_done for u in users),
           "by_action_s": {k: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95)} for k, v in by_step.items()},
           "wall_s": round(wall, 1),
           "indexing": {"tracks_at_start": at_start, "tracks_when_users_finished": at_end, "catalog": total,
                        "ended_before_rss_after": indexing_ended, "tracks_at_rss_after": at_after,
                        # The index's share of RSS growth: its snapshot on disk at RSS start and after.
                        "snapshot_mb": {"start": index_mb_start, "after": index_mb_after}},
           # How RSS "after" was taken: the TTL, then settle_s (one trimmer period + 5 s; 10 s before h19b),
           # with the server started as make run starts it (SERVER_ENV).
           "session_ttl_s": cfg.session_ttl_s, "trim_every_s": cfg.trim_every_s, "settle_s": cfg.settle_s,
           "server_env": dict(SERVER_ENV), "error_samples": errors[:5],
           "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    log(f"load: {out['errors']} errors, p50 {out['p50_s']} s, p95 {out['p95_s']} s, "
        f"RSS {out['server_rss_mb']}, answers {written} / {out['study_answers_expected']}")
    return out


def breaks(r: dict, cfg: LoadConfig) -> bool:
    """Whether a load record shows the server broken (errors or p95 over the limit)."""
    return bool(r.get("errors") or r.get("exceptions_on_pages")
                or (r.get("p95_s") or 0) > cfg.breaking_p95_s)


def breaking_users(data_dirs: list[Path], artifacts: Path, cfg: LoadConfig = LoadConfig(),
                   log: Log = print, first: dict | None = None) -> dict:
    """Raise N by ``cfg.breaking_step`` from the load run ``first`` (its N
    already counts; one round each) until the server breaks (p95 over
    ``cfg.breaking_p95_s`` or errors); ``{"users": N or None, "tried": [...]}``."""
    tried = []
    n = cfg.users
    r = first
    while n <= cfg.breaking_max:
        if r is None:
            r = load_run(data_dirs, artifacts, replace(cfg, users=n, rounds=1), log)
        if "note" in r:
            return {"users": None, "note": r["note"], "tried": tried}
        tried.append({k: r[k] for k in ("users", "rounds", "errors", "exceptions_on_pages", "p50_s", "p95_s")}
                     | {"peak_rss_mb": r["server_rss_mb"]["peak"]})
        if breaks(r, cfg):
            return {"users": n, "criterion": f"p95 > {cfg.breaking_p95_s:g} s or errors", "tried": tried}
        n, r = n + cfg.breaking_step, None
    return {"users": None, "note": f"not broken up to {cfg.breaking_max} users", "tried": tried}
