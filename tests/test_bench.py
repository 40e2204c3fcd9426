"""The benchmark: a tiny end-to-end run through the CLI, and its helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from benchmarks.browser import browser_missing
from benchmarks.first_run import first_run
from benchmarks.inputs import generate_clips, pick_files, write_metadata
from benchmarks.query import _seed_sets, synthetic_catalog
from core.cli.main import main


def test_tiny_bench_run_writes_every_key(tiny_dataset, tiny_artifacts, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--data", str(tiny_dataset), "--json", str(out), "--limit", "4",
               "--batch-size", "2", "--sizes", "1500,3000", "--dims", "8", "--queries", "8",
               "--artifacts", str(tiny_artifacts), "--no-first-run", "--library-files", "0",
               "--load", "0"])
    assert rc == 0
    r = json.loads(out.read_text())
    idx = r["index"]
    assert {"tracks_per_s", "baseline_tracks_per_s", "speedup"} <= set(idx)
    assert idx["tracks"] == 4 and idx["errors"] == 0
    assert idx["tracks_per_s"] > 0 and idx["baseline_tracks_per_s"] > 0
    # speedup is rounded to 2 decimals: allow that rounding on small ratios too.
    assert np.isclose(idx["speedup"], idx["tracks_per_s"] / idx["baseline_tracks_per_s"], rtol=0.02, atol=0.006)
    # Baseline and pipeline embed the same audio: embeddings point the same way.
    assert all(v is not None and v > 0.8 for v in idx["embedding_cosine_vs_baseline_median"].values())
    assert {"cold", "warm"} <= set(r["classify_ms"]) and r["classify_ms"]["warm"] > 0
    assert set(r["query_ms"]) == {"1500", "3000"}
    for q in r["query_ms"].values():
        assert {"p50", "p95", "recall_at_5"} <= set(q)
        assert q["p95"] >= q["p50"] > 0 and 0 <= q["recall_at_5"] <= 1
        assert q["exact"]["recall_at_5"] == 1.0 and q["approx"]["method"] == "ivf"
    assert r["peak_rss_mb"] > 0
    assert {"decode", "resample", "stft_mel", "network_cnn", "network_crnn"} <= set(r["profile_ms_per_track"])
    assert r["models"] == ["cnn", "crnn"] and r["model_info"]["source"] == "artifacts"
    assert {"cpu_s_per_track", "baseline_cpu_s_per_track", "cpu_speedup"} <= set(idx)
    assert set(r["first_run"]) >= {"first_lists_s", "catalog_indexed_s", "tracks"}
    assert r["first_run"]["tracks"] is None and r["first_run"]["note"] == "not measured: --no-first-run"
    assert r["load"] == {"note": "not measured: --load 0"} and r["breaking_users"] is None
    assert "index_speedup_ge_3" in r["targets"]
    assert r["library"] is None  # --library-files 0: the entry is not measured
    assert "speedup" in capsys.readouterr().out


def test_pick_files_spreads_over_the_collection(tiny_dataset):
    files = pick_files([tiny_dataset], 3)
    assert len(files) == 3 and len({f.parent.name for f in files}) == 3  # one per genre folder
    assert len(pick_files([tiny_dataset], 100)) == 18


def test_generated_clips_are_real_mp3s(tmp_path):
    paths = generate_clips(tmp_path, 2, seconds=2.0)
    for p in paths:
        info = sf.info(str(p))
        assert p.suffix == ".mp3" and info.samplerate == 22_050 and abs(info.duration - 2.0) < 0.1


def test_synthetic_catalog_and_seed_sets():
    x, labels = synthetic_catalog(2000, 16, seed=3)
    assert x.shape == (2000, 16) and x.dtype == np.float32 and labels.shape == (2000,)
    seeds = _seed_sets(labels, 10, 5, np.random.default_rng(0))
    for s in seeds:
        assert len(s) == 5 and len(set(s.tolist())) == 5
        assert len(set(labels[s].tolist())) == 1  # one listener's style


def test_generated_clips_read_as_a_catalog(tmp_path):
    from core.datasets import read_dataset

    paths = generate_clips(tmp_path, 3, seconds=1.0)
    tracks = read_dataset(write_metadata(tmp_path, paths))
    assert sorted(t.track_id for t in tracks) == ["clip_000", "clip_001", "clip_002"]
    assert {t.genre for t in tracks} == {"Tones", "Pulses"} and all(t.path.is_file() for t in tracks)


@pytest.mark.browser
@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_first_run_in_a_browser_from_an_empty_index(tiny_dataset, tiny_artifacts):
    lines: list[str] = []
    r = first_run([tiny_dataset], tiny_artifacts, log=lines.append, timeout_s=600)
    assert r["tracks"] == 18                        # every clip of the tiny catalog, indexed from nothing
    assert all(n >= 1 for n in r["list_lengths"])   # method 1 and method 2 each listed tracks
    assert 1 <= r["tracks_at_first_lists"] <= 18
    assert 0 < r["first_page_s"] <= r["first_page_complete_s"]
    assert r["first_lists_s"] > 0 and r["catalog_indexed_s"] > 0
    assert any("both lists" in line for line in lines)


def test_pct_rounds_a_percentile_and_is_none_when_empty():
    """benchmarks.config.pct, the percentile of every load record (load run and its floor)."""
    from benchmarks.config import pct

    assert pct([], 50) is None
    assert pct([1.0, 2.0, 3.0], 50) == 2.0
    assert pct([0.0, 1.0], 95) == 0.95
    assert pct([1 / 3], 50) == 0.333


def test_rss_sampler_counts_children_and_survives_its_process():
    """benchmarks.rss.RssSampler (index, library and load runs): a child's memory
    counts only with ``children``; a process that exits ends the sampling, and
    the peak taken while it lived is kept."""
    import subprocess
    import sys

    from benchmarks.rss import RssSampler

    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 * 2**20); time.sleep(30)"])
    try:
        import time

        time.sleep(1.5)
        alone, tree = RssSampler().now(), RssSampler(children=True).now()
        assert tree > alone + 150
        with RssSampler(child.pid, interval=0.05) as rss:
            time.sleep(0.2)
            assert rss.peak > 150
            child.kill()
            child.wait()
        assert rss.peak > 150
        assert not rss._thread.is_alive()
    finally:
        child.kill()
        child.wait()


def test_cpu_seconds_counts_the_forkserver_workers():
    """The indexer's workers are the forkserver's children, not this process's:
    os.times() never sees their CPU; the bench's count (tree_cpu_seconds) does."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from core.procs import pool_context
    from core.procs import tree_cpu_seconds as cpu_seconds

    before, reaped = cpu_seconds(), os.times().children_user
    with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
        pool.submit(sum, range(20_000_000)).result()        # ~0.3 CPU-s in the worker
    assert cpu_seconds() - before > 0.15
    assert os.times().children_user - reaped < 0.05
