"""benchmarks.tag_prior_probe: which genres a tag set covers, the z-scored
prior, and the two ways it joins the head."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from benchmarks.tag_prior_probe import guarded, prior, tag_scores, with_prior
from core.models.trunks import TRUNKS


def _tags(trunk: str, **probs: float) -> np.ndarray:
    """One clip's ``(1, 50)`` tag probabilities of ``trunk``: 0.1, and ``probs`` by tag name."""
    row = np.full((1, len(TRUNKS[trunk].tags)), 0.1)
    for name, p in probs.items():
        row[0, TRUNKS[trunk].tags.index(name)] = p
    return row


def test_tag_scores_cover_genres_a_tag_names_and_average_over_trunks():
    labels = ["Classical", "Hip-Hop", "Latin", "Jazz"]
    msd = _tags("msd_vgg", jazz=0.8, **{"Hip-Hop": 0.5})
    mtt = _tags("mtt_vgg", classical=0.9)
    scores, covered = tag_scores({"msd_vgg": msd, "mtt_vgg": mtt}, labels, "prob")
    assert covered.tolist() == [True, True, False, True]        # no tag says Latin
    assert np.allclose(scores[0], [0.9, 0.5, 0.0, 0.8])
    msd_only, covered = tag_scores({"msd_vgg": msd, "msd_musicnn": _tags("msd_musicnn", jazz=0.4)}, labels, "prob")
    assert covered.tolist() == [False, True, False, True]       # MSD's tags never name Classical
    assert np.isclose(msd_only[0, 3], 0.6)                      # mean of the two trunks' "jazz"
    logit, _ = tag_scores({"msd_vgg": msd}, labels, "logit")
    assert np.isclose(logit[0, 3], np.log(0.8 / 0.2))


def test_prior_is_z_scored_on_the_training_rows_and_zero_where_uncovered():
    scores = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 9.0]])
    z = prior(scores, np.array([True, False]), train=np.array([0, 1]), rows=np.array([2]))
    assert np.allclose(z, [[0.0, 0.0]])                         # 2 is the mean of 1 and 3; genre 1 uncovered
    z = prior(scores, np.array([True, True]), train=np.array([0, 1]), rows=np.array([0, 1]))
    assert np.allclose(z[:, 0], [-1.0, 1.0])


def test_grouped_keeps_the_uncovered_genres_mass_and_add_does_not():
    head = log_softmax(np.array([[2.0, 1.0, 1.5]]), 1)          # genre 2 uncovered
    covered = np.array([True, True, False])
    z = np.array([[-1.0, 2.0, 0.0]])
    grouped = np.exp(with_prior(head, z, covered, 1.0, "grouped"))
    added = np.exp(with_prior(head, z, covered, 1.0, "add"))
    for p in (grouped, added):
        assert np.isclose(p.sum(), 1.0)
        assert p[0, 1] > p[0, 0]                                # the tag turns the covered ranking
    assert np.isclose(grouped[0, 2], np.exp(head[0, 2]))        # uncovered mass kept…
    assert added[0, 2] < np.exp(head[0, 2]) - 0.05              # …or lost
    assert np.allclose(with_prior(head, z, covered, 0.0, "grouped"), head)


def test_guarded_takes_the_best_loso_row_that_keeps_in_source_val():
    head = {"val": {"accuracy": 0.5, "macro_auc": 0.9}}
    def row(acc, val_acc, val_auc):
        return {"mean": {"accuracy": acc, "macro_auc": 0.8}, "in_source": {"val": {"accuracy": val_acc,
                                                                                   "macro_auc": val_auc}}}
    rows = [row(0.7, 0.4, 0.95), row(0.6, 0.55, 0.9), row(0.55, 0.6, 0.91), row(0.65, 0.6, 0.89)]
    assert guarded(rows, head) is rows[1]
    assert guarded(rows[:1], head) is None
