"""Driving the app in a real browser: ``streamlit run app.py`` on a free
port and headless Debian Chromium through Playwright.

Shared by the first-run benchmark (:mod:`benchmarks.first_run`), the
render-time script (``benchmarks/render.py``) and ``tests/test_browser.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterator

from core.serve import SERVER_ENV

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The app root's attribute: "notRunning" once the page's script has finished.
SCRIPT_DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def browser_missing() -> str | None:
    """Why no browser run is possible here (Chromium or Playwright missing), or ``None``."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -r requirements-dev.txt)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; raise if ``proc`` exits or time runs out."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


@dataclass
class Server:
    """A running ``streamlit run app.py``: its base URL and when it was started."""

    url: str
    proc: subprocess.Popen
    started: float          # time.perf_counter() just before the process was spawned


@contextmanager
def streamlit_server(env: dict[str, str], log: Path | None = None, timeout: float = 120,
                     args: list[str] | tuple[str, ...] = (), port: int | None = None,
                     script: Path | None = None) -> Iterator[Server]:
    """``streamlit run app.py`` (or ``script``) on 127.0.0.1 with :data:`core.serve.SERVER_ENV`
    (as ``make run``) and ``env`` added to this environment, and ``args`` (more ``--server.*`` options); yields once the
    health check answers and stops the server (and only it) on exit. ``port``:
    a given one (a restart on the same address), else a free one."""
    port = port or free_port()
    out = open(log, "a") if log else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script or ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *args],
        cwd=ROOT, env={**os.environ, **SERVER_ENV, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_stcore/health", proc, timeout)
        yield Server(url, proc, started)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A Playwright page in headless Debian Chromium (closed on exit)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@asynccontextmanager
async def async_chromium():
    """A headless Debian Chromium under Playwright's asyncio API (closed on
    exit), for many pages at once (the load runs)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def users_on_script(source: str, user: Callable[[object, str], Awaitable], users: int,
                    env: dict[str, str] | None = None) -> list:
    """Serve the Streamlit script ``source`` (written to a temporary folder)
    with :func:`streamlit_server` and run ``user(browser, url)`` for ``users``
    users at once in one headless Chromium (:func:`async_chromium`); their
    results, in order. The small benchmarks' trivial-script runs
    (:mod:`benchmarks.load_floor`, :mod:`benchmarks.fragment_race`)."""
    async def run(url: str) -> list:
        async with async_chromium() as browser:
            return list(await asyncio.gather(*(user(browser, url) for _ in range(users))))

    with tempfile.TemporaryDirectory(prefix="bench_script_") as tmp:
        script = Path(tmp) / "script.py"
        script.write_text(source)
        with streamlit_server(env or {}, script=script) as srv:
            return asyncio.run(run(srv.url))


def wait_rendered(page, timeout: float = 120, settle_ms: int = 500) -> None:
    """Wait until a title (or an exception box) shows and the script has finished;
    then ``settle_ms`` so plotly can draw."""
    page.wait_for_selector('h1, [data-testid="stException"]', timeout=timeout * 1000)
    page.wait_for_selector(SCRIPT_DONE, timeout=timeout * 1000)
    if settle_ms:
        page.wait_for_timeout(settle_ms)
