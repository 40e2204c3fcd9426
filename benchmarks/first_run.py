"""The first run as a new user meets it, in a real browser.

``streamlit run app.py`` on the given music folders with an empty index,
log-mel cache, library and study database (temporary folders); headless
Chromium opens the app, then the Recommender, and presses **Surprise me**.
Measured, in seconds:

* ``first_page_s``: from the server's start to the first page (Overview)
  drawn: its title, the catalog and the links to every page, while its models
  section may still be loading; ``first_page_complete_s``: until that section
  is in too and the page's script has finished;
* ``first_lists_s``: from the first page load (the browser asking for the
  page) until the Recommender shows method 1's and method 2's lists for five
  seeds picked by **Surprise me** among the tracks indexed so far (the
  background indexing starts by itself; the user goes to the Recommender at
  once and the page waits for the first committed tracks);
* ``catalog_indexed_s``: from the same moment until the sidebar says "Index
  ready" (it redraws every 10 s once the index modules are in,
  ``ui.sidebar.STATUS_EVERY_S``, so this is up to 10 s late).

Timing lives here, not in tests (tests only check that the run completes).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from benchmarks.browser import SCRIPT_DONE, browser_missing, chromium_page, streamlit_server
from benchmarks.config import Log

KEYS = ("first_lists_s", "catalog_indexed_s", "tracks")
READY = re.compile(r"Index ready: ([\d,]+) tracks")
SO_FAR = re.compile(r"uses the ([\d,]+) tracks indexed so far")
POLL_MS = 250


def not_measured(why: str) -> dict:
    """The ``first_run`` record when it was not measured, with the reason."""
    return {**{k: None for k in KEYS}, "note": f"not measured: {why}"}


def app_env(data_dirs: list[Path], artifacts: Path, tmp: Path) -> dict[str, str]:
    """The app's environment for a first run: the given data and models,
    everything it writes in ``tmp`` (so the index and caches start empty)."""
    return {"GENRE_DATA": os.pathsep.join(str(Path(d).resolve()) for d in data_dirs),
            "GENRE_ARTIFACTS": str(Path(artifacts).resolve()), "GENRE_INDEX": str(tmp / "index"),
            "GENRE_CACHE": str(tmp / "cache"), "GENRE_LIBRARY": str(tmp / "library"),
            "GENRE_STUDY_DB": str(tmp / "study.sqlite")}


def _count(pattern: re.Pattern, text: str) -> int | None:
    m = pattern.search(text)
    return int(m.group(1).replace(",", "")) if m else None


def _first_page(page, server, timeout_s: float) -> tuple[float, float]:
    """Seconds from the server's start to the Overview drawn, and to it complete."""
    ms = timeout_s * 1000
    page.goto(server.url)
    page.get_by_role("heading", level=1, name="Genre-aware music recommender").wait_for(timeout=ms)
    # The last of the six "Where to go next" links: the page is drawn to its end.
    page.locator('[data-testid="stMain"] [data-testid="stPageLink"]').nth(5).wait_for(timeout=ms)
    drawn = time.perf_counter() - server.started
    page.get_by_text("parameters · embedding of").first.wait_for(timeout=ms)
    page.wait_for_selector(SCRIPT_DONE, timeout=ms)
    return drawn, time.perf_counter() - server.started


def _recommender_until_ready(page, t0: float, timeout_s: float, log: Log) -> dict:
    """Go to the Recommender, press Surprise me once it is there; poll until
    both lists show and the sidebar says the whole catalog is indexed (each
    time is taken when it is first seen, whichever comes first)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text="Recommender").first.click()
    surprise = page.get_by_role("button", name="Surprise me")
    lists = [page.get_by_text("Method 1 · sound only"), page.get_by_text("Method 2 · sound + genre")]
    cards = [page.locator('[class*="st-key-like_cosine_"]'), page.locator('[class*="st-key-like_genre_"]')]
    sidebar = page.locator('[data-testid="stSidebar"]')
    out: dict = {}
    clicked = False
    while "first_lists_s" not in out or "catalog_indexed_s" not in out:
        elapsed = time.perf_counter() - t0
        if elapsed > timeout_s:
            raise TimeoutError(f"first run not finished after {timeout_s:.0f} s (so far: {out})")
        if page.locator('[data-testid="stException"]').count():
            raise RuntimeError(f"the app raised: {page.locator('[data-testid=stException]').first.inner_text()[:300]}")
        if "catalog_indexed_s" not in out and (n := _count(READY, sidebar.inner_text())) is not None:
            out.update(catalog_indexed_s=round(elapsed, 2), tracks=n)
            log(f"first run: whole catalog indexed ({n} tracks) after {elapsed:.1f} s")
        if "first_lists_s" not in out:
            if not clicked and surprise.count() and surprise.is_enabled():
                so_far = _count(SO_FAR, page.locator('[data-testid="stMain"]').inner_text())
                surprise.click()
                clicked = True
                out["tracks_at_first_lists"] = so_far
            # Both lists drawn to their end: cards in each and the page's run finished
            # (Streamlit draws a list card by card, so a half-drawn list does not count).
            elif (clicked and all(x.count() for x in lists) and all(c.count() for c in cards)
                  and page.locator(SCRIPT_DONE).count()):
                out.update(first_lists_s=round(elapsed, 2), list_lengths=[c.count() for c in cards])
                log(f"first run: both lists after {elapsed:.1f} s")
        page.wait_for_timeout(POLL_MS)
    if out.get("tracks_at_first_lists") is None:   # no "so far" note: indexing had already finished
        out["tracks_at_first_lists"] = out["tracks"]
    return out


def first_run(data_dirs: list[Path], artifacts: Path, log: Log = print, timeout_s: float = 1800) -> dict:
    """Measure the first run on ``data_dirs`` with the models in ``artifacts``
    (see the module docstring); :func:`not_measured` when no browser is here."""
    why = browser_missing()
    if why:
        log(f"first run: {why}")
        return not_measured(why)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_first_run_") as tmp:
        env = app_env(data_dirs, artifacts, Path(tmp))
        # The browser is up before the server starts, as a user's would be.
        with chromium_page() as page, streamlit_server(env, log=Path(tmp) / "streamlit.log") as server:
            t0 = time.perf_counter()      # the first page load: the browser asks for the page
            first_page, complete = _first_page(page, server, timeout_s)
            t0_since_start = t0 - server.started
            log(f"first run: first page drawn {first_page:.2f} s after the server started "
                f"(complete {complete:.2f} s)")
            out = _recommender_until_ready(page, t0, timeout_s, log)
    return {"first_lists_s": out["first_lists_s"], "catalog_indexed_s": out["catalog_indexed_s"],
            "tracks": out["tracks"], "tracks_at_first_lists": out["tracks_at_first_lists"],
            "list_lengths": out["list_lengths"], "first_page_s": round(first_page, 2),
            "first_page_complete_s": round(complete, 2), "server_ready_s": round(t0_since_start, 2),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "data": [str(d) for d in data_dirs]}
