"""``python -m core``: help texts, classify, train/evaluate end to end on tiny data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, env=None, timeout=600):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("cmd", ["train", "evaluate", "classify"])
def test_help(cmd):
    r = run(cmd, "--help")
    assert r.returncode == 0 and "usage" in r.stdout


def test_classify_good_and_bad_files(tmp_path, tiny_artifacts, tone_mp3):
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio")
    r = run("classify", tone_mp3, bad, tone_mp3, "--artifacts", tiny_artifacts)
    assert r.returncode == 2
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2                           # both good files still processed
    assert set(lines[0]["crnn"]) == {"Tones", "Noise", "Clicks"}
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "bad.mp3" in err[0]


def test_train_then_evaluate(tmp_path, tiny_dataset):
    out = tmp_path / "art"
    env = {"GENRE_CACHE": str(tmp_path / "cache")}
    for model in ("crnn", "cnn"):
        r = run("train", "--data", tiny_dataset, "--model", model, "--out", out, "--epochs", "1",
                "--chunk-frames", "64", "--batch-size", "8", env=env)
        assert r.returncode == 0, r.stderr[-500:]
        assert json.loads(r.stdout.strip().splitlines()[-1])["model"] == model
    assert (out / "crnn.safetensors").is_file() and (out / "manifest.json").is_file()
    r = run("evaluate", "--data", tiny_dataset, "--artifacts", out, "--json", out / "metrics.json",
            "--bootstrap", "10", env=env)
    assert r.returncode == 0, r.stderr[-500:]
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]["crnn"]) >= {"macro", "per_genre"}
    r = run("model-card", "--artifacts", out, env=env)
    assert r.returncode == 0, r.stderr[-500:]
    card = (out / "MODEL_CARD.md").read_text()
    assert "CRNN" in card and (out / "roc_curves.png").is_file()
