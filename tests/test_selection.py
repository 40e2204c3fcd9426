"""core.models.selection: the default model is the best one on validation, read from selection.json."""

from __future__ import annotations

import json

import pytest

from core.models.selection import SELECTION_FILE, best_model, read_selection


def _write(tmp_path, data) -> None:
    (tmp_path / SELECTION_FILE).write_text(data if isinstance(data, str) else json.dumps(data))


def test_best_model_from_the_file(tmp_path):
    _write(tmp_path, {"best_model": "b", "criterion": "val macro roc_auc", "val": {"a": 0.8, "b": 0.9}})
    assert best_model(["a", "b", "c"], tmp_path) == "b"
    assert read_selection(tmp_path)["criterion"] == "val macro roc_auc"


def test_missing_or_invalid_file_gives_the_first_name(tmp_path):
    assert best_model(["x", "y"], tmp_path) == "x"
    for bad in ("{not json", json.dumps([1, 2]), json.dumps({"best_model": 3}),
                json.dumps({"best_model": "y", "val": "nope"})):
        _write(tmp_path, bad)
        assert read_selection(tmp_path) is None
        assert best_model(["x", "y"], tmp_path) == "x"


def test_best_model_not_offered_falls_back_to_the_best_offered_score(tmp_path):
    _write(tmp_path, {"best_model": "gone", "val": {"x": 0.7, "y": 0.8, "gone": 0.99, "z": float("nan")}})
    assert best_model(["x", "y", "z"], tmp_path) == "y"
    assert best_model(["z"], tmp_path) == "z"


def test_no_names_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        best_model([], tmp_path)


def test_reads_the_configured_artifacts_folder(tmp_path, monkeypatch):
    _write(tmp_path, {"best_model": "y", "val": {}})
    monkeypatch.setenv("GENRE_ARTIFACTS", str(tmp_path))
    assert best_model(["x", "y"]) == "y"
