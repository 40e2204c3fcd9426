"""The client side's share of the load run's latency: the same number of
headless-Chromium users on the same machine against a **trivial** Streamlit
script (a title and a button: no models, no index, no indexing), each user
opening the page and clicking the button, for a few rounds.

What it measures is what the load run's page actions cost before the app
does any work: Streamlit's front end loading in N tabs of one Chromium that
shares the CPUs with the server. ``python -m benchmarks.load_floor --users 12``
prints the ``"load_floor"`` record; the bench adds it beside ``"load"``::

    {"users": N, "rounds": r, "open_p50_s", "open_p95_s", "click_p50_s",
     "click_p95_s", "all_p50_s", "all_p95_s", "load_average_1min": [before, after]}

Every wait is bounded (``step_timeout_s``) and the server listens on loopback only.
"""

from __future__ import annotations

import os
import time

from benchmarks.browser import SCRIPT_DONE, browser_missing, users_on_script
from benchmarks.config import json_main, pct

SCRIPT = 'import streamlit as st\nst.title("floor")\nst.button("go", key="go")\nst.write(st.session_state.go)\n'
CLICKS = 3


async def _user(browser, url: str, rounds: int, timeout_ms: float, out: list[tuple[str, float]]) -> None:
    page = await browser.new_page()
    try:
        for _ in range(rounds):
            t = time.monotonic()
            await page.goto(url + "/", timeout=timeout_ms)
            await page.get_by_role("heading", name="floor").wait_for(timeout=timeout_ms)
            await page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)
            out.append(("open", time.monotonic() - t))
            for _ in range(CLICKS):
                t = time.monotonic()
                await page.get_by_role("button", name="go").click(timeout=timeout_ms)
                await page.wait_for_timeout(50)         # the rerun has started
                await page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)
                out.append(("click", time.monotonic() - t))
    finally:
        await page.close()


def load_floor(users: int = 12, rounds: int = 4, step_timeout_s: float = 120.0) -> dict:
    """The ``"load_floor"`` record (see the module docstring)."""
    why = browser_missing()
    if why:
        return {"users": users, "rounds": rounds, "note": f"not measured: {why}"}
    lat: list[tuple[str, float]] = []
    before = os.getloadavg()[0]
    users_on_script(SCRIPT, lambda browser, url: _user(browser, url, rounds, step_timeout_s * 1000, lat), users)
    kinds = {k: [x for kk, x in lat if kk == k] for k in ("open", "click")}
    alls = [x for _, x in lat]
    return {"users": users, "rounds": rounds, "clicks_per_round": CLICKS,
            "open_p50_s": pct(kinds["open"], 50), "open_p95_s": pct(kinds["open"], 95),
            "click_p50_s": pct(kinds["click"], 50), "click_p95_s": pct(kinds["click"], 95),
            "all_p50_s": pct(alls, 50), "all_p95_s": pct(alls, 95),
            "load_average_1min": [round(before, 2), round(os.getloadavg()[0], 2)]}


def main(argv: list[str] | None = None) -> int:
    return json_main(__doc__, load_floor, {"users": 12, "rounds": 4}, argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
