"""Health checks of a run, taken on the trainer thread at a step boundary.

Each check gives a :class:`Finding`: pass, warn or fail, the evidence, and what it means in plain
words. The gradients looked at are those of the last step (they stay in ``.grad`` until the next
step clears them). What the trainer can hand over besides (the last batch, loader timings, recent
labels, the AMP loss scale) comes in a :class:`Probe` and enables more checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records.store import STEP_COLUMNS
from .activations import forward_checks
from .findings import FAIL, PASS, WARN, Finding, Probe

EXPLODING_NORM = 1e3  # a total gradient norm above this fails
LARGE_NORM = 1e2  # above this warns
VANISHING_NORM = 1e-8  # a layer whose gradient norm is below this gets nothing to learn from
HIGH_LR = 1.0
GAP_WARN = 1.5  # validation loss over the recent mean train loss
GAP_SHARE = 0.1  # ... and above it by this share of the loss at the start (tiny losses 3x apart are no gap)
ZERO_LOSS = 1e-8  # a mean loss below this is zero for the gap (ratios of two zeros mean nothing)
DIVERGED = 10.0  # a late mean loss this many times the early one: the run diverged
TREND_MIN_STEPS = 100
INPUT_BOUND = 0.3  # share of step time spent waiting for data above which the run is input-bound
INPUT_BOUND_WAIT = 1e-3  # ... when each step waits at least this long (s): below, workers would cost more
IMBALANCE = 5.0  # most over least frequent class count
BALANCE_MIN_PER_CLASS = 40  # labels per class needed before the ratio means more than sampling noise
SINGLE_CLASS_MIN = 64  # labels needed before one class alone warns
TINY_SCALE, HUGE_SCALE = 1.0, 2.0 ** 24


_MEAN = STEP_COLUMNS.index("mean")
_MEDIAN = STEP_COLUMNS.index("p50")
_STEP = STEP_COLUMNS.index("step")

def check_health(model: nn.Module, optimizer: torch.optim.Optimizer, history: np.ndarray,
                 validation: dict[str, Any] | None, probe: Probe | None = None) -> list[Finding]:
    """Every check, in a fixed order; ``history`` is the per-step rows so far. The checks fed by
    ``probe`` (activations, dead units, data pipeline, label balance, loss scale) follow, each only
    when its inputs are there."""
    kept = probe.gradients if probe is not None else None
    gradients = _gradients(model, kept, stepped=len(history) > 0)
    findings = [_loss(history, probe.nonfinite if probe is not None else None), _parameters(model),
                *([gradients] if gradients else []), _learning_rate(optimizer)]
    if len(history) >= TREND_MIN_STEPS:
        findings.append(_trend(history))
    if validation is not None and validation.get("loss") is not None and len(history):
        findings.append(_gap(history, validation))
    return findings + (_probed(model, probe) if probe is not None else [])


def _probed(model: nn.Module, probe: Probe) -> list[Finding]:
    """The checks whose inputs the probe carries, in a fixed order."""
    findings = forward_checks(model, probe) if probe.inputs is not None else []
    optional = (_data_pipeline(probe.wait_seconds, probe.step_seconds, probe.window_steps),
                _label_balance(probe.recent_targets),
                _loss_scale(probe.loss_scale))
    return findings + [f for f in optional if f is not None]

def _loss(history: np.ndarray, nonfinite: tuple[int, str] | None = None) -> Finding:
    if nonfinite is not None:  # a batch's mean can overflow while each sample's loss is finite
        step, what = nonfinite
        return Finding("loss", FAIL, f"the {what} became NaN or infinite at step {step}; that step was not applied",
                       "The loss overflowed: lower the learning rate or clip gradients (approve the card when "
                       "one is offered), or look for bad inputs or labels in that step's batch.")
    if not len(history):
        return Finding("loss", WARN, "no step recorded yet", "Run a few steps, then check again.")
    bad = ~np.isfinite(history[:, _MEAN])
    if bad.any():
        first = int(history[bad][0, _STEP])
        return Finding("loss", FAIL, f"the mean loss became NaN or infinite at step {first}",
                       "The loss overflowed: approve the 'Lower the learning rate' or 'Clip gradients' card "
                       "when one is offered, or look for bad inputs or labels in that step's batch.")
    return Finding("loss", PASS, f"finite over {len(history)} steps, latest mean {history[-1, _MEAN]:.4g}",
                   "Every recorded step had a finite loss.")


def _parameters(model: nn.Module) -> Finding:
    for name, p in model.named_parameters():
        if not torch.isfinite(p.detach()).all():
            return Finding("parameters", FAIL, f"{name} holds NaN or infinite values",
                           "The weights are corrupt; training cannot recover from this. Reload a "
                           "checkpoint and lower the learning rate.")
    return Finding("parameters", PASS, "every parameter is finite", "The weights hold no NaN or infinity.")


def gradient_norms(model: nn.Module, kept: dict[str, torch.Tensor] | None = None
                   ) -> tuple[dict[str, float], list[str]]:
    """The norm of each trainable parameter's gradient (in order; from ``kept`` when given), and
    the parameters without one."""
    norms: dict[str, float] = {}
    unused = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        grad = p.grad if kept is None else kept.get(name)
        if grad is None:
            unused.append(name)
        else:
            norms[name] = float(torch.linalg.vector_norm(grad.detach().float()))
    return norms, unused


def _gradients(model: nn.Module, kept: dict[str, torch.Tensor] | None = None, stepped: bool = False
               ) -> Finding | None:
    """None when steps ran but no gradient is left to look at (a trainer that clears them after its
    step, checked after the run ended): nothing can be said then."""
    norms, unused = gradient_norms(model, kept)
    if not norms and stepped:
        return None
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
        return Finding("gradients", FAIL, evidence, f"Gradients are exploding, most in {largest}: approve the "
                       "'Clip gradients' or 'Lower the learning rate' card when one is offered, or clip gradient "
                       "norms yourself (torch.nn.utils.clip_grad_norm_).")
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
    if not values or any(not math.isfinite(r) or r < 0 for r in values):
        return Finding("learning rate", FAIL, evidence or "no learning rate",
                       "A learning rate must be a positive finite number.")
    initial = [float(g.get("initial_lr", 0) or 0) for g in optimizer.param_groups]  # set by a scheduler
    if max(initial) > HIGH_LR:
        return Finding("learning rate", WARN, f"{evidence} (a schedule started it at {max(initial):.3g})",
                       "A learning rate above 1 is unusual and often diverges; start the schedule lower.")
    if any(r == 0 for r in values):
        if all(r > 0 for r in initial):
            return Finding("learning rate", PASS, f"{evidence} (a schedule decayed it from "
                           f"{max(float(g['initial_lr']) for g in optimizer.param_groups):.3g})",
                           "The schedule has brought the learning rate to 0, as at the end of a decay.")
        return Finding("learning rate", WARN, evidence, "A learning rate of 0 leaves the weights where they are: "
                       "set a positive one, or check the scheduler.")
    if max(values) > HIGH_LR:
        return Finding("learning rate", WARN, evidence, "A learning rate above 1 is unusual and often diverges; "
                       "approve the 'Lower the learning rate' card when it is offered.")
    return Finding("learning rate", PASS, evidence, "The learning rate is positive and finite.")


def _trend(history: np.ndarray) -> Finding:
    tenth = max(len(history) // 10, 5)
    early_mean, late_mean = float(np.mean(history[:tenth, _MEAN])), float(np.mean(history[-tenth:, _MEAN]))
    if not late_mean <= DIVERGED * early_mean:  # the median can stay low while the mean explodes
        return Finding("loss trend", FAIL, f"mean loss {early_mean:.4g} over the first {tenth} steps, "
                       f"{late_mean:.4g} over the last {tenth}", "The loss diverged: lower the learning rate or clip "
                       "gradients (approve the card when one is offered), then continue from a saved session.")
    early, late = float(np.median(history[:tenth, _MEDIAN])), float(np.median(history[-tenth:, _MEDIAN]))
    evidence = f"median loss {early:.4g} over the first {tenth} steps, {late:.4g} over the last {tenth}"
    if late <= ZERO_LOSS and early <= ZERO_LOSS:
        return Finding("loss trend", PASS, evidence, "The loss is zero from the start: the task is learnt already.")
    if not late < early:
        return Finding("loss trend", WARN, evidence, "The loss is not going down: the learning rate may be "
                       "too high or too low, or the labels may not follow from the inputs.")
    return Finding("loss trend", PASS, evidence, "The loss is going down.")


def _gap(history: np.ndarray, validation: dict[str, Any]) -> Finding:
    train = float(np.mean(history[-50:, _MEAN]))
    val = float(validation["loss"])
    evidence = f"validation loss {val:.4g} at step {validation['step']}, mean train loss {train:.4g} of the last steps"
    if train <= ZERO_LOSS and val <= ZERO_LOSS:
        return Finding("train/validation gap", PASS, evidence, "Both losses are zero: validation follows training.")
    if train > ZERO_LOSS:
        evidence += f" ({val / train:.2f}x)"
    start = float(np.mean(history[:10, _MEAN]))
    wide = val - train > GAP_SHARE * start if math.isfinite(start) and start > 0 else True
    if wide and (train <= ZERO_LOSS or val > GAP_WARN * train):
        return Finding("train/validation gap", WARN, evidence, "Validation loss is well above the training loss: "
                       "the model may be overfitting (memorising the training set); consider more data, "
                       "augmentation or regularisation.")
    if train > GAP_WARN * val:
        return Finding("train/validation gap", PASS, evidence, "No sign of overfitting: validation loss is below the "
                       "training loss (dropout and augmentation do this; so does a divergence since that validation, "
                       "which the loss trend shows).")
    return Finding("train/validation gap", PASS, evidence, "Validation follows training.")


def _data_pipeline(wait_seconds: float | None, step_seconds: float | None, steps: int | None = None
                   ) -> Finding | None:
    """Input-bound when a large share of step time waits for data, and (when the number of steps
    is known) each step waits long enough that loader workers could help."""
    if wait_seconds is None or step_seconds is None or not step_seconds > 0 or not math.isfinite(wait_seconds):
        return None
    share = wait_seconds / step_seconds
    evidence = f"{share:.0%} of step time waiting for data ({wait_seconds:.3g} s of {step_seconds:.3g} s)"
    per_step = wait_seconds / steps if steps else None
    if per_step is not None:
        evidence += f", {per_step * 1e3:.2g} ms a step"
    if share > INPUT_BOUND and (per_step is None or per_step >= INPUT_BOUND_WAIT):
        return Finding("data pipeline", WARN, f"input-bound: {evidence}",
                       "Training waits for the data loader: raise num_workers, enable pin_memory/"
                       "persistent_workers, or cache the dataset.")
    if share > INPUT_BOUND:
        return Finding("data pipeline", PASS, f"short waits: {evidence}", "Each wait for data is too short for "
                       "loader workers to help (they cost about a millisecond a batch themselves).")
    return Finding("data pipeline", PASS, f"compute-bound: {evidence}", "The data loader keeps up with training.")


def _label_balance(recent_targets: Any) -> Finding | None:
    """Counts of the integer labels of recent batches; negative labels (an ignore_index) are left out, and a
    class absent from the window cannot be seen."""
    if recent_targets is None:
        return None
    labels = torch.as_tensor(recent_targets).detach().cpu().numpy().reshape(-1)
    if labels.dtype.kind not in "iu":
        return None
    classes, counts = np.unique(labels[labels >= 0], return_counts=True)
    if not len(classes):
        return None
    order = np.argsort(-counts, kind="stable")
    top = ", ".join(f"{classes[i]}: {counts[i]}" for i in order[:5])
    rest = f", ... least {classes[order[-1]]}: {counts[order[-1]]}" if len(classes) > 5 else ""
    total, ratio = int(counts.sum()), float(counts.max() / counts.min())
    evidence = f"{len(classes)} classes in the last {total} labels, most/least {ratio:.1f}x; counts {top}{rest}"
    if len(classes) == 1 and total >= SINGLE_CLASS_MIN:
        return Finding("label balance", WARN, f"only class {classes[0]} in the last {total} labels",
                       "Recent batches hold a single class: the loader is probably not shuffled (a dataset "
                       "sorted by label); set shuffle=True or use a sampler.")
    if total < BALANCE_MIN_PER_CLASS * len(classes):
        return Finding("label balance", PASS, evidence, f"Too few recent labels to judge the balance: it takes "
                       f"{BALANCE_MIN_PER_CLASS} per class before the counts mean more than sampling noise.")
    if ratio > IMBALANCE:
        return Finding("label balance", WARN, evidence, "A few classes dominate the recent batches, so the model can "
                       "lower its loss by predicting them: weight the loss by class, or balance the batches with a "
                       "WeightedRandomSampler.")
    return Finding("label balance", PASS, evidence, "The classes in recent batches are in balance.")


def _loss_scale(scale: float | None) -> Finding | None:
    if scale is None:
        return None
    scale = float(scale)
    evidence = f"AMP loss scale {scale:.4g}"
    if not math.isfinite(scale) or scale <= 0:
        return Finding("loss scale", FAIL, evidence, "A GradScaler's scale must be a positive finite number; the "
                       "scaler is corrupt: recreate it, or reload a checkpoint.")
    if scale < TINY_SCALE:
        return Finding("loss scale", WARN, evidence, "Repeated overflows shrank the scale below 1: the float16 "
                       "gradients overflow nearly every step, and those steps are skipped. Approve the 'Lower the "
                       "learning rate' card when it is offered, or train in bfloat16.")
    if scale > HUGE_SCALE:
        return Finding("loss scale", WARN, evidence, "The scale kept growing, so even scaled gradients never "
                       "overflow: the gradients are tiny (vanishing) or the backward pass does not run in float16 "
                       "(is autocast on?). A sudden larger gradient will overflow and skip steps.")
    return Finding("loss scale", PASS, evidence, "The AMP loss scale is in its normal range.")
