"""core.training.evaluate on a tiny generated data set, and on the real shared data."""

import json

import numpy as np
import pytest
from conftest import REAL_DATA, make_dataset, real_data

from core.audio.cache import LogMelCache
from core.config import FeatureConfig, Paths
from core.training.evaluate import BASELINE, evaluate


def test_evaluate_shape_on_tiny_data(tmp_path, tiny_dataset, tiny_artifacts):
    res = evaluate([tiny_dataset], split="test", artifacts_dir=tiny_artifacts,
                   cache=LogMelCache(FeatureConfig(), tmp_path), n_boot=20)
    assert set(res) == {"models", "comparison"}
    assert set(res["models"]) == {"cnn", "crnn", BASELINE}
    for rep in res["models"].values():
        assert set(rep["macro"]) >= {"roc_auc", "f1", "accuracy"}
        for g in ("Tones", "Noise", "Clicks"):
            assert set(rep["per_genre"][g]) >= {"precision", "recall", "f1", "roc_auc", "support"}
            assert rep["per_genre"][g]["support"] == 1
    assert "crnn_vs_cnn" in res["comparison"]
    json.dumps(res)  # serialisable


def test_genres_unknown_to_the_model_are_reported(tmp_path, tiny_artifacts):
    import csv

    d = make_dataset(tmp_path / "d", per_genre=3)
    rows = list(csv.DictReader(open(d / "metadata.csv")))
    rows[0]["genre"] = "Polka"
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = evaluate([d], split="test", artifacts_dir=tiny_artifacts,
                   cache=LogMelCache(FeatureConfig(), tmp_path / "c"), n_boot=10, with_baseline=False)
    assert res["comparison"]["skipped_genres"] == ["Polka"]


@real_data
@pytest.mark.skipif(not (Paths().artifacts / "crnn.safetensors").is_file(), reason="no shipped models")
def test_shipped_models_reproduce_the_model_card_and_beat_chance():
    """The numbers in artifacts/metrics.json are what the shipped weights give."""
    from core.models.artifacts import read_json
    shipped = read_json("metrics.json")
    res = evaluate(REAL_DATA, split="test", n_boot=0, with_baseline=False)
    for name in ("cnn", "crnn"):
        now, card = res["models"][name]["macro"], shipped["models"][name]["macro"]
        assert now["roc_auc"] == pytest.approx(card["roc_auc"], abs=0.01)
        assert now["accuracy"] == pytest.approx(card["accuracy"], abs=0.02)
        assert now["roc_auc"] > 0.75          # far above chance (0.5) on 11 genres


def test_any_split_name_and_all(tmp_path, tiny_artifacts):
    """A user's metadata with its own split names: ``holdout`` works, ``all``
    takes every track, and a split the data lacks is one clear error."""
    import csv

    from core.datasets import read_dataset
    from core.training.evaluate import select_split

    d = make_dataset(tmp_path / "d", per_genre=3)
    rows = list(csv.DictReader(open(d / "metadata.csv")))
    for r in rows:
        r["split"] = "holdout" if r["split"] == "test" else r["split"]
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = evaluate([d], split="holdout", artifacts_dir=tiny_artifacts,
                   cache=LogMelCache(FeatureConfig(), tmp_path / "c"), n_boot=5)
    assert res["comparison"]["split"] == "holdout"
    assert res["comparison"]["n_tracks"] == 3                     # one holdout clip per genre
    assert len(select_split(read_dataset(d), "all")) == 9
    with pytest.raises(ValueError, match="holdout"):
        select_split(read_dataset(d), "test")                     # the message lists what exists


def test_cli_evaluate_holdout_and_bad_split(tmp_path, tiny_artifacts, capsys):
    import csv

    from core.cli.main import main

    d = make_dataset(tmp_path / "d", per_genre=3)
    rows = list(csv.DictReader(open(d / "metadata.csv")))
    for r in rows:
        r["split"] = {"test": "holdout"}.get(r["split"], r["split"])
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["evaluate", "--data", str(d), "--split", "holdout", "--artifacts", str(tiny_artifacts),
                 "--bootstrap", "0"]) == 0
    assert "baseline_mfcc" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(d), "--split", "nosuch", "--artifacts", str(tiny_artifacts),
                 "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch" in err[0]


def test_evaluation_measures_what_the_index_serves(tmp_path, tiny_dataset, tiny_artifacts):
    """Evaluation (predict_data on cached log-mels) and the recommender's
    evaluation (predict_mels) give the probabilities the catalog index holds
    for the same files: same log-mels, same served model copies."""
    from core.catalog.pipeline import embed_paths
    from core.datasets import read_dataset
    from core.models.artifacts import load_models
    from core.training.evaluate import labelled_per_config, predict_data
    from core.training.train import predict_mels

    served = load_models(tiny_artifacts, optimise=True)
    tracks = [t for t in read_dataset(tiny_dataset) if t.split == "test"]
    labels = next(iter(served.values())).labels
    data = labelled_per_config(served, tracks, labels, tmp_path / "cache")
    pred = predict_data(served, data)
    ref = next(iter(data.values()))
    indexed = {r.path: r for r in embed_paths([t.path for t in ref.tracks], served, workers=0,
                                              cache=tmp_path / "cache2")}
    plain = load_models(tiny_artifacts)
    for name in served:
        want = np.stack([indexed[str(t.path)].probs[name] for t in ref.tracks])
        np.testing.assert_allclose(pred[name].probs, want, atol=1e-6, rtol=0)
        probs, emb = predict_mels(plain[name], data[plain[name].cfg.key()].mels)
        np.testing.assert_allclose(probs, want, atol=1e-6, rtol=0)
        np.testing.assert_allclose(emb, np.stack([indexed[str(t.path)].embedding[name] for t in ref.tracks]),
                                   atol=1e-5, rtol=0)
    assert np.ptp(want, axis=0).max() > 1e-4          # the tracks are told apart
