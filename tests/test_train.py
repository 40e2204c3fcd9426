"""core.training.train: a tiny model learns the generated genres; loss falls."""

import pytest

from core.audio.cache import LogMelCache
from core.config import FeatureConfig, TrainConfig
from core.datasets import genres_of, read_dataset
from core.training.train import load_labelled, predict_mels, train_model


def _tiny(tmp_path, tiny_dataset):
    """64-frame chunks of the tiny dataset: feature config, labels, train, val."""
    feat = FeatureConfig(chunk_frames=64, window_hop_frames=64)
    tracks = read_dataset(tiny_dataset)
    labels = genres_of(tracks)
    cache = LogMelCache(feat, tmp_path / "cache")
    train = load_labelled([t for t in tracks if t.split == "train"], labels, cache, workers=0)
    val = load_labelled([t for t in tracks if t.split != "train"], labels, cache, workers=0)
    return feat, labels, train, val


@pytest.mark.parametrize("name", ["crnn", "cnn"])
def test_loss_falls_and_best_checkpoint_kept(tmp_path, tiny_dataset, name):
    feat, labels, train, val = _tiny(tmp_path, tiny_dataset)
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


@pytest.mark.parametrize("name", ["cnn_msd", "crnn_msd"])
def test_transfer_heads_learn_on_a_frozen_trunk(tmp_path, tiny_dataset, name, monkeypatch):
    """A few epochs of the MSD family's training lower the loss, leave the
    frozen trunk untouched and cache its features once per track."""
    import torch

    import core.training.train as tr
    from core.models import build_model
    from core.models.msd import MSD_FEATURES

    # A random trunk is as good as the wheel's for this: only the head trains.
    real_build = tr.build_model
    monkeypatch.setattr(tr, "build_model", lambda n, labels, **kw: real_build(n, labels, pretrained=False, **kw))
    tracks = read_dataset(tiny_dataset)
    labels = genres_of(tracks)
    cache = LogMelCache(MSD_FEATURES, tmp_path / "cache" / "logmel")
    train = load_labelled([t for t in tracks if t.split == "train"], labels, cache, workers=0)
    val = load_labelled([t for t in tracks if t.split != "train"], labels, cache, workers=0)
    cfg = TrainConfig(model=name, epochs=8, batch_size=4, chunks_per_track=4, patience=20,
                      lr=3e-3, max_minutes=None)
    torch.manual_seed(0)
    trunk_before = {k: v.clone() for k, v in build_model(name, labels, pretrained=False).trunk.state_dict().items()}
    model, hist = tr.train_transfer(name, train, val, labels, cfg, log=lambda s: None,
                                    cache_root=tmp_path / "cache" / "logmel", show_progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["best_val_auc"] == max(hist["val_auc"])
    assert hist["n_trained_parameters"] < hist["n_parameters"] / 2
    for k, v in model.trunk.state_dict().items():       # frozen: same as built (seeded)
        assert torch.equal(v, trunk_before[k]), k
    from core.audio.cache import content_hash

    cached = {p.stem for p in (tmp_path / "cache" / "trunk").rglob("*.npy")}
    assert cached == {content_hash(t.path) for t in train.tracks + val.tracks}   # one entry per file


def test_training_batches_draw_from_the_waveform_augmentation_bank(tmp_path, tiny_dataset):
    import numpy as np

    feat, labels, train, val = _tiny(tmp_path, tiny_dataset)
    cfg = TrainConfig(model="cnn", epochs=2, batch_size=8, patience=20, max_minutes=None,
                      wave_augment=1, wave_augment_p=1.0)

    def run(bank):
        return train_model("cnn", train, val, labels, feat, cfg, log=lambda s: None,
                           show_progress=False, aug_bank=bank)[1]["train_loss"]
    same = run(train.mels[:, None].copy())
    assert run(train.mels[:, None].copy()) == same                 # seeded
    assert run(np.zeros_like(train.mels[:, None])) != same          # the bank is what trains
