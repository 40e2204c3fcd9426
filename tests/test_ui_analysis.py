"""ui.analysis: an upload's cached analysis keeps spectrograms only when asked
(the Spectrograms page), and a view without the MFCC baseline is never served
to a caller that passes one (Classify after the Recommender, same file)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import ROOT, synth, write_audio

from core.models.artifacts import load_baseline, load_models


@pytest.fixture(scope="module")
def models(tiny_artifacts):
    return load_models(tiny_artifacts, optimise=True)


def test_lean_and_full_upload_analyses(models, tmp_path):
    from ui import analysis

    data = write_audio(tmp_path / "a.wav", synth("tone", 12.0)).read_bytes()
    lean = analysis.analyse_upload("a.wav", data, "tiny", models)
    full = analysis.analyse_upload("a.wav", data, "tiny", models, spectrograms=True)
    assert lean.spectrograms == {} and set(full.spectrograms) == set(models)
    assert lean.digest == full.digest and lean.probs == full.probs
    for m in models:
        np.testing.assert_array_equal(lean.embedding[m], full.embedding[m])
    # What the cache keeps (pickled) per entry: a few kB instead of the excerpts and log-mels.
    assert len(pickle.dumps(lean)) * 20 < len(pickle.dumps(full))


def test_the_baseline_is_part_of_the_cache_key(models, tmp_path):
    from ui import analysis

    base = load_baseline(ROOT / "artifacts")
    if base is None:
        pytest.skip("no shipped MFCC baseline")
    data = write_audio(tmp_path / "b.wav", synth("noise", 6.0)).read_bytes()
    assert analysis.analyse_upload("b.wav", data, "tiny", models).baseline is None     # the Recommender's call
    assert analysis.analyse_upload("b.wav", data, "tiny", models, base).baseline      # then Classify's
