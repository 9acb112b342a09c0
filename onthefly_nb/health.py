"""Health checks of a run, taken on the trainer thread at a step boundary.

Each check gives a :class:`Finding`: pass, warn or fail, the evidence, and what it means in plain
words. The gradients looked at are those of the last step (they stay in ``.grad`` until the next
step clears them).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .store import STEP_COLUMNS

PASS, WARN, FAIL = "pass", "warn", "fail"
EXPLODING_NORM = 1e3  # a total gradient norm above this fails
LARGE_NORM = 1e2  # above this warns
VANISHING_NORM = 1e-8  # a layer whose gradient norm is below this gets nothing to learn from
HIGH_LR = 1.0
GAP_WARN = 1.5  # validation loss over the recent mean train loss
TREND_MIN_STEPS = 100

_MEAN = STEP_COLUMNS.index("mean")
_MEDIAN = STEP_COLUMNS.index("p50")
_STEP = STEP_COLUMNS.index("step")


@dataclass
class Finding:
    check: str
    status: str
    evidence: str
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_health(model: nn.Module, optimizer: torch.optim.Optimizer, history: np.ndarray,
                 validation: dict[str, Any] | None) -> list[Finding]:
    """Every check, in a fixed order; ``history`` is the per-step rows so far."""
    findings = [_loss(history), _parameters(model), _gradients(model), _learning_rate(optimizer)]
    if len(history) >= TREND_MIN_STEPS:
        findings.append(_trend(history))
    if validation is not None and validation.get("loss") is not None and len(history):
        findings.append(_gap(history, validation))
    return findings


def report(findings: list[Finding], step: int) -> dict[str, Any]:
    """Findings as the dashboard's ``health`` trait."""
    return {"step": step, "time": time.time(), "results": [f.to_json() for f in findings]}


def _loss(history: np.ndarray) -> Finding:
    if not len(history):
        return Finding("loss", WARN, "no step recorded yet", "Run a few steps, then check again.")
    bad = ~np.isfinite(history[:, _MEAN])
    if bad.any():
        first = int(history[bad][0, _STEP])
        return Finding("loss", FAIL, f"the mean loss became NaN or infinite at step {first}",
                       "The loss overflowed: lower the learning rate, clip gradients, or look for "
                       "bad inputs or labels in that step's batch.")
    return Finding("loss", PASS, f"finite over {len(history)} steps, latest mean {history[-1, _MEAN]:.4g}",
                   "Every recorded step had a finite loss.")


def _parameters(model: nn.Module) -> Finding:
    for name, p in model.named_parameters():
        if not torch.isfinite(p.detach()).all():
            return Finding("parameters", FAIL, f"{name} holds NaN or infinite values",
                           "The weights are corrupt; training cannot recover from this. Reload a "
                           "checkpoint and lower the learning rate.")
    return Finding("parameters", PASS, "every parameter is finite", "The weights hold no NaN or infinity.")


def gradient_norms(model: nn.Module) -> tuple[dict[str, float], list[str]]:
    """The norm of each trainable parameter's gradient (in order), and the parameters without one."""
    norms: dict[str, float] = {}
    unused = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            unused.append(name)
        else:
            norms[name] = float(torch.linalg.vector_norm(p.grad.detach().float()))
    return norms, unused


def _gradients(model: nn.Module) -> Finding:
    norms, unused = gradient_norms(model)
    broken = next((name for name, norm in norms.items() if not math.isfinite(norm)), None)
    if broken is not None:
        return Finding("gradients", FAIL, f"the gradient of {broken} is NaN or infinite (the first such layer)",
                       "Backpropagation overflowed in or after this layer: lower the learning rate, "
                       "clip gradients, or check the loss for log(0) or division by zero.")
    if not norms:
        return Finding("gradients", WARN, "no gradients yet", "Gradients exist after the first step.")
    total = math.sqrt(sum(n * n for n in norms.values()))
    largest = max(norms, key=norms.__getitem__)
    evidence = f"total norm {total:.3g}; largest {largest} {norms[largest]:.3g}"
    if total > EXPLODING_NORM:
        return Finding("gradients", FAIL, evidence, "Gradients are exploding: lower the learning rate or clip "
                       "gradient norms (torch.nn.utils.clip_grad_norm_).")
    vanishing = [n for n, v in norms.items() if v < VANISHING_NORM]
    if vanishing:
        return Finding("gradients", WARN, f"{evidence}; vanishing in {', '.join(vanishing[:5])}",
                       "These layers receive (almost) no gradient and do not learn: check for dead "
                       "activations, saturated units or a detached branch.")
    if unused:
        return Finding("gradients", WARN, f"{evidence}; no gradient for {', '.join(unused[:5])}",
                       "These parameters were not used by the last step's loss; if that is unexpected, "
                       "a branch of the model is disconnected.")
    if total > LARGE_NORM:
        return Finding("gradients", WARN, evidence, "Gradients are large; watch for spikes in the loss.")
    return Finding("gradients", PASS, evidence, "Gradients are finite and of a healthy size.")


def _learning_rate(optimizer: torch.optim.Optimizer) -> Finding:
    rates = [g.get("lr") for g in optimizer.param_groups]
    values = [float(r) for r in rates if isinstance(r, int | float | torch.Tensor)]
    evidence = "lr " + ", ".join(f"{r:.3g}" for r in values)
    if not values or any(not math.isfinite(r) or r <= 0 for r in values):
        return Finding("learning rate", FAIL, evidence or "no learning rate",
                       "A learning rate must be a positive finite number.")
    if max(values) > HIGH_LR:
        return Finding("learning rate", WARN, evidence, "A learning rate above 1 is unusual and often diverges.")
    return Finding("learning rate", PASS, evidence, "The learning rate is positive and finite.")


def _trend(history: np.ndarray) -> Finding:
    tenth = max(len(history) // 10, 5)
    early, late = float(np.median(history[:tenth, _MEDIAN])), float(np.median(history[-tenth:, _MEDIAN]))
    evidence = f"median loss {early:.4g} over the first {tenth} steps, {late:.4g} over the last {tenth}"
    if not late < early:
        return Finding("loss trend", WARN, evidence, "The loss is not going down: the learning rate may be "
                       "too high or too low, or the labels may not follow from the inputs.")
    return Finding("loss trend", PASS, evidence, "The loss is going down.")


def _gap(history: np.ndarray, validation: dict[str, Any]) -> Finding:
    train = float(np.mean(history[-50:, _MEAN]))
    val = float(validation["loss"])
    ratio = val / train if train > 0 else math.inf
    evidence = (f"validation loss {val:.4g} at step {validation['step']}, mean train loss {train:.4g} "
                f"over the last steps ({ratio:.2f}x)")
    if ratio > GAP_WARN:
        return Finding("train/validation gap", WARN, evidence, "Validation loss is well above the training loss: "
                       "the model may be overfitting; consider more data, augmentation or regularisation.")
    return Finding("train/validation gap", PASS, evidence, "Validation follows training.")
