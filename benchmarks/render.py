"""Measure how long each dashboard page takes to render on a large catalog.

Not a test (no timing assertions in tests): run it by hand::

    .venv/bin/python benchmarks/render.py --tracks 1000 --out /tmp/bench_dash

It builds a catalog of ``--tracks`` rows (the real ../shared/data clips when
present, repeated to reach the count, else generated 30 s clips), indexes it
with the shipped models (identical files are embedded once), then times every
page twice:

* **script**: server-side run time with ``streamlit.testing.v1.AppTest``
  (one cold run, then ``--repeats`` warm reruns; median reported);
* **browser**: ``streamlit run`` + headless Chromium: warm in-app navigation
  (click the page in the sidebar) and warm full reload, each until the app
  reports ``notRunning`` and every plotly chart is drawn (median of
  ``--repeats``; every page is visited once first).

Prints a Markdown table and writes ``<out>/render_times.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]


def build_catalog(out: Path, n: int) -> Path:
    """``out/data/metadata.csv`` with ``n`` rows pointing at real or generated audio."""
    from core.config import shared_data_dirs
    from core.datasets import read_datasets

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    sources = read_datasets(shared_data_dirs()) if shared_data_dirs() else []
    if not sources:   # no bundled data: generated clips, three made-up genres in turn
        from benchmarks.inputs import generate_clips

        sources = [type("T", (), {"path": p, "genre": f"genre{i % 3}"})()
                   for i, p in enumerate(generate_clips(data / "audio", 30))]
    rows = []
    for i in range(n):
        src = sources[i % len(sources)]
        rows.append({"track_id": f"t{i:05d}", "path": str(Path(src.path).resolve()), "genre": src.genre,
                     "split": "test", "artist": f"Artist {i % 97}", "title": f"Track {i:05d}"})
    with open(data / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return data


def build_index(data: Path, index_dir: Path, artifacts: Path) -> dict:
    from core.catalog.index import CatalogIndex
    from core.datasets import read_dataset
    from core.models.artifacts import load_models

    idx = CatalogIndex.open(index_dir)
    t = time.time()
    stats = idx.update(read_dataset(data), load_models(artifacts))
    stats["wall_seconds"] = round(time.time() - t, 1)
    return stats


def script_times(env: dict, repeats: int, upload: bytes) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ.update(env)
    from core.catalog.index import CatalogIndex
    from core.recommend.request import MAX_SEEDS

    ids = CatalogIndex.open(env["GENRE_INDEX"]).table()["track_id"].tolist()
    seeds = ids[:: max(1, len(ids) // MAX_SEEDS)][:MAX_SEEDS]

    def prepare(at: AppTest, case: str) -> None:
        if case == "recommender (5 seeds)":
            at.multiselect(key="rec_seeds_w").set_value(seeds).run()
        elif case == "embedding map (t-SNE)":
            at.radio(key="map_method").set_value("t-SNE").run()
        elif case == "classify (1 upload)":
            at.file_uploader(key="classify_files").set_value(("bench.mp3", upload, "audio/mpeg")).run()
        elif case == "listening study (in a session)":
            at.multiselect(key="study_seeds").set_value(seeds).run()
            at.button(key="study_start").click().run()

    cases = [("overview", "overview"), ("spectrograms", "spectrograms"), ("classify", "classify (1 upload)"),
             ("model_comparison", "model_comparison"), ("embedding_map", "embedding map (PCA)"),
             ("embedding_map", "embedding map (t-SNE)"), ("recommender", "recommender (no seeds)"),
             ("recommender", "recommender (5 seeds)"), ("listening_study", "listening study (start)"),
             ("listening_study", "listening study (in a session)")]
    out = {}
    for page, case in cases:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        t = time.perf_counter()
        at.run()
        if page != "overview":
            at.switch_page(f"pages/{page}.py").run()
        prepare(at, case)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(repeats):
            t = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t)
        assert not at.exception, (case, [e.value for e in at.exception])
        out[case] = {"cold_s": round(cold, 3), "warm_median_s": round(statistics.median(warm), 3),
                     "warm_max_s": round(max(warm), 3)}
        print(f"  script {case:<32} cold {cold:6.2f} s   warm median {statistics.median(warm):.3f} s",
              flush=True)
    return out


PAGE_TITLES = {"overview": ("Overview", "Genre-aware music recommender"),
               "spectrograms": ("Spectrograms", "Spectrograms"),
               "classify": ("Classify", "Classify your music"),
               "model_comparison": ("Model comparison", "Model comparison"),
               "embedding_map": ("Embedding map", "Embedding map"),
               "recommender": ("Recommender", "Recommender"),
               "listening_study": ("Listening study", "Listening study")}


def browser_times(env: dict, repeats: int) -> dict:
    """Per page: warm in-app navigation (click the sidebar link) and warm full
    reload, each until the script has finished and every plotly chart is drawn."""
    from benchmarks.browser import SCRIPT_DONE, chromium_page, streamlit_server

    drawn = ("() => [...document.querySelectorAll('.js-plotly-plot')]"
             ".every(p => p.querySelector('.main-svg'))")

    def settle(page, heading: str) -> None:
        page.get_by_role("heading", level=1, name=heading).wait_for(timeout=600_000)
        page.wait_for_selector(SCRIPT_DONE, timeout=600_000)
        page.wait_for_function(drawn, timeout=600_000)

    nav: dict[str, list[float]] = {}
    reload: dict[str, list[float]] = {}
    with streamlit_server(env) as server, chromium_page() as page:
        base = server.url
        page.goto(base)
        settle(page, PAGE_TITLES["overview"][1])
        for rnd in range(repeats + 1):           # round 0 warms every cache
            for name, (link, heading) in PAGE_TITLES.items():
                t = time.perf_counter()
                page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
                settle(page, heading)
                if rnd:
                    nav.setdefault(name, []).append(time.perf_counter() - t)
                assert page.locator('[data-testid="stException"]').count() == 0, name
        # The Recommender with five seeds (10 players, 20 feedback buttons).
        page.locator('[data-testid="stSidebarNav"] a', has_text="Recommender").first.click()
        settle(page, "Recommender")
        page.get_by_role("button", name="Surprise me").click()
        page.get_by_text("Method 2 · sound + genre").wait_for(timeout=600_000)
        page.wait_for_selector(SCRIPT_DONE, timeout=600_000)
        for rnd in range(repeats + 1):
            page.locator('[data-testid="stSidebarNav"] a', has_text="Overview").first.click()
            settle(page, PAGE_TITLES["overview"][1])
            t = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"] a', has_text="Recommender").first.click()
            settle(page, "Recommender")
            page.get_by_text("Method 2 · sound + genre").wait_for(timeout=600_000)
            if rnd:
                nav.setdefault("recommender (5 seeds)", []).append(time.perf_counter() - t)
        for name, (_, heading) in PAGE_TITLES.items():
            page.goto(base + ("/" if name == "overview" else f"/{name}"))
            settle(page, heading)
            for _ in range(repeats):
                t = time.perf_counter()
                page.reload()
                settle(page, heading)
                reload.setdefault(name, []).append(time.perf_counter() - t)
    out = {}
    for name in nav:
        out[name] = {"nav_warm_median_s": round(statistics.median(nav[name]), 3),
                     "nav_warm_max_s": round(max(nav[name]), 3),
                     "reload_warm_median_s": round(statistics.median(reload[name]), 3)
                     if name in reload else float("nan")}
        print(f"  browser {name:<18} navigate {out[name]['nav_warm_median_s']:.2f} s "
              f"(max {out[name]['nav_warm_max_s']:.2f})   reload {out[name]['reload_warm_median_s']:.2f} s",
              flush=True)
    return out


def main() -> None:
    from benchmarks.first_run import app_env

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--out", default="/tmp/bench_dash")
    ap.add_argument("--artifacts", default=str(ROOT / "artifacts"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_catalog(out, args.tracks)
    index_dir = out / "index"
    print(f"indexing {args.tracks} tracks…", flush=True)
    stats = build_index(data, index_dir, Path(args.artifacts))
    print(f"  {stats['embedded']} files embedded, {stats['added']} rows, {stats['wall_seconds']} s", flush=True)
    env = app_env([data], Path(args.artifacts), out)   # its index is out/index, built above
    upload = Path(next(iter((data / "metadata.csv").read_text().splitlines()[1:])).split(",")[1]).read_bytes()
    result = {"tracks": args.tracks, "index": stats, "script": script_times(env, args.repeats, upload)}
    from benchmarks.browser import browser_missing

    if not args.no_browser and browser_missing() is None:
        result["browser"] = browser_times(env, args.repeats)
    result["load_average"] = os.getloadavg()
    (out / "render_times.json").write_text(json.dumps(result, indent=1))
    print("\n| page (state) | server script, cold | server script, warm (median) |\n|---|---|---|")
    for case, v in result["script"].items():
        print(f"| {case} | {v['cold_s']:.2f} s | {v['warm_median_s']:.3f} s |")
    if "browser" in result:
        print("\n| page | browser: navigate, warm median (max) | browser: full reload, warm median |\n|---|---|---|")
        for name, v in result["browser"].items():
            reload = "–" if v["reload_warm_median_s"] != v["reload_warm_median_s"] else \
                f"{v['reload_warm_median_s']:.2f} s"
            print(f"| {name} | {v['nav_warm_median_s']:.2f} s ({v['nav_warm_max_s']:.2f} s) | {reload} |")
    print(f"\nload average during the run: {result['load_average']}")


if __name__ == "__main__":
    main()
