"""core.recommend.study_stats: like rates, paired t-tests and power, on plain tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.recommend.study_stats import paired_t_power, participants_needed, study_results
from core.recommend.study_trials import DECOY, METHOD1, METHOD2


@pytest.mark.parametrize("d_z, n", [(0.5, 34), (0.8, 15), (0.2, 199), (-0.5, 34)])
def test_participants_needed_matches_power_tables(d_z, n):
    # Two-sided paired t, alpha 0.05, 80 % power (G*Power / Cohen 1988 tables).
    assert participants_needed(d_z) == n
    assert paired_t_power(d_z, n) >= 0.8 > paired_t_power(d_z, n - 1)
    assert participants_needed(0.0) is None


def _table(likes: dict[str, list[list[int | None]]]) -> pd.DataFrame:
    """A long table like StudyStore.table(): ``likes[method][participant]`` is
    that participant's answers (1 like, 0 dislike, None unanswered)."""
    rows = []
    for m, per in likes.items():
        for i, answers in enumerate(per):
            rows += [{"participant": f"p{i}", "track_id": f"{m}-{i}-{k}", "method": m, "liked": a}
                     for k, a in enumerate(answers)]
    df = pd.DataFrame(rows, columns=["participant", "track_id", "method", "liked"])
    df["liked"] = df["liked"].astype("Int64")
    return df


def test_study_results_from_a_plain_table():
    likes = {METHOD1: [[1, 0, 0, 0], [1, 1, 0, None], [0, 0, 0, 1]],
             METHOD2: [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 1]],
             DECOY: [[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]}
    res = study_results(_table(likes))
    per = res.per_participant
    assert list(per["participant"]) == ["p0", "p0", "p0", "p1", "p1", "p1", "p2", "p2", "p2"]
    m1 = per[per["method"] == METHOD1]
    assert list(m1["shown"]) == [4, 4, 4] and list(m1["answered"]) == [4, 3, 4]
    assert np.allclose(m1["like_rate"], [0.25, 2 / 3, 0.25])          # unanswered is not a dislike
    a = np.array([0.25, 2 / 3, 0.25])
    b = np.array([0.5, 1.0, 0.75])
    ref = stats.ttest_rel(a, b)
    t = res.main_test
    assert t.n == 3 and t.t == pytest.approx(ref.statistic) and t.p == pytest.approx(ref.pvalue)
    assert res.summary.set_index("method").loc[METHOD2, "likes"] == 9
    assert res.paired["method1_minus_method2"].to_numpy() == pytest.approx(a - b)
    empty = study_results(_table({}))
    assert empty.n_participants == 0 and math.isnan(empty.main_test.mean_diff)
