"""Batch embedding pipeline: same answers as the one-file path, cache reuse,
bounded work in flight, errors per file, and the pure batch function."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GENRES, REAL_DATA, real_data
from hostile import OK

import core.catalog.pipeline as pipeline
from core.catalog.pipeline import EmbeddedTrack, embed_batch, embed_paths
from core.config import FeatureConfig
from core.models import CNN, build_model
from core.models.artifacts import load_model, load_models
from core.models.inference import analyse


@pytest.fixture(scope="module")
def models(tiny_artifacts):
    return load_models(tiny_artifacts)


@pytest.fixture(scope="module")
def audio_files(tiny_dataset) -> list[str]:
    return sorted(str(p) for p in (tiny_dataset / "audio").rglob("*.mp3"))[:5]


def test_results_match_the_single_file_path(models, audio_files, tmp_path, monkeypatch):
    monkeypatch.setenv("GENRE_BFLOAT16", "off")    # float32 served copies (bfloat16: test_optimise)
    results = list(embed_paths(audio_files, models, batch_size=2, workers=0, cache=tmp_path))
    assert [r.path for r in results] == audio_files
    for r in results:
        assert r.error is None and len(r.digest) == 64
        a = analyse(r.path, models)
        for name in models:
            assert np.allclose(r.probs[name], a.predictions[name].probs[0], atol=2e-3)
            assert np.allclose(r.embedding[name], a.predictions[name].embedding[0], atol=2e-3)
            # The same log-mels on both paths: only the served copy's float32
            # reassociation separates them (tests/test_optimise.py).
            assert np.allclose(r.probs[name], a.predictions[name].probs[0], atol=1e-5)


def test_bad_files_get_one_line_errors_in_order(models, audio_files, tmp_path):
    junk = tmp_path / "notes.mp3"
    junk.write_text("not audio")
    paths = [audio_files[0], str(tmp_path / "missing.mp3"), str(junk), audio_files[1]]
    results = list(embed_paths(paths, models, batch_size=3, workers=0, cache=False))
    assert [r.path for r in results] == paths
    assert results[0].error is None and results[3].error is None
    assert "missing.mp3" in results[1].error and results[1].digest is None
    assert "notes.mp3" in results[2].error and "\n" not in results[2].error
    assert not results[2].embedding


def test_second_run_reads_the_cache_and_decodes_nothing(models, audio_files, tmp_path, monkeypatch):
    first = list(embed_paths(audio_files, models, workers=0, cache=tmp_path))
    # One entry per distinct content (two generated clips are identical).
    assert len(list(tmp_path.rglob("*.npy"))) == len({r.digest for r in first})

    def no_decoding(path, cfg):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(pipeline, "_decode", no_decoding)
    second = list(embed_paths(audio_files, models, workers=0, cache=tmp_path))
    for a, b in zip(first, second):
        for name in models:
            assert np.array_equal(a.embedding[name], b.embedding[name])


def test_worker_processes_give_the_same_answers(models, audio_files):
    inline = list(embed_paths(audio_files, models, batch_size=2, workers=0, cache=False))
    spawned = list(embed_paths(audio_files, models, batch_size=2, workers=1, cache=False))
    for a, b in zip(inline, spawned):
        assert a.path == b.path and a.error is None and b.error is None
        assert np.allclose(a.embedding["crnn"], b.embedding["crnn"], atol=1e-6)


def test_at_most_two_batches_are_in_flight(models, audio_files, monkeypatch):
    live, peak = [0], [0]
    real_prepare, real_finish = pipeline._prepare, pipeline._finish

    def prepare(batch, *a):
        live[0] += len(batch)
        peak[0] = max(peak[0], live[0])
        return real_prepare(batch, *a)

    def finish(items, *a):
        live[0] -= len(items)
        return real_finish(items, *a)

    monkeypatch.setattr(pipeline, "_prepare", prepare)
    monkeypatch.setattr(pipeline, "_finish", finish)
    seen = []
    paths = audio_files * 3  # 15 files, batches of 2
    out = list(embed_paths(paths, models, batch_size=2, workers=0, cache=False,
                           progress=lambda done, total: seen.append((done, total))))
    assert len(out) == 15 and peak[0] <= 4
    assert seen[-1] == (15, 15) and [d for d, _ in seen] == sorted(d for d, _ in seen)


class ThreadProbe(CNN):
    """A CNN whose embedding says where it ran: [0] the torch thread count,
    [1], [2] the process id (in two parts that window averaging keeps exact).

    With ``$PROBE_MEET`` set to a folder and ``$PROBE_WORKERS`` to n, each
    process waits at its first window until n processes have arrived, so a
    run of n workers is sure to use all of them. With ``$PROBE_START_THREADS``,
    a process that unpickles the probe (a worker receiving its models) starts
    with that many torch threads, whatever the machine's CPU count."""

    def __setstate__(self, state):
        super().__setstate__(state)
        if os.environ.get("PROBE_START_THREADS"):
            torch.set_num_threads(int(os.environ["PROBE_START_THREADS"]))

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        meet = os.environ.get("PROBE_MEET")
        if meet:
            (Path(meet) / str(os.getpid())).touch()
            deadline = time.monotonic() + 120
            while len(list(Path(meet).iterdir())) < int(os.environ["PROBE_WORKERS"]) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        e = super().embed_logmel(logmel).clone()
        pid = os.getpid()
        e[:, 0] = torch.get_num_threads()
        e[:, 1], e[:, 2] = pid // 4096, pid % 4096
        return e


def _ran_on(r: EmbeddedTrack) -> tuple[int, int]:
    """(torch threads, pid) a ThreadProbe result was computed with."""
    e = r.embedding["probe"]
    return int(e[0]), int(e[1]) * 4096 + int(e[2])


def test_thread_count_is_set_for_the_run_and_restored(audio_files):
    probe = {"probe": ThreadProbe(list(GENRES), FeatureConfig())}
    before = torch.get_num_threads()
    torch.set_num_threads(3)     # not the run's count, on any machine
    try:
        [r] = embed_paths(audio_files[:1], probe, threads=1, cache=False)
        assert _ran_on(r) == (1, os.getpid())          # in this process, on one thread
        assert torch.get_num_threads() == 3
        [r] = embed_paths(audio_files[:1], probe, threads=2, workers=0, cache=False)
        assert _ran_on(r)[0] == 2 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before


def test_two_workers_each_run_one_torch_thread(audio_files, monkeypatch, tmp_path):
    """A forced 2-worker run: the files are embedded in two other processes,
    each on one torch thread, although a new process would start with three."""
    monkeypatch.setenv("PROBE_START_THREADS", "3")   # what each worker starts with
    monkeypatch.setenv("PROBE_MEET", str(tmp_path))
    monkeypatch.setenv("PROBE_WORKERS", "2")
    probe = {"probe": ThreadProbe(list(GENRES), FeatureConfig())}
    before = torch.get_num_threads()
    try:
        out = list(embed_paths(audio_files, probe, batch_size=1, workers=2, cache=False))
    finally:
        torch.set_num_threads(before)   # the copy made here for inference unpickled a probe too
    assert [r.error for r in out] == [None] * len(audio_files)
    ran = [_ran_on(r) for r in out]
    assert {threads for threads, _ in ran} == {1}
    pids = {pid for _, pid in ran}
    assert len(pids) == 2 and os.getpid() not in pids


def test_rejects_no_models(audio_files):
    with pytest.raises(ValueError, match="no models"):
        list(embed_paths(audio_files, {}))


def test_mixed_feature_settings_decode_once_and_match_single_models(audio_files, tmp_path, monkeypatch):
    """Models at 12 and 16 kHz in one run: each file is decoded once, each
    config gets its own cached log-mel, and every model's output equals a
    run of that model alone."""
    import core.catalog.pipeline as pl

    torch.manual_seed(0)
    mixed = {"a": build_model("cnn", ["x", "y"], FeatureConfig()).eval(),
             "b": build_model("crnn", ["x", "y"], FeatureConfig(sample_rate=16_000)).eval()}
    decodes = []
    real = pl.load_multi
    monkeypatch.setattr(pl, "load_multi", lambda p, cfgs: decodes.append(len(cfgs)) or real(p, cfgs))
    both = list(embed_paths(audio_files[:3], mixed, workers=0, cache=tmp_path))
    assert decodes == [2, 2, 2]                       # one decode per file, for both configs
    assert len({p.name for p in tmp_path.iterdir()}) == 2   # one cache folder per config
    for name, m in mixed.items():
        alone = list(embed_paths(audio_files[:3], {name: m}, workers=0, cache=False))
        for r, s in zip(both, alone):
            np.testing.assert_allclose(r.embedding[name], s.embedding[name], atol=1e-5)
    n = len(decodes)
    again = list(embed_paths(audio_files[:3], mixed, workers=0, cache=tmp_path))
    assert len(decodes) == n                          # all log-mels came from the caches
    assert all(np.array_equal(r.embedding["b"], s.embedding["b"]) for r, s in zip(both, again))


def test_embed_batch_is_a_columnar_pure_function(tiny_artifacts, audio_files, tmp_path):
    out = embed_batch({"path": np.array(audio_files[:2] + [str(tmp_path / "gone.wav")])},
                      artifacts_dir=tiny_artifacts)
    assert out["path"].tolist()[:2] == audio_files[:2]
    assert out["error"][0] == "" and "gone.wav" in out["error"][2]
    for name, dim in (("cnn", 128), ("crnn", 32)):
        assert out[f"{name}_embedding"].shape == (3, dim)
        assert out[f"{name}_probs"].shape == (3, len(GENRES))
        assert np.isfinite(out[f"{name}_embedding"][:2]).all()
        assert np.isnan(out[f"{name}_embedding"][2]).all()
    assert not list(tmp_path.rglob("*.npy"))  # pure: no cache written


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask not installed")
def test_embed_batch_runs_under_dask_processes(tiny_artifacts, audio_files):
    """The engine recipe of README.md (Performance), in local mode: partitions of
    paths go to separate worker processes, each calling embed_batch."""
    import dask
    import dask.bag as db

    bag = db.from_sequence(audio_files, npartitions=2)
    parts = bag.map_partitions(lambda paths: [embed_batch({"path": list(paths)},
                                                          artifacts_dir=str(tiny_artifacts))])
    with dask.config.set(scheduler="processes", num_workers=2):
        batches = parts.compute()
    paths = [p for b in batches for p in b["path"].tolist()]
    emb = np.concatenate([b["crnn_embedding"] for b in batches])
    assert sorted(paths) == sorted(audio_files)
    local = {r.path: r.embedding["crnn"] for r in embed_paths(audio_files, load_models(tiny_artifacts),
                                                            workers=0, cache=False)}
    for p, e in zip(paths, emb):
        assert np.allclose(e, local[p], atol=1e-5)


def test_embed_batch_runs_under_ray_data(tiny_artifacts, audio_files):
    """README's Ray recipe in local mode: Ray Data ``map_batches`` over batches of
    paths in Ray worker processes gives the in-process pipeline's results."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             configure_logging=False)
    try:
        ds = ray.data.from_items([{"path": p} for p in audio_files])
        rows = ds.map_batches(embed_batch, batch_size=2, batch_format="numpy",
                              fn_kwargs={"artifacts_dir": str(tiny_artifacts)}).take_all()
    finally:
        ray.shutdown()
    assert sorted(r["path"] for r in rows) == sorted(audio_files)
    local = {r.path: r for r in embed_paths(audio_files, load_models(tiny_artifacts), workers=0, cache=False)}
    for r in rows:
        assert r["error"] == ""
        want = local[r["path"]]
        for name in want.embedding:
            assert np.allclose(r[f"{name}_embedding"], want.embedding[name], atol=1e-5)
            assert np.allclose(r[f"{name}_probs"], want.probs[name], atol=1e-5)


@real_data
def test_real_clips_embed(models):
    files = sorted(Path(REAL_DATA[0]).rglob("*.mp3"))[:3]
    for r in embed_paths([str(f) for f in files], models, workers=0, cache=False):
        assert isinstance(r, EmbeddedTrack) and r.error is None
        assert all(np.isfinite(v).all() for v in r.embedding.values())


# --------------------------------------------------------------------------- hostile corpus


def test_embed_paths_batch_completes_with_errors_per_item(corpus, tiny_artifacts):
    # One model is enough here (the CLI test runs both); CPU is shared.
    models = {"cnn": load_model("cnn", tiny_artifacts)}
    paths = [str(c.path) for c in corpus] + [str(corpus[0].path.parent / "missing.wav")]
    seen = []
    out = list(embed_paths(paths, models, batch_size=4, progress=lambda d, n: seen.append((d, n))))
    assert [r.path for r in out] == paths
    assert seen[-1] == (len(paths), len(paths))
    for case, r in zip(corpus, out):
        if case.expect is OK:
            assert r.error is None, r.error
            for name, m in models.items():
                assert r.embedding[name].shape == (m.embedding_dim,)
                assert np.all(np.isfinite(r.embedding[name])) and np.all(np.isfinite(r.probs[name]))
        elif case.expect != "either":
            assert r.error and case.expect in r.error and "\n" not in r.error
            assert not r.embedding
    assert out[-1].error and "cannot read" in out[-1].error
