"""``python -m core model-card``: render artifacts/MODEL_CARD.md."""

from __future__ import annotations

from core.config import Paths


def register(sub) -> None:
    p = sub.add_parser("model-card", help="write MODEL_CARD.md and figures from metrics.json")
    p.add_argument("--artifacts", default=str(Paths().artifacts))
    p.set_defaults(func=_run)


def _run(args) -> int:
    from core.training.model_card import write_model_card

    print(write_model_card(args.artifacts))
    return 0
