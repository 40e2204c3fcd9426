"""A recommendation request: its settings are defined once (RecommendConfig) and
read by recommend(), the CLI and the page; the seed limit is one constant."""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pytest

from core.catalog.index import CatalogIndex
from core.cli.main import build_parser
from core.recommend import request
from core.recommend.evaluation import EvalConfig
from core.recommend.methods import recommend
from core.recommend.request import DEFAULTS, MAX_SEEDS, RecommendConfig, RecommendError, check


def test_recommend_signature_reads_every_default():
    params = inspect.signature(recommend).parameters
    for f in fields(RecommendConfig):
        assert params[f.name].default == getattr(DEFAULTS, f.name), f.name


def test_cli_flags_read_the_defaults():
    parser = build_parser()
    args = vars(parser.parse_args(["recommend"]))
    for f in fields(RecommendConfig):
        assert args[f.name] == getattr(DEFAULTS, f.name), f.name
    ev = vars(parser.parse_args(["recommend-eval"]))
    assert (ev["model"], ev["genre_weight"], ev["variant"]) == \
        (EvalConfig.model, EvalConfig.genre_weight, EvalConfig.variant) == \
        (DEFAULTS.model, DEFAULTS.genre_weight, DEFAULTS.variant)


def test_the_seed_limit_is_one_constant():
    from ui import seeds as ui

    assert ui.MAX_SEEDS is request.MAX_SEEDS
    n = MAX_SEEDS + 1
    idx = CatalogIndex.from_arrays([{"track_id": f"t{i}", "title": f"t{i}"} for i in range(n + 2)],
                                   {"cnn": np.eye(n + 2, 4, dtype=np.float32) + 0.1},
                                   {"cnn": np.full((n + 2, 2), 0.5, np.float32)}, ["A", "B"])
    assert len(recommend(idx, [f"t{i}" for i in range(MAX_SEEDS)], k=1, model="cnn")) == 1
    with pytest.raises(RecommendError, match=f"give 1 to {MAX_SEEDS} seed tracks"):
        recommend(idx, [f"t{i}" for i in range(n)], k=1, model="cnn")


@pytest.mark.parametrize("change, match", [
    (dict(method="nope"), "unknown method"), (dict(variant="x"), "unknown variant"),
    (dict(k=0), "k must be at least 1"), (dict(genre_weight=1.5), "between 0 and 1"),
    (dict(distance="pnorm", p=0.5), "p must be at least 1"), (dict(model="cnn+"), "at least two models"),
    (dict(model="cnn+nope"), "model nope is not in the index"),
])
def test_check_names_what_is_wrong(change, match):
    idx = CatalogIndex.from_arrays([{"track_id": "a"}], {"cnn": np.ones((1, 2), np.float32)},
                                   {"cnn": np.ones((1, 2), np.float32) / 2}, ["A", "B"])
    cfg = RecommendConfig(**{**DEFAULTS.to_dict(), "model": "cnn", **change})
    with pytest.raises(RecommendError, match=match):
        check(idx.snapshot(), cfg)
    check(idx.snapshot(), RecommendConfig(**{**DEFAULTS.to_dict(), "model": "cnn"}))
