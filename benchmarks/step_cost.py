"""Where the load run's time goes: the CPU seconds that Chromium and the
server (with its worker processes) spend on each step of the load run's
script (:mod:`benchmarks.load_user`), for one user alone.

``python -m benchmarks.step_cost [--data DIR] [--rounds 2]`` starts the real
server on loopback with an empty index of ``DIR``, walks the script once (the
one-time costs: models, first analyses), waits until the index holds every
track (bounded), then walks ``rounds`` more rounds in fresh browser contexts
and prints one line per step: wall seconds, Chromium CPU-s, server CPU-s.
Contexts stay open until the end, so their renderers' CPU is still counted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.browser import async_chromium, streamlit_server
from benchmarks.first_run import app_env
from benchmarks.load import catalog_size
from benchmarks.load_user import UserLog, Walker


def chromium_cpu_s() -> float:
    """CPU seconds of every running Chromium process."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        try:
            if "chrom" in (p.info["name"] or ""):
                total += sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def tree_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` and its living children."""
    total = sum(proc.cpu_times()[:2])
    for c in proc.children(recursive=True):
        try:
            total += sum(c.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


async def walk_rounds(url: str, server_pid: int, clips: list[Path], tag: str) -> list[dict]:
    """One round per clip, each in a fresh context; a record per step."""
    server, rows = psutil.Process(server_pid), []
    async with async_chromium() as browser:
        contexts = []
        for r, clip in enumerate(clips):
            ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
            contexts.append(ctx)
            w = Walker(await ctx.new_page(), url, [clip], UserLog(0), 120.0)
            steps = [("overview", w.overview), ("classify", w.classify), ("recommend", w.recommend),
                     ("thumbs_up", w.thumbs_up), ("study_start", w.study_start),
                     ("answer_1", lambda: w.answer(0)), ("answer_2", lambda: w.answer(1))]
            for name, step in steps:
                c0, s0, t0 = chromium_cpu_s(), tree_cpu_s(server), time.perf_counter()
                await step()
                rows.append({"run": tag, "round": r, "step": name, "wall_s": round(time.perf_counter() - t0, 2),
                             "chromium_cpu_s": round(chromium_cpu_s() - c0, 2),
                             "server_cpu_s": round(tree_cpu_s(server) - s0, 2)})
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def step_cost(data_dirs: list[Path], artifacts: Path, rounds: int = 2, index_wait_s: float = 900.0) -> list[dict]:
    """The records (see the module docstring)."""
    from benchmarks.inputs import generate_clips
    from core.catalog.store import indexed_tracks

    with tempfile.TemporaryDirectory(prefix="bench_steps_") as tmp_s:
        tmp = Path(tmp_s)
        env = app_env(data_dirs, artifacts, tmp)
        clips = generate_clips(tmp / "upload", rounds + 1, seconds=30.0, seed=3)
        with streamlit_server(env) as srv:
            rows = asyncio.run(walk_rounds(srv.url, srv.proc.pid, clips[:1], "first"))
            want, end = catalog_size(data_dirs), time.monotonic() + index_wait_s
            while indexed_tracks(Path(env["GENRE_INDEX"])) < want and time.monotonic() < end:
                time.sleep(2.0)
            rows += asyncio.run(walk_rounds(srv.url, srv.proc.pid, clips[1:], "index ready"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", type=Path, default=None,
                    help="data folder (repeatable; default ../shared/data/musifeast17)")
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    step_cost(args.data or [Path("../shared/data/musifeast17")], args.artifacts, args.rounds)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
