"""core.training.library_head: the per-genre replay stands in for the
training rows, its file round-trips without pickle and refuses a foreign
one, and a head adapts to a shifted library it has no label of."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AdaptConfig
from core.errors import ArtifactError, GenreError
from core.training.library_head import (
    GenreReplay,
    LibraryError,
    adapt_head,
    fit_replay,
    load_replay,
    replay_refit,
    save_replay,
)
from core.training.linear_head import ABSENT_BIAS, fit_linear_head


def _rows(rng, n=400, shift=(0.0, 0.0)):
    """Two genres apart on the first of three columns; ``shift`` moves them all."""
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 3)) + np.c_[2.0 * y - 1.0, np.zeros(n), np.zeros(n)] + np.r_[shift, 0.0]
    return x, y


def test_a_draw_has_each_genres_count_mean_and_spread_and_none_of_an_absent_genre():
    rng = np.random.default_rng(0)
    x, y = _rows(rng)
    x[:, 1] *= 3.0
    rep = fit_replay(x, y, 3, columns=np.array([0, 2, 4]), patches=1, c=1.0, rank=2)
    assert rep.count.tolist() == [200, 200, 0] and rep.components.shape == (3, 2, 3)
    rows, genres = rep.sample(seed=1)
    assert np.bincount(genres, minlength=3).tolist() == [200, 200, 0]
    for g in (0, 1):
        se = x[y == g].std(0) / np.sqrt(200)
        assert (np.abs(rows[genres == g].mean(0) - x[y == g].mean(0)) < 4 * se).all()
        assert np.allclose(rows[genres == g].std(0), x[y == g].std(0), rtol=0.2)
    assert np.array_equal(rep.sample(seed=1)[0], rows)                  # a seed gives one draw


def test_a_head_on_a_draw_decides_as_the_head_on_the_rows():
    rng = np.random.default_rng(1)
    x, y = _rows(rng)
    rep = fit_replay(x, y, 2, columns=np.array([1, 2, 3]), patches=1, c=1.0, rank=3)
    head = replay_refit(rep, np.zeros((0, 3)), np.zeros(0, np.int64), width=5)
    assert head.weight.shape == (2, 5) and not head.weight[:, [0, 4]].any()   # weight only on the columns
    clips = np.zeros((400, 5))
    clips[:, 1:4] = x
    real = fit_linear_head(x, y, 2, c=1.0)
    acc_draw, acc_rows = ((h.logits(v).argmax(1) == y).mean() for h, v in ((head, clips), (real, x)))
    assert abs(acc_draw - acc_rows) < 0.03 and acc_rows > 0.8


def test_the_file_round_trips_and_refuses_another_trunk_set_or_garbage(tmp_path):
    rep = fit_replay(np.random.default_rng(2).normal(size=(30, 4)), np.repeat([0, 1, 2], 10), 4,
                     columns=np.arange(4), patches=10, c=3e-5, rank=2, logit_scale=np.full(4, 2.5))
    path = save_replay(rep, tmp_path / "r.safetensors", {"trunks": ["a", "b"]})
    back = load_replay(path, trunks=["a", "b"])
    assert isinstance(back, GenreReplay) and back.patches == 10 and back.c == 3e-5
    assert back.count.tolist() == [10, 10, 10, 0] and np.allclose(back.logit_scale, 2.5)
    assert np.allclose(back.mean, rep.mean, atol=1e-6)
    with pytest.raises(ArtifactError, match="made for trunks"):
        load_replay(path, trunks=["a"])
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(GenreError, match="not a genre replay file"):
        load_replay(tmp_path / "bad.safetensors")


def test_a_head_adapts_to_a_shifted_library_without_its_labels():
    rng = np.random.default_rng(3)
    x, y = _rows(rng)
    head = fit_linear_head(x, y, 3, c=1.0)                               # genre 2 never seen
    rep = fit_replay(x, y, 3, columns=np.arange(3), patches=1, c=1.0, rank=3, logit_scale=np.full(3, 2.0))
    new, truth = _rows(rng, 1000, shift=(1.5, 0.0))                       # the library sits to the right
    before = (head.logits(new).argmax(1) == truth).mean()
    cfg = AdaptConfig(frac=1.0, rounds=2, min_tracks=50)
    raw = adapt_head(head, rep, new, cfg, calibrate=False)
    assert (raw.logits(new).argmax(1) == truth).mean() > before + 0.05
    assert raw.bias[2] == ABSENT_BIAS and not raw.weight[2].any()       # an unseen genre stays unseen
    served = adapt_head(head, rep, new, cfg)
    assert np.allclose(served.logits(new)[:, :2], 2.0 * raw.logits(new)[:, :2])   # its calibration folded in
    with pytest.raises(LibraryError, match="at least 50 tracks"):
        adapt_head(head, rep, new[:49], cfg)
