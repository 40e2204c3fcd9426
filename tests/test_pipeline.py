"""Batch embedding pipeline: same answers as the one-file path, cache reuse,
bounded work in flight, errors per file, and the pure batch function."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GENRES, REAL_DATA, real_data

import core.catalog.pipeline as pipeline
from core.catalog.pipeline import EmbeddedTrack, embed_batch, embed_paths
from core.config import FeatureConfig
from core.models import build_model
from core.models.artifacts import load_models
from core.models.inference import analyse
from core.models.optimise import optimise_for_inference


@pytest.fixture(scope="module")
def models(tiny_artifacts):
    return load_models(tiny_artifacts)


@pytest.fixture(scope="module")
def audio_files(tiny_dataset) -> list[str]:
    return sorted(str(p) for p in (tiny_dataset / "audio").rglob("*.mp3"))[:5]


def with_random_bn(model):
    """Batch-norm statistics that are not the identity, so folding is tested for real."""
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["cnn", "crnn"])
def test_optimised_model_computes_the_same(name):
    model = with_random_bn(build_model(name, list(GENRES), FeatureConfig()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimise_for_inference(model, bfloat16=False)   # float32: exact (bfloat16: test_optimise)
    x = torch.randn(2, 1, 96, 400)
    ref, got = model.predict_logmel(x), fast.predict_logmel(x)
    assert np.allclose(ref.probs, got.probs, atol=1e-5)
    assert np.allclose(ref.embedding, got.embedding, atol=1e-4)
    # The batch norms are gone from the copy, and the original is untouched.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.convs.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_results_match_the_single_file_path(models, audio_files, tmp_path):
    results = list(embed_paths(audio_files, models, batch_size=2, workers=0, cache=tmp_path))
    assert [r.path for r in results] == audio_files
    for r in results:
        assert r.error is None and len(r.digest) == 64
        a = analyse(r.path, models)
        for name in models:
            # Log-mels are used at float16 (as cached), hence the tolerance.
            assert np.allclose(r.probs[name], a.predictions[name].probs[0], atol=2e-3)
            assert np.allclose(r.embedding[name], a.predictions[name].embedding[0], atol=2e-3)


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


def test_thread_count_is_restored(models, audio_files):
    before = torch.get_num_threads()
    list(embed_paths(audio_files[:1], models, threads=1, cache=False))
    assert torch.get_num_threads() == before


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
