"""What a health check finds: pass, warn or fail, the evidence and what it means in plain words;
and the :class:`Probe` of what the trainer hands a check cheaply at a step boundary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass
class Finding:
    check: str
    status: str
    evidence: str
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Probe:
    """What the trainer hands over cheaply at a step boundary; each field is optional.

    ``inputs``/``targets``: the last training batch, already on the model's device; ``loss_fn``:
    ``(outputs, targets) -> loss`` (scalar or per sample). ``wait_seconds``: time spent waiting for
    the data loader over a recent window of steps; ``step_seconds``: wall time of those same steps,
    the wait included; ``window_steps``: how many steps that window holds. ``nonfinite``: the first
    step whose update was refused for a non-finite loss or gradient norm, and which.
    ``recent_targets``: the integer labels of recent batches (classification).
    ``loss_scale``: the AMP ``GradScaler``'s current scale. ``gradients``: each parameter's gradient
    of the last optimizer step, kept by ``ExternalRun`` when the other trainer clears them before the
    step boundary (Hugging Face); else the check reads ``.grad``.
    """

    inputs: Any = None
    targets: Any = None
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    wait_seconds: float | None = None
    step_seconds: float | None = None
    recent_targets: Any = None
    loss_scale: float | None = None
    gradients: dict[str, torch.Tensor] | None = None  # the last step's, kept when the trainer clears them
    window_steps: int | None = None
    nonfinite: tuple[int, str] | None = None


def report(findings: list[Finding], step: int) -> dict[str, Any]:
    """Findings as the dashboard's ``health`` trait."""
    return {"step": step, "time": time.time(), "results": [f.to_json() for f in findings]}
