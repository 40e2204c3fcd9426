"""core.models.artifacts: safetensors round trip, manifest verification."""

import json

import numpy as np
import pytest

from core.models.artifacts import (
    ArtifactError,
    available_models,
    load_model,
    load_models,
    read_json,
    update_manifest,
    write_json,
)


def test_round_trip_gives_identical_predictions(tiny_artifacts, tone_wav):
    from core.audio.load import load
    a = load_model("crnn", tiny_artifacts)
    b = load_model("crnn", tiny_artifacts)
    wave = load(tone_wav, a.cfg)
    np.testing.assert_allclose(a.predict(wave).probs, b.predict(wave).probs)
    assert a.labels == ["Tones", "Noise", "Clicks"]
    assert set(available_models(tiny_artifacts)) == {"cnn", "crnn"}


def test_tampered_and_missing_files_are_named(tmp_path, tiny_artifacts):
    import shutil
    d = tmp_path / "a"
    shutil.copytree(tiny_artifacts, d)
    data = bytearray((d / "cnn.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (d / "cnn.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"cnn\.safetensors.*make artifacts"):
        load_model("cnn", d)
    (d / "crnn.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_model("crnn", d)


def test_json_artifacts_are_verified(tmp_path, tiny_artifacts):
    import shutil
    d = tmp_path / "a"
    shutil.copytree(tiny_artifacts, d)
    write_json(d / "metrics.json", {"models": {}})
    with pytest.raises(ArtifactError, match="not in manifest"):
        read_json("metrics.json", d)
    update_manifest(d)
    assert read_json("metrics.json", d) == {"models": {}}
    (d / "metrics.json").write_text(json.dumps({"models": {"x": 1}}))
    with pytest.raises(ArtifactError, match="checksum"):
        read_json("metrics.json", d)


def test_no_models_is_empty(tmp_path):
    assert load_models(tmp_path) == {}


def test_optimised_serving_models_match(tiny_artifacts, tone_wav, monkeypatch):
    from core.audio.load import load
    monkeypatch.setenv("GENRE_BFLOAT16", "off")   # float32 is exact; bfloat16's tolerance: test_optimise
    plain = load_models(tiny_artifacts)
    fast = load_models(tiny_artifacts, optimise=True)
    wave = load(tone_wav, plain["cnn"].cfg)
    for name in plain:
        a, b = plain[name].predict(wave), fast[name].predict(wave)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-3)
        # Same vectors, same identity: an index built with either stays current.
        assert fast[name].fingerprint() == plain[name].fingerprint()
