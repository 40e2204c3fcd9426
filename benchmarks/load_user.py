"""One simulated listener of the load run (:mod:`benchmarks.load`): a fixed
script walked in headless Chromium (Playwright's async API), every step timed.

A round: open Overview (a new browser session) → Classify an uploaded 30 s
MP3 → on the Recommender press **Surprise me** (five seeds) and wait for both
lists → give a thumbs-up → on the Listening study start with those seeds and
answer two trials (a like and a dislike). Widgets are found by what a user
sees (labels, button texts, navigation titles) or by their Streamlit keys, so
the script survives changes elsewhere on the pages. Every wait has a timeout
and the whole user has a deadline: nothing here loops unbounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.browser import SCRIPT_DONE

EXCEPTION = '[data-testid="stException"]'
PROGRESS = re.compile(r"Participant\s+(p-[0-9a-f]+)\s*·\s*answered (\d+) of (\d+)")
CLASSIFIED = re.compile(r"models? says?|models disagree|models lean")   # the three verdict lines of Classify
LISTS = ("Method 1 · sound only", "Method 2 · sound + genre")
ANSWERS_PER_ROUND = 2
RAMP_S = 2.0          # user u starts u × RAMP_S seconds after the first


@dataclass
class UserLog:
    """What one user did: step timings, failures, and the study answers the
    page acknowledged (participant id → number of answers shown as saved)."""

    user: int
    timings: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exceptions: int = 0
    acknowledged: dict[str, int] = field(default_factory=dict)
    rounds_done: int = 0


class StepFailed(Exception):
    """A step did not reach its expected state in time (or the app raised)."""


async def _done(page, timeout_ms: float) -> None:
    """The page's script run has finished (after a short grace so a click's
    rerun has started)."""
    await page.wait_for_timeout(150)
    await page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)


async def _script_state(page) -> str:
    """The app's script state when a step failed (``notRunning``: the server was
    idle, so a rerun the step waited for never came), or why it is unknown."""
    try:
        return await page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state",
                                                                         timeout=5000) or "none"
    except Exception as exc:  # noqa: BLE001 — only a note beside the error
        return f"unknown ({type(exc).__name__})"


async def _exceptions(page) -> int:
    return await page.locator(EXCEPTION).count()


async def _nav(page, title: str, timeout_ms: float) -> None:
    """Go to a page through the sidebar navigation (same browser session)."""
    await page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click(timeout=timeout_ms)
    await page.get_by_role("heading", level=1).first.wait_for(timeout=timeout_ms)
    await _done(page, timeout_ms)


async def _progress(page, at_least: int, timeout_ms: float) -> tuple[str, int, int]:
    """Wait until the study's progress line says ``at_least`` answers; (pid, answered, total)."""
    end = time.monotonic() + timeout_ms / 1000
    main = page.locator('[data-testid="stMain"]')
    while time.monotonic() < end:
        m = PROGRESS.search(await main.inner_text())
        if m and int(m.group(2)) >= at_least:
            return m.group(1), int(m.group(2)), int(m.group(3))
        await page.wait_for_timeout(200)
    raise StepFailed(f"study progress did not reach {at_least} answers")


class Walker:
    """Runs the steps of one user and records them in a :class:`UserLog`."""

    def __init__(self, page, url: str, clips: list[Path], log: UserLog, step_timeout_s: float):
        self.page, self.url, self.clips, self.log = page, url, clips, log
        self.clip = clips[0]
        self.ms = step_timeout_s * 1000

    async def step(self, name: str, coro) -> None:
        """Time ``coro`` (one page action); an exception box on the page fails the step."""
        t0 = time.perf_counter()
        await coro
        self.log.timings.append((name, time.perf_counter() - t0))
        n = await _exceptions(self.page)
        if n:
            self.log.exceptions += n
            text = (await self.page.locator(EXCEPTION).first.inner_text())[:200]
            raise StepFailed(f"{name}: exception on the page: {text}")

    async def overview(self) -> None:
        # The page is usable once its heading is drawn: no wait for every font and image ("load").
        await self.page.goto(self.url + "/", timeout=self.ms, wait_until="commit")
        await self.page.get_by_role("heading", level=1).first.wait_for(timeout=self.ms)
        await _done(self.page, self.ms)

    async def classify(self) -> None:
        await _nav(self.page, "Classify", self.ms)
        await self.page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
            str(self.clip), timeout=self.ms)
        await self.page.get_by_text(CLASSIFIED).first.wait_for(timeout=self.ms)
        await _done(self.page, self.ms)

    async def recommend(self) -> None:
        await _nav(self.page, "Recommender", self.ms)
        await self.page.get_by_role("button", name="Surprise me").click(timeout=self.ms)
        for text in LISTS:
            await self.page.get_by_text(text).first.wait_for(timeout=self.ms)
        await self.page.locator('[class*="st-key-like_cosine_"] button').first.wait_for(timeout=self.ms)
        await _done(self.page, self.ms)

    async def thumbs_up(self) -> None:
        await self.page.locator('[class*="st-key-like_cosine_"] button').filter(visible=True).first.click(
            timeout=self.ms)
        await self.page.get_by_text("Your feedback:").first.wait_for(timeout=self.ms)
        await _done(self.page, self.ms)

    async def study_start(self) -> None:
        await _nav(self.page, "Listening study", self.ms)
        await self.page.get_by_role("button", name="Start listening").click(timeout=self.ms)
        await _progress(self.page, 0, self.ms)
        await _done(self.page, self.ms)

    async def answer(self, i: int) -> None:
        """The ``i``-th answer of this round: trial ``i``, like on even ``i``, else dislike."""
        kind = "study_like_" if i % 2 == 0 else "study_dislike_"
        buttons = self.page.locator(f'[class*="st-key-{kind}"] button').filter(visible=True)
        await buttons.nth(i).click(timeout=self.ms)
        pid, answered, _ = await _progress(self.page, i + 1, self.ms)
        self.log.acknowledged[pid] = answered
        await _done(self.page, self.ms)

    async def round(self) -> None:
        await self.step("overview", self.overview())
        await self.step("classify", self.classify())
        await self.step("recommend", self.recommend())
        await self.step("thumbs_up", self.thumbs_up())
        await self.step("study_start", self.study_start())
        for i in range(ANSWERS_PER_ROUND):
            await self.step("study_answer", self.answer(i))


async def walk(browser, url: str, clips: list[Path], user: int, rounds: int, step_timeout_s: float,
               deadline: float) -> UserLog:
    """One user: its own browser context (cookies, session), ``rounds`` rounds
    (round ``r`` uploads ``clips[r % len(clips)]``: a file no one else sent, so
    every Classify analyses it rather than reading the shared cache),
    stopping at ``deadline`` (``time.monotonic()``); a failed step ends the
    round and is counted, the next round starts afresh."""
    log = UserLog(user)
    await asyncio.sleep(max(user, 0) * RAMP_S)      # users arrive one after another, not in one instant
    ctx = await browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = await ctx.new_page()
        walker = Walker(page, url, clips, log, step_timeout_s)
        for r in range(rounds):
            walker.clip = clips[r % len(clips)]
            if time.monotonic() > deadline:
                log.errors.append("deadline reached before the round")
                break
            try:
                await walker.round()
                log.rounds_done += 1
            except Exception as exc:  # noqa: BLE001 — counted as this user's error, the run goes on
                if os.environ.get("LOAD_SHOTS"):     # to look at what the user saw
                    await page.screenshot(path=f"{os.environ['LOAD_SHOTS']}/user{user}.png", full_page=True)
                log.errors.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:1200]}"
                                  f" [page script state: {await _script_state(page)}]")
    finally:
        await ctx.close()
    return log
