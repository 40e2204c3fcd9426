"""core.models.artifacts: safetensors round trip, manifest verification,
tampered, missing and disguised files refused, no pickle anywhere."""

import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

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
    monkeypatch.setenv("GENRE_INT8", "off")
    plain = load_models(tiny_artifacts)
    fast = load_models(tiny_artifacts, optimise=True)
    wave = load(tone_wav, plain["cnn"].cfg)
    for name in plain:
        a, b = plain[name].predict(wave), fast[name].predict(wave)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-3)
        # Same vectors, same identity: an index built with either stays current.
        assert fast[name].fingerprint() == plain[name].fingerprint()


# --------------------------------------------------------------------------- artifact safety


def _assert_names(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert str(path) in msg and "make artifacts" in msg and "\n" not in msg


def test_tampered_artifact_is_refused(artifacts_copy):
    path = artifacts_copy / "crnn.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one bit pattern in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch") as exc:
        load_model("crnn", artifacts_copy)
    _assert_names(exc, path)
    with pytest.raises(ArtifactError):
        load_models(artifacts_copy)
    load_model("cnn", artifacts_copy)  # the untouched one still loads


def test_missing_artifact_and_manifest(artifacts_copy):
    (artifacts_copy / "cnn.safetensors").unlink()
    with pytest.raises(ArtifactError, match="artifact missing") as exc:
        load_model("cnn", artifacts_copy)
    _assert_names(exc, artifacts_copy / "cnn.safetensors")
    (artifacts_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest missing") as exc:
        load_model("crnn", artifacts_copy)
    _assert_names(exc, artifacts_copy / "manifest.json")


def test_artifact_not_in_manifest_and_tampered_json(artifacts_copy):
    (artifacts_copy / "metrics.json").write_text('{"macro": 1}')
    with pytest.raises(ArtifactError, match="not in manifest") as exc:
        read_json("metrics.json", artifacts_copy)
    _assert_names(exc, artifacts_copy / "metrics.json")
    update_manifest(artifacts_copy)
    assert read_json("metrics.json", artifacts_copy) == {"macro": 1}
    (artifacts_copy / "metrics.json").write_text('{"macro": 2}')
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_json("metrics.json", artifacts_copy)


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_disguised_as_safetensors_is_never_unpickled(artifacts_copy, tmp_path):
    marker = tmp_path / "pwned"
    path = artifacts_copy / "cnn.safetensors"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    update_manifest(artifacts_copy)  # even with a matching checksum
    with pytest.raises(ArtifactError, match="artifact unreadable") as exc:
        load_model("cnn", artifacts_copy)
    _assert_names(exc, path)
    assert not marker.exists()


def test_no_pickle_loading_in_the_code_or_the_repository():
    for src in (ROOT / "core").rglob("*.py"):
        text = src.read_text(encoding="utf-8")
        assert "import pickle" not in text and "joblib" not in text, src
        for part in text.split("torch.load(")[1:]:
            assert "weights_only=True" in part.split(")")[0], src
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    risky = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".bin")
    assert not [f for f in tracked.splitlines() if f.endswith(risky)]


# --------------------------------------------------------------------------- shipped manifest
def test_every_shipped_artifact_verifies():
    """Every file in artifacts/ is listed in manifest.json with its SHA-256, and
    every listed file is there (regenerate with update_manifest after a change)."""
    from core.models.artifacts import manifest_problems

    assert manifest_problems(ROOT / "artifacts") == []


def test_manifest_problems_name_each_kind(tmp_path, tiny_artifacts):
    import shutil

    from core.models.artifacts import manifest_problems

    d = tmp_path / "a"
    shutil.copytree(tiny_artifacts, d)
    assert manifest_problems(d) == []
    write_json(d / "extra.json", {})
    (d / "crnn.safetensors").unlink()
    with open(d / "cnn.safetensors", "ab") as f:
        f.write(b"x")
    assert manifest_problems(d) == ["crnn.safetensors: listed but missing", "extra.json: not in manifest",
                                    "cnn.safetensors: checksum mismatch"]


def test_a_report_written_into_the_artifacts_updates_the_manifest(tmp_path, tiny_artifacts):
    import shutil

    from core.models.artifacts import manifest_problems, write_report

    d = tmp_path / "a"
    shutil.copytree(tiny_artifacts, d)
    write_report(d / "recommend_eval.json", {"methods": {}}, d)
    assert manifest_problems(d) == [] and read_json("recommend_eval.json", d) == {"methods": {}}
    write_report(tmp_path / "elsewhere.json", {"x": 1}, d)      # not an artifact: manifest untouched
    assert "elsewhere.json" not in json.loads((d / "manifest.json").read_text())["files"]
