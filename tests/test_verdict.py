"""core.models.verdict: one genre only when it is likely enough."""

import numpy as np
import pytest

from core.models.verdict import VerdictConfig, VerdictError, verdict

LABELS = ["Jazz", "Classical", "Rock", "Pop"]


def test_a_clear_top_genre_is_named_with_its_probability():
    v = verdict([0.8, 0.1, 0.05, 0.05], LABELS)
    assert v.kind == "genre" and v.confident and v.genres == ("Jazz",)
    assert v.text == "Jazz — 80%"


def test_two_close_genres_are_said_to_be_between():
    v = verdict({"Jazz": 0.45, "Classical": 0.4, "Rock": 0.1, "Pop": 0.05})
    assert v.kind == "between" and not v.confident
    assert v.text == "between Jazz and Classical"
    assert v.probability == pytest.approx(0.85)


def test_a_flat_distribution_names_no_genre():
    v = verdict(np.full(4, 0.25), LABELS)
    assert v.kind == "unclear" and v.text.startswith("no clear genre")
    assert v.genres == ("Jazz", "Classical", "Rock")


def test_thresholds_come_from_the_config():
    p = [0.55, 0.3, 0.1, 0.05]
    assert verdict(p, LABELS).kind == "genre"
    assert verdict(p, LABELS, VerdictConfig(min_margin=0.3)).kind == "between"
    assert verdict(p, LABELS, VerdictConfig(min_top=0.6, min_pair=0.9)).kind == "unclear"


def test_bad_input_raises():
    with pytest.raises(VerdictError):
        verdict([0.5, 0.5], LABELS)
    with pytest.raises(VerdictError):
        verdict([np.nan, 1.0], ["a", "b"])
    with pytest.raises(VerdictError):
        VerdictConfig(min_top=1.5)
