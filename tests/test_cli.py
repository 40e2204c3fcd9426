"""``python -m core``: help texts, classify (the hostile corpus in one call,
tampered artifacts), train/evaluate end to end on tiny data."""

import argparse
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from hostile import OK


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
    assert abs(lines[0]["seconds_heard"] - 3.0) < 0.1 and lines[0]["repeated_to_fill_window"]   # 3 s < the window
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


# --------------------------------------------------------------------------- hostile input


def test_classify_cli_batch(corpus, tiny_artifacts):
    """One call, every case: each bad file is exactly one stderr line, exit 2,
    and the good files in the same call still print their results."""
    files = [str(c.path) for c in corpus]
    proc = subprocess.run([sys.executable, "-m", "core", "classify", "--artifacts",
                           str(tiny_artifacts), *files], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = proc.stderr.splitlines()
    ok_files = [r["file"] for r in results]
    bad_files = [line.split(": ", 2)[1] for line in errors]
    assert sorted(ok_files + bad_files) == sorted(files), proc.stderr  # nothing else on stderr
    for case in corpus:
        if case.expect is OK:
            assert str(case.path) in ok_files
        elif case.expect != "either":
            line = errors[bad_files.index(str(case.path))]
            assert line.startswith(f"error: {case.path}: ") and case.expect in line, line
    for r in results:
        assert set(r["cnn"]) == {"Tones", "Noise", "Clicks"} and r["crnn_top"] in r["crnn"]
        assert all(0.0 <= p <= 1.0 for p in r["cnn"].values())


def test_classify_cli_with_tampered_artifacts(artifacts_copy, tone_wav):
    path = artifacts_copy / "cnn.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    proc = subprocess.run([sys.executable, "-m", "core", "classify", "--artifacts",
                           str(artifacts_copy), str(tone_wav)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "checksum mismatch" in proc.stderr and str(path) in proc.stderr
    assert "make artifacts" in proc.stderr


def test_without_data_folders_every_command_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    """--data, else the shared folders; with neither, one line (the training commands
    exit with it, recommend-eval returns the bad-input status)."""
    import core.cli
    from core.cli.main import main

    given = argparse.Namespace(data=[str(tmp_path)])
    assert core.cli.data_dirs(given) == [tmp_path]
    monkeypatch.setattr(core.cli, "shared_data_dirs", lambda: [])
    assert core.cli.data_dirs(argparse.Namespace(data=None)) == []
    line = "error: no --data folder given and ../shared/data not found"
    for argv in (["baseline"], ["calibrate"], ["trunk-features", "--out", str(tmp_path)], ["loso"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == line
    assert main(["recommend-eval", "--index", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == line
