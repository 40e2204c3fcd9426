"""core.training.recurrent: the CRNN's second stage trains its GRU and genre
layers on the frozen conv stack's sequences, and what it validates on is what
the served copy computes."""

import numpy as np
import pytest
import torch

from core.audio.cache import LogMelCache
from core.config import FeatureConfig, TrainConfig
from core.datasets import genres_of, read_dataset
from core.models import build_model
from core.training.recurrent import conv_sequences, train_recurrent
from core.training.train import load_labelled, predict_mels

FULL = FeatureConfig(chunk_frames=1366, window_hop_frames=1366)


@pytest.fixture(scope="module")
def data(tiny_dataset, tmp_path_factory):
    tracks = read_dataset(tiny_dataset)
    labels = genres_of(tracks)
    cache = LogMelCache(FULL, tmp_path_factory.mktemp("cache"))
    train = load_labelled([t for t in tracks if t.split == "train"], labels, cache, workers=0)
    val = load_labelled([t for t in tracks if t.split != "train"], labels, cache, workers=0)
    return labels, train, val


def test_gru_and_head_learn_while_the_conv_stack_stays_frozen(data):
    labels, train, val = data
    torch.manual_seed(0)
    model = build_model("crnn", labels, FULL)
    convs = {k: v.clone() for k, v in model.convs.state_dict().items()}
    gru = {k: v.clone() for k, v in model.gru.state_dict().items()}
    cfg = TrainConfig(epochs=15, batch_size=8, chunks_per_track=4, patience=30, lr=3e-3, max_minutes=None)
    model, hist = train_recurrent(model, train, val, labels, cfg, log=lambda s: None, show_progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["best_val_auc"] == max(hist["val_auc"]) >= 0.8
    assert hist["stage2_steps"] == 15 >= hist["stage2_min_steps"] == 12
    assert all(torch.equal(v, model.convs.state_dict()[k]) for k, v in convs.items())
    assert not all(torch.equal(v, model.gru.state_dict()[k]) for k, v in gru.items())
    # Validation read the served copy's full window: predict_mels gives the same AUC.
    probs, _ = predict_mels(model, val.mels)
    from core.training.metrics import macro_auc

    assert macro_auc(val.y, probs) == pytest.approx(hist["best_val_auc"], abs=1e-6)


def test_conv_sequences_shape_and_too_short_windows(data):
    labels, train, val = data
    model = build_model("crnn", labels, FULL)
    seq = conv_sequences(model, val.mels)
    assert seq.shape == (len(val), 15, model.channels[-1])
    assert np.isfinite(seq).all()
    with pytest.raises(ValueError, match="min_steps"):
        train_recurrent(model, train, val, labels, TrainConfig(epochs=1), log=lambda s: None,
                        min_steps=16, show_progress=False)


def test_cli_stage_two_needs_a_trained_crnn_to_continue(tiny_dataset, tmp_path):
    from core.cli.main import main

    with pytest.raises(SystemExit, match="give --init-from"):
        main(["train", "--model", "crnn", "--recurrent-only", "--data", str(tiny_dataset),
              "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="crnn.safetensors"):
        main(["train", "--model", "crnn", "--recurrent-only", "--data", str(tiny_dataset),
              "--init-from", str(tmp_path / "cnn.safetensors"), "--out", str(tmp_path)])


def test_stage_two_reads_the_waveform_augmentation_bank(data):
    labels, train, val = data
    cfg = TrainConfig(epochs=1, batch_size=8, max_minutes=None, wave_augment=1, wave_augment_p=1.0)

    def loss(bank):
        torch.manual_seed(0)
        model = build_model("crnn", labels, FULL)
        return train_recurrent(model, train, val, labels, cfg, log=lambda s: None, show_progress=False,
                               aug_bank=bank)[1]["train_loss"]
    same = loss(train.mels[:, None].copy())
    assert loss(train.mels[:, None].copy()) == same
    assert loss(np.zeros_like(train.mels[:, None])) != same
