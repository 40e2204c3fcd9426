"""Simulated-listener evaluation: listeners, statistics, JSON shape, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA, make_dataset, real_data
from core.config import PROJECT_ROOT
from core.index import CatalogIndex
from core.recommend_eval import (MFCC, EvalConfig, evaluate_index, paired_t, recommend_eval,
                                 simulate_listeners)


def synthetic_catalog(n_genres: int = 4, per_genre: int = 40, noise: float = 0.6, seed: int = 0,
                      with_mfcc: bool = True) -> CatalogIndex:
    """Genre clusters; the classifier is right ~80 % of the time; the "mfcc"
    pseudo-model carries no genre information at all."""
    rng = np.random.default_rng(seed)
    labels = [f"G{i}" for i in range(n_genres)]
    rows, emb, probs = [], [], []
    for gi, g in enumerate(labels):
        for j in range(per_genre):
            c = np.zeros(n_genres * 2)
            c[gi] = 1.0
            emb.append(c + noise * rng.standard_normal(len(c)))
            pred = gi if rng.random() < 0.8 else int(rng.integers(n_genres))
            p = np.full(n_genres, 0.05)
            p[pred] = 0.9
            probs.append(p)
            rows.append({"track_id": f"{g}_{j}", "genre": g, "artist": f"{g} artist {j % 5}",
                         "title": f"{g} song {j}"})
    E, P = np.array(emb, np.float32), np.array(probs, np.float32)
    embeddings, prob = {"crnn": E, "cnn": E + 0.1 * rng.standard_normal(E.shape)}, {"crnn": P, "cnn": P}
    if with_mfcc:
        embeddings[MFCC] = rng.standard_normal((len(rows), 12))
        prob[MFCC] = np.full_like(P, 1 / n_genres)
    return CatalogIndex.from_arrays(rows, embeddings, prob, labels)


def test_simulated_listeners_draw_from_their_genres():
    genres = ["a"] * 10 + ["b"] * 6 + ["c"] * 5 + ["d"] * 3
    ls = simulate_listeners(genres, n_single=30, n_mixed=20, n_seeds=5, seed=1)
    single = [x for x in ls if x.kind == "single"]
    mixed = [x for x in ls if x.kind == "mixed"]
    assert len(single) == 30 and len(mixed) == 20
    # "c" has 5 tracks: no same-genre track would be left to find, so it never seeds alone.
    assert {x.genres[0] for x in single} == {"a", "b"}
    assert sum(x.genres[0] == "a" for x in single) == 15            # round-robin: balanced
    for x in ls:
        assert len(x.seeds) == len(set(x.seeds)) == 5
        assert {genres[s] for s in x.seeds} == set(x.genres)
    for x in mixed:
        assert [genres[s] for s in x.seeds].count(x.genres[0]) == 3
    assert simulate_listeners(genres, 30, 20, seed=1)[7].seeds == ls[7].seeds   # reproducible


def test_paired_t_sign_and_degenerate_cases():
    a = np.array([0.2, 0.4, 0.2, 0.6, 0.4])
    r = paired_t(a, a + np.array([0.2, 0.0, 0.4, 0.2, 0.2]))
    assert r["t"] < 0 and r["p"] < 0.05 and r["mean_diff"] == pytest.approx(-0.2)
    same = paired_t(a, a)
    assert same["t"] == 0 and same["p"] == 1


def test_evaluation_on_generated_catalog():
    idx = synthetic_catalog()
    res = evaluate_index(idx, EvalConfig(n_listeners=300, seed=0))
    assert set(res) >= {"methods", "paired_t", "n_listeners"}
    assert set(res["methods"]) == {"cosine", "genre", "random", "mfcc"}
    assert res["n_listeners"] == 300 and set(res["paired_t"]) == {"t", "p"}
    for m in res["methods"].values():
        assert 0 <= m["precision_at_5"] <= 1
        lo, hi = m["ci95"]
        assert lo <= m["precision_at_5"] <= hi
        assert 0 <= m["catalog_coverage"] <= 1 and 0 <= m["artist_hit_rate"] <= 1
    rnd = res["methods"]["random"]
    # Random picks: precision ≈ 1 / number of genres for single-genre listeners
    # (exactly (n_g - 5) / (N - 5) = 35/155 here), ≈ 2 / n_genres for two-genre ones.
    assert rnd["single"]["precision"] == pytest.approx(1 / 4, abs=0.05)
    assert rnd["mixed"]["precision"] == pytest.approx(2 / 4, abs=0.07)
    assert rnd["precision_at_5"] == pytest.approx(rnd["expected"], abs=0.04)
    assert rnd["single"]["expected"] == pytest.approx(35 / 155)
    assert res["methods"]["mfcc"]["precision_at_5"] == pytest.approx(rnd["expected"], abs=0.06)
    # Informative embeddings beat random by far; genre information helps on top.
    cos, gen = res["methods"]["cosine"]["precision_at_5"], res["methods"]["genre"]["precision_at_5"]
    assert cos > rnd["precision_at_5"] + 0.3
    assert gen > cos
    assert res["paired_t"]["t"] < 0 and res["paired_t"]["p"] < 0.05
    assert res["ceiling"]["precision_at_5"] == 1.0
    assert "cosine_ensemble" in res["variants"] and "cosine_round2_feedback" in res["variants"]
    json.dumps(res)   # serialisable as is


def test_evaluation_refuses_catalogs_without_enough_tracks():
    with pytest.raises(ValueError, match="cannot simulate"):
        evaluate_index(synthetic_catalog(per_genre=3), EvalConfig(n_listeners=10))


def test_cli_recommend_eval_on_generated_audio(tmp_path, tiny_artifacts, capsys):
    from core.__main__ import main

    data = make_dataset(tmp_path / "data", per_genre=5, seconds=2.0)
    out = tmp_path / "receval.json"
    code = main(["recommend-eval", "--data", str(data), "--split", "train", "--json", str(out),
                 "--artifacts", str(tiny_artifacts), "--cache", str(tmp_path / "cache"),
                 "--n-seeds", "2", "--k", "2", "--listeners", "30", "--no-extras"])
    assert code == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"cosine", "genre", "random", "mfcc"}
    assert res["n_listeners"] == 30 and res["split"] == "train"
    assert res["catalog"]["n_tracks"] == 9
    assert "paired t (cosine vs genre" in capsys.readouterr().out


@real_data
def test_real_test_split(tmp_path):
    arts = PROJECT_ROOT / "artifacts"
    if not ((arts / "crnn.safetensors").is_file() and (arts / "manifest.json").is_file()):
        pytest.skip("shipped artifacts not built yet")
    res = recommend_eval(REAL_DATA, split="test", artifacts_dir=arts,
                         cfg=EvalConfig(n_listeners=100, extras=False))
    assert set(res["methods"]) == {"cosine", "genre", "random", "mfcc"}
    assert res["n_listeners"] == 100
    for m in res["methods"].values():
        assert {"precision_at_5", "ci95"} <= set(m)
    assert res["catalog"]["n_tracks"] >= 90
    rnd = res["methods"]["random"]
    assert rnd["precision_at_5"] == pytest.approx(rnd["expected"], abs=0.06)
    for kind in ("single", "mixed"):
        assert rnd[kind]["precision"] == pytest.approx(rnd[kind]["expected"], abs=0.06)
    json.dumps(res)
