"""``python -m core study-results --db PATH [--csv OUT] [--per-participant-csv OUT]
[--paired-csv OUT] [--report-csv OUT] [--json]``

Prints the listening-study report (likes per method, the paired t-test of
method 1 vs method 2 over participants with Cohen's d_z and 95 % CI, each
method vs the random decoys, decoy-adjusted like rates with 95 % CIs and the
participants needed at 80 % power) and optionally exports CSVs. Exit status 2
when the database is missing or unusable.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import EXIT_BAD_INPUT
from core.config import Paths


def cmd_study_results(args: argparse.Namespace) -> int:
    from core.recommend.study import StudyError, StudyStore

    try:
        store = StudyStore(args.db, create=False)
        res = store.results()
        if args.csv:
            store.export_csv(args.csv, what="answers")
        if args.per_participant_csv:
            store.export_csv(args.per_participant_csv, what="per_participant")
        if args.paired_csv:
            store.export_csv(args.paired_csv, what="paired")
        if args.report_csv:
            store.export_csv(args.report_csv, what="report")
    except (StudyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"participants": res.n_participants,
                          "summary": json.loads(res.summary.to_json(orient="records")),
                          "tests": {k: t.to_dict() for k, t in res.tests.items()},
                          "adjusted": json.loads(res.adjusted.to_json(orient="records")),
                          "power": res.power}, indent=1))
    else:
        print(res.describe())
    for path in (args.csv, args.per_participant_csv, args.paired_csv, args.report_csv):
        if path:
            print(f"wrote {path}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``study-results`` to the ``python -m core`` sub-commands."""
    p = sub.add_parser("study-results", help="listening-study results: likes per method, "
                                             "paired t-test, CSV export")
    p.add_argument("--db", default=str(Paths().study_db), help="study SQLite database")
    p.add_argument("--csv", help="write every answer (one row per trial and method) here")
    p.add_argument("--per-participant-csv", help="write likes per method per participant here")
    p.add_argument("--paired-csv", help="write one row per participant (rates per method, "
                                        "differences, decoy-adjusted rates) here")
    p.add_argument("--report-csv", help="write every result figure (rates with CIs, tests, power) here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_study_results)
