"""Real-browser smoke test: ``streamlit run app.py`` on a free port, every
page opened in headless Debian Chromium through Playwright, no exception box,
a screenshot per page.

Skipped (only this test) when /usr/bin/chromium is missing. Screenshots go to
``$GENRE_SCREENSHOTS`` if set (to look at them), else to a pytest tmp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import PAGES

from benchmarks.browser import CHROMIUM, chromium_page, streamlit_server, wait_rendered

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]


@pytest.fixture
def server(app_env, tmp_path):
    env = {**app_env, "GENRE_STUDY_DB": str(tmp_path / "study.sqlite"), "GENRE_LIBRARY": str(tmp_path / "library")}
    with streamlit_server(env, log=tmp_path / "streamlit.log") as srv:
        yield srv.url


def screenshot(page, path: Path) -> None:
    """Whole-page screenshot: Streamlit scrolls inside its main block, so grow
    the window to the content first."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stAppViewContainer]')]"
                           ".map(e => e.scrollHeight), 1000)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 50, 9000)})
    page.wait_for_timeout(800)  # plotly charts re-layout to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def assert_no_exception(page, what: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{what}: {errors.first.inner_text()[:500]}"


def test_every_page_in_headless_chromium(server, tmp_path):
    from conftest import synth, write_audio

    good = write_audio(tmp_path / "upload" / "my tone.mp3", synth("tone", 4.0, seed=2))
    bad = tmp_path / "upload" / "broken.mp3"
    bad.write_bytes(b"ID3 this is not audio at all" * 50)

    shots = Path(os.environ.get("GENRE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        for name in PAGES:
            url = server + ("/" if name == "overview" else f"/{name}")
            page.goto(url)
            wait_rendered(page)
            screenshot(page, shots / f"{name}.png")
            assert_no_exception(page, name)
            assert page.locator("h1").first.inner_text().strip(), f"{name}: no title"
            # The shared sidebar (music-folder settings) is on every page.
            assert page.locator('[data-testid="stSidebar"] textarea').count() == 1, name

        # Recommender: five random seeds, then both methods' lists.
        page.goto(server + "/recommender")
        wait_rendered(page)
        page.get_by_role("button", name="Surprise me").click()
        wait_rendered(page)
        page.get_by_text("Method 1 · sound only").wait_for(timeout=60_000)
        page.get_by_text("Method 2 · sound + genre").wait_for(timeout=60_000)
        assert_no_exception(page, "recommender with seeds")
        screenshot(page, shots / "recommender_results.png")

        # Classify: one good and one broken upload; the good one still gets results.
        page.goto(server + "/classify")
        wait_rendered(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([str(good), str(bad)])
        page.get_by_text("broken.mp3:").first.wait_for(timeout=120_000)
        wait_rendered(page)
        assert_no_exception(page, "classify uploads")
        assert page.locator('[data-testid="stAlertContentError"]').count() == 1
        assert page.get_by_text("Both models say").count() + page.get_by_text("The models disagree").count() == 1
        screenshot(page, shots / "classify_results.png")
    assert sorted(f.stem for f in shots.glob("*.png")) == sorted(PAGES + ["recommender_results",
                                                                          "classify_results"])


def app_titles() -> list[str]:
    """The navigation titles app.py gives ``st.Page``, in its order."""
    import ast

    from conftest import APP

    return [kw.value.value for n in ast.walk(ast.parse(Path(APP).read_text()))
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "Page"
            for kw in n.keywords if kw.arg == "title"]


def test_deep_links_go_through_the_router_on_a_fresh_server(app_env, tmp_path):
    """Each page URL as the very first request after a server start (the link a
    study organiser sends): the real navigation (app.py's titles, in its order,
    not the file names of pages/) and the shared sidebar, on the asked page."""
    env = {**app_env, "GENRE_STUDY_DB": str(tmp_path / "study.sqlite"), "GENRE_LIBRARY": str(tmp_path / "library")}
    titles = app_titles()
    assert len(titles) == len(PAGES)
    with chromium_page() as page:
        for name, title in zip(PAGES, titles):
            with streamlit_server(env, log=tmp_path / f"streamlit_{name}.log") as srv:
                page.goto(srv.url + ("/" if name == "overview" else f"/{name}"))
                wait_rendered(page)
                nav = page.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
                nav.first.wait_for(timeout=60_000)
                # Each link reads "<icon name>\n\n<title>": the title is its last line.
                assert [t.strip().splitlines()[-1] for t in nav.all_inner_texts()] == titles, name
                assert page.locator('[data-testid="stSidebar"] textarea').count() == 1, name
                active = page.locator('[data-testid="stSidebarNav"] [aria-current="page"]')
                assert active.inner_text().strip().splitlines()[-1] == title, name
                assert_no_exception(page, name)
