"""The load run's short version (benchmarks/load.py): the real server
(``streamlit run app.py`` on loopback) with three concurrent headless-Chromium
users for one round while the background indexing runs. No timing is
asserted (speed figures are in ``python -m core bench --load``): only that
nothing failed and every study answer the pages acknowledged is stored, once.

Skipped without Debian's chromium (like tests/test_browser.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM
from benchmarks.load import LoadConfig, breaks, load_run

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]


def test_three_users_one_round_no_errors_every_answer_stored_once(tiny_dataset, tiny_artifacts):
    cfg = LoadConfig(users=3, rounds=1, session_ttl_s=2, trim_every_s=2.0, settle_s=4.0, run_timeout_s=900)
    r = load_run([tiny_dataset], tiny_artifacts, cfg, log=print)
    assert "note" not in r, r.get("note")
    assert r["errors"] == 0, r["error_samples"]
    assert r["exceptions_on_pages"] == 0
    assert r["rounds_completed"] == 3
    assert r["study_answers_expected"] == 3 * 1 * 2
    assert r["study_answers_acknowledged"] == r["study_answers_expected"]
    assert r["study_answers_written"] == r["study_answers_expected"]
    assert r["study_answers_duplicated"] == 0
    assert r["acknowledged_answers_stored"]
    # Every step of the script ran for every user: 7 actions per round.
    assert r["actions"] == 3 * 7
    assert set(r["by_action_s"]) == {"overview", "classify", "recommend", "thumbs_up", "study_start",
                                     "study_answer"}
    assert r["server_rss_mb"]["start"] > 0 and r["server_rss_mb"]["peak"] >= r["server_rss_mb"]["start"]
    assert not breaks(r, LoadConfig(breaking_p95_s=float("inf")))
    # Once the closed tabs' reconnect time ran out, the server shut their sessions down
    # (ui.serve): none is kept, and none of their uploads.
    assert r["server_env"] == {"MALLOC_ARENA_MAX": "2"} and r["settle_s"] == 4.0 and r["trim_every_s"] == 2.0
    after = r["server_memory"]["after"]
    assert after["active"] == 0 and after["stored"] == 0 and after["upload_sessions"] == 0


def test_breaking_users_raises_n_until_p95_or_errors(monkeypatch):
    import benchmarks.load as load

    seen = []

    def fake(dirs, artifacts, cfg, log):
        seen.append((cfg.users, cfg.rounds))
        return {"users": cfg.users, "rounds": cfg.rounds, "errors": 0, "exceptions_on_pages": 0,
                "p50_s": 1.0, "p95_s": 2.0 * cfg.users, "server_rss_mb": {"peak": 500.0}}

    monkeypatch.setattr(load, "load_run", fake)
    cfg = LoadConfig(users=12, rounds=2, breaking_step=2, breaking_max=30)
    first = fake([], None, cfg, None)
    out = load.breaking_users([], Path("."), cfg, log=print, first=first)
    assert out["users"] == 16                           # p95 = 32 s > 30 s at 16 users
    assert seen == [(12, 2), (14, 1), (16, 1)]          # the load run's own N counts; then one round each
    assert [t["users"] for t in out["tried"]] == [12, 14, 16]
    never = load.breaking_users([], Path("."), LoadConfig(users=2, breaking_step=2, breaking_max=6,
                                                          breaking_p95_s=1e9), log=print)
    assert never["users"] is None and [t["users"] for t in never["tried"]] == [2, 4, 6]


def test_a_failed_step_notes_the_page_script_state():
    import asyncio

    from benchmarks.load_user import _script_state

    class Locator:
        def __init__(self, state):
            self.state = state

        async def get_attribute(self, name, timeout):
            assert name == "data-test-script-state"
            if isinstance(self.state, Exception):
                raise self.state
            return self.state

    class Page:
        def __init__(self, state):
            self.state = state

        def locator(self, selector):
            return Locator(self.state)

    assert asyncio.run(_script_state(Page("notRunning"))) == "notRunning"
    assert asyncio.run(_script_state(Page(TimeoutError("closed")))) == "unknown (TimeoutError)"


def test_load_floor_times_every_open_and_click_of_a_trivial_script():
    """The client-side floor (benchmarks/load_floor.py): two users, one round,
    every page open and click timed against a script with no app in it."""
    from benchmarks.load_floor import CLICKS, load_floor
    r = load_floor(users=2, rounds=1, step_timeout_s=60)
    assert "note" not in r, r.get("note")
    assert r["clicks_per_round"] == CLICKS
    assert 0 < r["open_p50_s"] <= r["open_p95_s"] and 0 < r["click_p50_s"] <= r["click_p95_s"]
    assert r["all_p50_s"] <= r["all_p95_s"] <= max(r["open_p95_s"], r["click_p95_s"])


def test_a_fragment_timer_no_longer_loses_a_finished_runs_page():
    """The load run's "lost rerun" (benchmarks/fragment_race.py): on a server
    whose event loop lags, a 0.1 s fragment timer makes Streamlit 1.67 lose a
    click's page (the click ran: its count is in the session state; the
    server dropped the page's elements); with ui.serve.keep_finishing_runs
    installed, the server drops none, no click's page is lost (a page late
    on a busy machine still counts as shown) and the timer still runs
    (4 users × 40 clicks)."""
    from benchmarks.fragment_race import fragment_race

    r = fragment_race(users=4, clicks=40)
    assert "note" not in r["unfixed"], r["unfixed"].get("note")
    assert r["unfixed"]["lost"] >= 1, r            # the race is reproduced, so the run below can fail
    assert r["unfixed"]["page_elements_dropped"] > 0, r   # ...by the server dropping a finished run's page
    assert r["unfixed"]["lost_but_ran"] >= 1       # the click's script ran; only its page was lost
    assert r["fixed"]["page_elements_dropped"] == 0, r
    assert r["fixed"]["lost"] == 0 and r["fixed"]["clicks"] == 4 * 40, r
    assert r["fixed"]["ticks_min"] > 10            # the sidebar-like timer kept redrawing


def test_step_cost_counts_the_servers_children():
    """benchmarks/step_cost.py charges a server's worker processes to the server:
    a child that burns CPU shows in tree_cpu_s while it lives."""
    import subprocess
    import sys

    import psutil

    from benchmarks.step_cost import tree_cpu_s

    me = psutil.Process()
    before = tree_cpu_s(me)
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
                              "time.sleep(30)"])
    try:
        end = time.monotonic() + 20
        while tree_cpu_s(me) - before < 0.4 and time.monotonic() < end:
            time.sleep(0.1)
        assert tree_cpu_s(me) - before >= 0.4
    finally:
        child.kill()
        child.wait()
