"""Listening study statistics: like rates per method, the paired t-tests
over participants (the paper's design), decoy-adjusted rates and power.

Everything here works on plain DataFrames (the store's :meth:`table
<core.recommend.study.StudyStore.table>`), so it is testable without a database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.recommend.study_trials import DECOY, METHOD1, METHOD2, METHOD_LABELS, METHODS


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of per-participant like rates, ``a`` minus ``b``."""

    a: str
    b: str
    n: int                           # participants with answers for both
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float                    # 95 % CI of the mean difference (t distribution)
    ci_high: float
    t: float
    p: float                         # two-sided, scipy.stats.ttest_rel
    d_z: float                       # Cohen's d_z = mean(diff) / sd(diff)
    note: str = ""                   # why a value is NaN, if it is

    def describe(self) -> str:
        """One line for people, e.g. for the results page or the CLI."""
        head = (f"{METHOD_LABELS.get(self.a, self.a)} vs {METHOD_LABELS.get(self.b, self.b)}: "
                f"like rate {_fmt(self.mean_a)} vs {_fmt(self.mean_b)} (n={self.n})")
        if self.note:
            return f"{head}; {self.note}"
        return (f"{head}; difference {self.mean_diff:+.3f} [95% CI {self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], t={self.t:.2f}, p={self.p:.3g}, d_z={self.d_z:.2f}")

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.__dict__.items()}


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def paired_test(per_participant: pd.DataFrame, a: str = METHOD1, b: str = METHOD2,
                measure: str = "like_rate") -> PairedTest:
    """Paired t-test, Cohen's d_z and 95 % CI of ``measure`` between methods.

    Only participants who answered at least one track of both methods count.
    """
    from scipy import stats

    nan = float("nan")
    wide = per_participant[per_participant["answered"] > 0].pivot(
        index="participant", columns="method", values=measure) \
        if len(per_participant) else pd.DataFrame()
    if a not in wide or b not in wide:
        pairs = np.empty((0, 2))
    else:
        pairs = wide[[a, b]].dropna().to_numpy(dtype=float)
    n = len(pairs)
    mean_a = float(pairs[:, 0].mean()) if n else nan
    mean_b = float(pairs[:, 1].mean()) if n else nan
    if n < 2:
        return PairedTest(a, b, n, mean_a, mean_b, mean_a - mean_b if n else nan,
                          nan, nan, nan, nan, nan,
                          note="needs answers from at least 2 participants")
    diff = pairs[:, 0] - pairs[:, 1]
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    # Rates like 0.6-0.4 and 0.8-0.6 differ in the last bits only: that is no variance.
    if sd <= 1e-9:
        return PairedTest(a, b, n, mean_a, mean_b, mean, mean, mean, nan, nan, nan,
                          note="every participant has the same difference (no variance)")
    res = stats.ttest_rel(pairs[:, 0], pairs[:, 1])
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return PairedTest(a, b, n, mean_a, mean_b, mean, mean - half, mean + half,
                      float(res.statistic), float(res.pvalue), mean / sd)


POWER_TARGET = 0.8
ALPHA = 0.05


def paired_t_power(d_z: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with ``n`` participants when the true
    standardised effect is ``d_z`` (noncentral t)."""
    from scipy import stats

    if n < 2 or not math.isfinite(d_z):
        return float("nan")
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = d_z * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def participants_needed(d_z: float, power: float = POWER_TARGET, alpha: float = ALPHA,
                        n_max: int = 100_000) -> int | None:
    """Smallest number of participants whose paired t-test reaches ``power``
    for effect ``d_z`` (``None`` when ``d_z`` is 0/undefined or above ``n_max``)."""
    if not math.isfinite(d_z) or abs(d_z) < 1e-9:
        return None
    lo, hi = 2, 2
    while paired_t_power(d_z, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > n_max:
            return None
    while lo < hi:                      # power grows with n: bisect
        mid = (lo + hi) // 2
        if paired_t_power(d_z, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def power_note(test: PairedTest, power: float = POWER_TARGET, alpha: float = ALPHA) -> dict:
    """How many participants the observed difference needs: ``n_needed`` at
    ``power`` (two-sided paired t, level ``alpha``, taking the observed d_z as
    the true effect), the power the current ``n`` has, and a sentence."""
    d = test.d_z
    n_needed = participants_needed(d, power, alpha) if d == d else None
    now = paired_t_power(d, test.n, alpha) if d == d else float("nan")
    if d != d:
        text = f"Power: not computable yet ({test.note or 'no effect size'})."
    elif n_needed is None:
        text = "Power: the observed difference is zero, so no number of participants would detect it."
    else:
        text = (f"Power: to detect the observed difference ({test.mean_diff:+.3f}, d_z = {d:.2f}) with "
                f"{power:.0%} power at α = {alpha:g} (two-sided paired t-test) you need about "
                f"{n_needed} participants; the current {test.n} give {now:.0%} power.")
    return {"comparison": f"{test.a} vs {test.b}", "d_z": None if d != d else d, "n": test.n,
            "power_now": None if now != now else now, "target_power": power, "alpha": alpha,
            "n_needed": n_needed, "text": text}


def _rate_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over participants."""
    from scipy import stats

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def paired_table(per_participant: pd.DataFrame) -> pd.DataFrame:
    """One row per participant (the paper's paired design): like rate per
    source, ``method1_minus_method2`` and each method's like rate minus the
    participant's own decoy like rate (``*_adjusted``)."""
    cols = ["participant", METHOD1, METHOD2, DECOY, "method1_minus_method2",
            "method1_adjusted", "method2_adjusted"]
    if per_participant.empty:
        return pd.DataFrame(columns=cols)
    answered = per_participant[per_participant["answered"] > 0]
    wide = answered.pivot(index="participant", columns="method", values="like_rate")
    order = list(dict.fromkeys(per_participant["participant"]))
    wide = wide.reindex([p for p in order if p in wide.index])
    for m in METHODS:
        if m not in wide:
            wide[m] = np.nan
    out = wide[list(METHODS)].reset_index()
    out["method1_minus_method2"] = out[METHOD1] - out[METHOD2]
    out["method1_adjusted"] = out[METHOD1] - out[DECOY]
    out["method2_adjusted"] = out[METHOD2] - out[DECOY]
    out.columns.name = None
    return out[cols]


def adjusted_rates(per_participant: pd.DataFrame, tests: dict[str, "PairedTest"]) -> pd.DataFrame:
    """Per method: mean like rate over participants with its 95 % CI, and the
    decoy-adjusted like rate (like rate − the same participant's decoy like
    rate, i.e. how much more than *any* song) with its CI and p-value."""
    rows = []
    for m in METHODS:
        if len(per_participant):
            sub = per_participant[(per_participant["method"] == m) & (per_participant["answered"] > 0)]
        else:
            sub = per_participant
        mean, lo, hi = _rate_ci(sub["like_rate"].to_numpy(float) if len(sub) else np.array([]))
        row = {"method": m, "label": METHOD_LABELS[m], "participants": int(len(sub)),
               "like_rate": mean, "ci_low": lo, "ci_high": hi,
               "adjusted_like_rate": float("nan"), "adjusted_ci_low": float("nan"),
               "adjusted_ci_high": float("nan"), "adjusted_p": float("nan"), "adjusted_n": 0}
        t = tests.get(f"{m} vs {DECOY}")
        if t is not None:
            row.update(adjusted_like_rate=t.mean_diff, adjusted_ci_low=t.ci_low, adjusted_ci_high=t.ci_high,
                       adjusted_p=t.p, adjusted_n=t.n)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class StudyResults:
    """Everything the results view shows."""

    per_participant: pd.DataFrame    # participant, method, shown, answered, likes, like_rate
    summary: pd.DataFrame            # method, label, participants, shown, answered, likes,
    #                                  like_rate (pooled), mean_like_rate (over participants)
    tests: dict[str, PairedTest] = field(default_factory=dict)
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)     # see paired_table()
    adjusted: pd.DataFrame = field(default_factory=pd.DataFrame)   # see adjusted_rates()
    power: dict = field(default_factory=dict)                      # power_note(main_test)

    @property
    def main_test(self) -> PairedTest:
        return self.tests[f"{METHOD1} vs {METHOD2}"]

    @property
    def n_participants(self) -> int:
        return int(self.per_participant["participant"].nunique()) if len(self.per_participant) else 0

    def describe(self) -> str:
        """A short plain-text report."""
        lines = [f"participants: {self.n_participants}"]
        for r in self.summary.itertuples():
            lines.append(f"  {r.label:<28} shown {r.shown:>4}  answered {r.answered:>4}  "
                         f"likes {r.likes:>4}  like rate {_fmt(r.like_rate)}  "
                         f"(mean per participant {_fmt(r.mean_like_rate)})")
        lines.append("paired t-tests over participants (the paper's design):")
        lines += [f"  {t.describe()}" for t in self.tests.values()]
        if len(self.adjusted):
            lines.append("decoy-adjusted like rate (like rate minus the participant's decoy like rate):")
            for r in self.adjusted.itertuples():
                if r.method == DECOY:
                    continue
                lines.append(f"  {r.label:<28} {_fmt(r.adjusted_like_rate)} "
                             f"[95% CI {_fmt(r.adjusted_ci_low)}, {_fmt(r.adjusted_ci_high)}]"
                             f"  p={_fmt(r.adjusted_p)}")
        if self.power:
            lines.append(self.power["text"])
        return "\n".join(lines)

    def report(self) -> pd.DataFrame:
        """Every figure of the results as one long table (the report CSV):
        quantity, method / comparison, estimate, ci_low, ci_high, n, t, p, d_z, note."""
        rows = []
        for r in self.adjusted.itertuples():
            rows.append({"quantity": "like_rate", "what": r.method, "estimate": r.like_rate,
                         "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.participants})
            if r.method != DECOY:
                rows.append({"quantity": "decoy_adjusted_like_rate", "what": r.method,
                             "estimate": r.adjusted_like_rate, "ci_low": r.adjusted_ci_low,
                             "ci_high": r.adjusted_ci_high, "n": r.adjusted_n, "p": r.adjusted_p})
        for name, t in self.tests.items():
            rows.append({"quantity": "paired_t", "what": name, "estimate": t.mean_diff, "ci_low": t.ci_low,
                         "ci_high": t.ci_high, "n": t.n, "t": t.t, "p": t.p, "d_z": t.d_z, "note": t.note})
        if self.power:
            rows.append({"quantity": "participants_needed_80pct_power", "what": self.power["comparison"],
                         "estimate": self.power["n_needed"], "n": self.power["n"], "d_z": self.power["d_z"],
                         "note": self.power["text"]})
        cols = ["quantity", "what", "estimate", "ci_low", "ci_high", "n", "t", "p", "d_z", "note"]
        return pd.DataFrame(rows).reindex(columns=cols)


def study_results(table: pd.DataFrame) -> StudyResults:
    """Likes per method per participant, the per-method summary and the
    paired tests (method 1 vs method 2, and each method vs the decoys) of the
    store's long ``table`` (:meth:`core.recommend.study.StudyStore.table`)."""
    df = table
    cols = ["participant", "method", "shown", "answered", "likes", "like_rate"]
    if df.empty:
        per = pd.DataFrame(columns=cols)
    else:
        per = (df.assign(answered=df["liked"].notna().astype(int),
                         likes=df["liked"].fillna(0).astype(int))
               .groupby(["participant", "method"], sort=False)
               .agg(shown=("track_id", "size"), answered=("answered", "sum"),
                    likes=("likes", "sum"))
               .reset_index())
        per["like_rate"] = np.where(per["answered"] > 0,
                                    per["likes"] / per["answered"].where(per["answered"] > 0, 1),
                                    np.nan)
        # Participants in enrolment order, methods in METHODS order.
        order = {pid: i for i, pid in enumerate(dict.fromkeys(df["participant"]))}
        per = per.assign(_p=per["participant"].map(order),
                         _m=per["method"].map({m: i for i, m in enumerate(METHODS)}))
        per = per.sort_values(["_p", "_m"]).reset_index(drop=True)[cols]
    rows = []
    for m in METHODS:
        sub = per[per["method"] == m]
        answered, likes = int(sub["answered"].sum()), int(sub["likes"].sum())
        rows.append({"method": m, "label": METHOD_LABELS[m],
                     "participants": int((sub["answered"] > 0).sum()),
                     "shown": int(sub["shown"].sum()), "answered": answered, "likes": likes,
                     "like_rate": likes / answered if answered else float("nan"),
                     "mean_like_rate": float(sub["like_rate"].mean()) if answered
                     else float("nan")})
    tests = {f"{a} vs {b}": paired_test(per, a, b)
             for a, b in ((METHOD1, METHOD2), (METHOD1, DECOY), (METHOD2, DECOY))}
    return StudyResults(per_participant=per, summary=pd.DataFrame(rows), tests=tests,
                        paired=paired_table(per), adjusted=adjusted_rates(per, tests),
                        power=power_note(tests[f"{METHOD1} vs {METHOD2}"]))
