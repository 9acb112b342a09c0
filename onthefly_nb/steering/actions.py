"""What the run's plan cards do once approved: lower the learning rate, clip gradients, validate
now, check health, sample a cluster more often. (Experts' cards are in ``experts/actions.py``.)"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..run.training import Run
from .checkup import Checkup
from .plans import Plan, PlanAction


def run_actions(run: Run, checkup: Checkup) -> dict[str, PlanAction]:
    def reweight(plan: Plan) -> str:
        return run.reweight(plan.context["rows"], plan.params["factor"], plan.context["slice"])

    return {
        "lower_lr": PlanAction(lambda plan: run.scale_lr(plan.params["factor"])),
        "clip_gradients": PlanAction(lambda plan: run.clip(plan.params["max_norm"])),
        "validate_now": PlanAction(lambda _plan: _describe(run.evaluate("validation"))),
        "health_check": PlanAction(lambda _plan: _flagged(checkup.health())),
        "reweight": PlanAction(reweight),
    }


def _flagged(findings: pd.DataFrame) -> str:
    flagged = [f"{row.check}: {row.status} ({row.evidence})" for row in findings.itertuples() if row.status != "pass"]
    return "; ".join(flagged) or "every check passes"


def _describe(result: dict[str, Any]) -> str:
    accuracy = f", accuracy {result['accuracy']:.1%}" if result.get("accuracy") is not None else ""
    return f"validation loss {result['loss']:.4g}{accuracy}"
