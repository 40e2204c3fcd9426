"""benchmarks.tag_prior_probe: its guarded choice (the arithmetic is
core.models.tag_prior's, tested in test_tag_prior)."""

from __future__ import annotations

from benchmarks.tag_prior_probe import guarded


def test_guarded_takes_the_best_loso_row_that_keeps_in_source_val():
    head = {"val": {"accuracy": 0.5, "macro_auc": 0.9}}

    def row(acc, val_acc, val_auc):
        return {"mean": {"accuracy": acc, "macro_auc": 0.8},
                "in_source": {"val": {"accuracy": val_acc, "macro_auc": val_auc}}}
    rows = [row(0.7, 0.4, 0.95), row(0.6, 0.55, 0.9), row(0.55, 0.6, 0.91), row(0.65, 0.6, 0.89)]
    assert guarded(rows, head) is rows[1]
    assert guarded(rows[:1], head) is None
