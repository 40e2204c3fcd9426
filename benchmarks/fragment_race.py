"""The load run's "lost rerun", reproduced on a trivial script, with and
without the app's fix (:func:`ui.serve.keep_finishing_runs`).

Streamlit 1.67 loses a click's page when a ``run_every`` fragment's timer
rerun reaches the session just as the click's script run finishes (see
:func:`ui.serve.keep_finishing_runs`): the click ran (its session state
changed) but its output never arrives. The app's sidebar has such a timer
while indexing runs, so in the load run a Classify upload now and then never
showed its verdict ("page script state: notRunning").

The script here: a sidebar fragment ticking every 0.1 s, a **go** button that
counts clicks in the session state, and a page that ends with ``done N``.
``users`` tabs click **go** ``clicks`` times each and wait for ``done i``
after the i-th click. A page that does not show within ``wait_s`` may still
come: the tab waits :data:`LATE_S` more without touching anything, and a
page that comes then is ``late``, not lost. A page that never comes is
``lost`` (then a **show** click tells whether the click itself ran); a tab
whose first page (``done 0``) does not show within :data:`START_S` lost
that page (``lost_first_page``). ``hog``: a thread in the server spins on
the GIL, so its event loop lags as on a busy server (without it the window
is too narrow to hit on an idle machine).

Two ways a page is slow or missing, told apart by the server's own count
(``page_elements_dropped``: page elements, not the fragment's, that
``AppSession`` drops because a newer script runner replaced theirs):

* the race, which drops them (hundreds per run without the fix, none with it);
* congestion, which drops nothing: on a saturated machine the server's send
  loop falls behind the four tabs' ten fragment runs a second, so its queues
  hold hundreds of messages and a page comes many seconds late (measured: up
  to 117 s with two CPU burners beside the run). A CI run that lost 1 of 121
  pages with the fix installed, after 8 s, was most likely such a late page.

``python -m benchmarks.fragment_race`` prints the ``"fragment_race"`` record
of the bench::

    {"unfixed": {"users", "clicks", "lost", "page_elements_dropped", "lost_but_ran",
                 "lost_first_page", "late", "slowest_late_s", "ticks_min", ...},
     "fixed": {...}}

Every wait is bounded and the server listens on loopback only.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from benchmarks.browser import ROOT, browser_missing, users_on_script
from benchmarks.config import json_main

SCRIPT = f'''import os, sys, threading, time
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st

if os.environ.get("RACE_FIX") == "1":
    from ui.serve import keep_finishing_runs
    keep_finishing_runs()


@st.cache_resource
def hog():
    def spin():
        while True:
            sum(range(1000))
    threading.Thread(target=spin, daemon=True).start()
    return True


if os.environ.get("RACE_HOG") == "1":
    hog()


@st.cache_resource
def count_drops():
    # The race itself, counted in the server: page (non-fragment) elements that
    # AppSession drops because a newer script runner replaced their runner.
    from streamlit.runtime.app_session import AppSession
    handle, lock, drops = AppSession._handle_scriptrunner_event_on_event_loop, threading.Lock(), [0]

    def counted(self, sender, event, forward_msg=None, *rest):
        if (sender is not self._scriptrunner and forward_msg is not None
                and forward_msg.WhichOneof("type") == "delta" and not forward_msg.delta.fragment_id):
            with lock:
                drops[0] += 1
                with open(os.environ["RACE_DROPS"], "w") as f:
                    f.write(str(drops[0]))
        return handle(self, sender, event, forward_msg, *rest)

    AppSession._handle_scriptrunner_event_on_event_loop = counted
    return True


count_drops()


@st.fragment(run_every=0.1)
def ticker():
    st.session_state.t = st.session_state.get("t", 0) + 1
    st.caption(f"tick {{st.session_state.t}}")


with st.sidebar:
    ticker()
n = st.session_state.get("n", 0)
if st.button("go"):
    n += 1
    st.session_state.n = n
    time.sleep(0.02)
st.button("show")
for k in range(150):
    st.text(f"row {{k}}")
st.write(f"done {{n}}")
'''
# Seconds a tab waits for its first page ("done 0"). Without the fix that page
# can be lost too (its script run may end just as the timer's first rerun
# arrives); it then counts as the tab's lost page. In one of four CI runs a
# tab waited 120 s for it and the run failed; 8 runs here did not lose it.
START_S = 60.0
# Seconds a click's page may come after ``wait_s`` and count as late, not
# lost: the tab waits on without touching anything, and a lost page never comes.
LATE_S = 30.0
# Seconds the end of a tab's run waits for the timer's caption in the sidebar.
TICK_S = 30.0
DONE = re.compile(r"done (\d+)")
TICK = re.compile(r"tick (\d+)")


async def _shown(page) -> int:
    """The ``done N`` the page shows now (-1 when none)."""
    found = DONE.findall(await page.locator('[data-testid="stMain"]').inner_text())
    return int(found[-1]) if found else -1


async def _shows(page, text: str, timeout_s: float) -> bool:
    """Whether ``text`` (exactly) shows on ``page`` within ``timeout_s``."""
    try:
        await page.get_by_text(text, exact=True).wait_for(timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 — Playwright's timeout: it did not show
        return False
    return True


async def _ticks(page, timeout_s: float = TICK_S) -> int:
    """The timer's count that the sidebar shows (0 when it shows none within
    ``timeout_s``). Waited for, not read once: a CI run read an empty sidebar
    once, every click's page shown, most likely mid-redraw on a busy machine."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    try:
        await sidebar.get_by_text(TICK).first.wait_for(timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 — Playwright's timeout: no tick shows
        return 0
    ticks = TICK.findall(await sidebar.inner_text())
    return int(ticks[-1]) if ticks else 0


async def _user(browser, url: str, clicks: int, wait_s: float) -> dict:
    """One tab: click **go** until a click's page is lost (or ``clicks`` done)."""
    page = await browser.new_page()
    try:
        await page.goto(url + "/", timeout=120_000)
        lost, ran, done, first, late, slowest = 0, 0, 0, 0, 0, 0.0
        if not await _shows(page, "done 0", START_S):     # the race can lose the first page too
            lost, first, clicks = 1, 1, 0
        for i in range(1, clicks + 1):
            await page.get_by_role("button", name="go").click(timeout=60_000)
            t0 = time.monotonic()
            if await _shows(page, f"done {i}", wait_s):
                done = i
                continue
            if await _shows(page, f"done {i}", LATE_S):       # slow: it came while nothing was touched
                done, late, slowest = i, late + 1, max(slowest, time.monotonic() - t0)
                continue
            lost = 1                                           # a lost page is what is counted
            await page.get_by_role("button", name="show").click(timeout=60_000)
            await page.wait_for_timeout(wait_s * 1000)
            ran = int(await _shown(page) >= i)            # the click ran; only its page was lost
            break
        return {"clicks": done + lost - first, "lost": lost, "lost_but_ran": ran, "lost_first_page": first,
                "late": late, "slowest_late_s": round(slowest, 1), "ticks": await _ticks(page)}
    finally:
        await page.close()


def race_run(users: int = 4, clicks: int = 25, fix: bool = True, hog: bool = True, wait_s: float = 8.0) -> dict:
    """``users`` tabs × up to ``clicks`` clicks against the script (see the
    module docstring), the fix installed or not; how many users lost a click's
    page (each user stops at its first loss)."""
    why = browser_missing()
    if why:
        return {"note": f"not measured: {why}"}
    with tempfile.TemporaryDirectory(prefix="race_") as tmp:
        drops = Path(tmp) / "drops"
        per = users_on_script(SCRIPT, lambda browser, url: _user(browser, url, clicks, wait_s), users,
                              {"RACE_FIX": str(int(fix)), "RACE_HOG": str(int(hog)), "RACE_DROPS": str(drops)})
        dropped = int(drops.read_text()) if drops.exists() else 0
    return {"users": users, "clicks": sum(u["clicks"] for u in per), "lost": sum(u["lost"] for u in per),
            "page_elements_dropped": dropped,
            "lost_but_ran": sum(u["lost_but_ran"] for u in per),
            "lost_first_page": sum(u["lost_first_page"] for u in per), "late": sum(u["late"] for u in per),
            "slowest_late_s": max(u["slowest_late_s"] for u in per), "ticks_min": min(u["ticks"] for u in per),
            "hog": hog, "load_average_1min": round(os.getloadavg()[0], 2)}


def fragment_race(users: int = 4, clicks: int = 25) -> dict:
    """The ``"fragment_race"`` record: the same run without and with the fix."""
    return {"unfixed": race_run(users, clicks, fix=False), "fixed": race_run(users, clicks, fix=True)}


def main(argv: list[str] | None = None) -> int:
    return json_main(__doc__, fragment_race, {"users": 4, "clicks": 25}, argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
