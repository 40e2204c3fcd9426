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
from core.procs import child_processes, cpu_seconds_of, tree_cpu_seconds


def _is_chromium(p) -> bool:
    try:
        return "chrom" in p.name()
    except psutil.Error:
        return False


def chromium_cpu_s() -> float:
    """CPU seconds of the Chromium processes this process started (through Playwright)."""
    return cpu_seconds_of(p for p in child_processes(tracker=True) if _is_chromium(p))


def tree_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` and its living descendants."""
    return tree_cpu_seconds(proc.pid, reaped=False)


class CostWalker(Walker):
    """The load run's user (:class:`benchmarks.load_user.Walker`), with the CPU
    of Chromium and of the server charged to each page action (``rows``)."""

    def __init__(self, page, url: str, clip: Path, server: psutil.Process, tag: str, round_: int):
        super().__init__(page, url, [clip], UserLog(0), 120.0)
        self.server, self.tag, self.round_, self.rows = server, tag, round_, []

    async def step(self, name: str, coro) -> None:
        async def measured() -> None:
            c0, s0, t0 = chromium_cpu_s(), tree_cpu_s(self.server), time.perf_counter()
            await coro
            self.rows.append({"run": self.tag, "round": self.round_, "step": name,
                              "wall_s": round(time.perf_counter() - t0, 2),
                              "chromium_cpu_s": round(chromium_cpu_s() - c0, 2),
                              "server_cpu_s": round(tree_cpu_s(self.server) - s0, 2)})
            print(" ".join(f"{k}={v}" for k, v in self.rows[-1].items()), flush=True)

        await super().step(name, measured())


async def walk_rounds(url: str, server_pid: int, clips: list[Path], tag: str) -> list[dict]:
    """One round of the load run's script per clip, each in a fresh browser
    context (left open until the browser closes, so its renderer's CPU is
    still counted); a record per page action."""
    server, rows = psutil.Process(server_pid), []
    async with async_chromium() as browser:
        for r, clip in enumerate(clips):
            ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
            walker = CostWalker(await ctx.new_page(), url, clip, server, tag, r)
            await walker.round()
            rows += walker.rows
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
