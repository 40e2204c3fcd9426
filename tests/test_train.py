"""core.train: a tiny model learns the generated genres; loss falls."""

import numpy as np
import pytest

from core.cache import LogMelCache
from core.config import FeatureConfig, TrainConfig
from core.datasets import genres_of, read_dataset
from core.train import load_labelled, predict_mels, train_model


@pytest.mark.parametrize("name", ["crnn", "cnn"])
def test_loss_falls_and_best_checkpoint_kept(tmp_path, tiny_dataset, name):
    feat = FeatureConfig(chunk_frames=64, window_hop_frames=64)
    tracks = read_dataset(tiny_dataset)
    labels = genres_of(tracks)
    cache = LogMelCache(feat, tmp_path / "cache")
    train = load_labelled([t for t in tracks if t.split == "train"], labels, cache, workers=0)
    val = load_labelled([t for t in tracks if t.split != "train"], labels, cache, workers=0)
    cfg = TrainConfig(model=name, epochs=12, batch_size=8, chunks_per_track=4, patience=20,
                      lr=3e-3, max_minutes=None)
    model, hist = train_model(name, train, val, labels, feat, cfg, log=lambda s: None,
                              show_progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["best_val_auc"] == max(hist["val_auc"])
    probs, emb = predict_mels(model, val.mels)
    # Tones, noise and clicks are easy: the trained model separates them.
    assert hist["best_val_auc"] >= 0.8
    assert (probs.argmax(1) == val.y).mean() >= 0.5
    assert emb.shape == (len(val), model.embedding_dim)
