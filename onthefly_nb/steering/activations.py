"""Health checks that run the model once on the last batch, hooked: the first module whose output
is not finite, and ReLU layers whose units are dead on the whole batch."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .findings import FAIL, PASS, WARN, Finding, Probe

DEAD_WARN = 0.5  # a ReLU layer with more than this share of units zero on the whole batch warns
DEAD_MIN_ROWS = 8  # observations of a unit (samples x positions) needed before calling it dead
_DEAD_TYPES = (nn.ReLU, nn.ReLU6)  # outputs exactly 0 when a unit is off

@dataclass
class _Trace:
    """What one hooked forward pass over the last batch saw."""

    calls: int = 0  # module outputs looked at
    first_bad: str | None = None  # the first module (in execution order) whose output held NaN or infinity
    dead: dict[str, tuple[float, int]] = field(default_factory=dict)  # ReLU layer -> (dead share, units)
    loss: float | None = None
    error: str | None = None


def forward_checks(model: nn.Module, probe: Probe) -> list[Finding]:
    """Activations and dead units, both from one hooked forward pass over the last batch."""
    if any(not bool(torch.isfinite(t).all()) for t in _floats(probe.inputs)):
        return [Finding("activations", FAIL, "the last batch's inputs hold NaN or infinite values",
                        "The data itself is broken: look for missing values, a division by zero in the "
                        "preprocessing or a corrupt file; no model can learn from such a batch.")]
    trace = _trace(model, probe)
    return [_activations(trace)] + ([] if trace.error else [_dead_units(trace)])


def _trace(model: nn.Module, probe: Probe) -> _Trace:
    """Runs the model (and ``loss_fn``) on the probe's batch in its current mode, without gradients, with
    the RNG and every buffer (BatchNorm statistics) as they were afterwards, recording each module's output.

    Every module is hooked, not only leaves: a module's hook fires after those of its children, so the
    first non-finite output is the innermost module that produced it, and a parent's own arithmetic
    is seen too."""
    trace = _Trace()
    handles = []
    try:
        handles = [m.register_forward_hook(_recorder(trace, name, m)) for name, m in model.named_modules()]
        with torch.no_grad(), _rng_forked(model), _buffers_kept(model):
            outputs = model(probe.inputs)
            if probe.loss_fn is not None and probe.targets is not None:
                trace.loss = float(torch.as_tensor(probe.loss_fn(outputs, probe.targets)).double().mean())
    except Exception as error:  # a model that fails on the batch is a finding, not a crash of the check
        trace.error = f"{type(error).__name__}: {error}"
    finally:
        for handle in handles:
            handle.remove()
    return trace


def _recorder(trace: _Trace, name: str, module: nn.Module) -> Callable[[nn.Module, Any, Any], None]:
    label = f"`{name or 'model'}` ({type(module).__name__})"

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        trace.calls += 1
        if trace.first_bad is None and any(not bool(torch.isfinite(t).all()) for t in _floats(output)):
            trace.first_bad = label
        if isinstance(module, _DEAD_TYPES) and isinstance(output, torch.Tensor):
            dead = _dead_share(output)
            if dead is not None:  # a module called twice keeps its worst call
                trace.dead[label] = max(dead, trace.dead.get(label, dead))

    return record


def _floats(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors in a tensor or a (nested) tuple, list or dict of them."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for item in value for t in _floats(item)]
    return []


def _dead_share(output: torch.Tensor) -> tuple[float, int] | None:
    """The share of units that are zero for every observation of the batch, and the number of units.

    Units lie at dim 1: the features of a 2-D output, the channels of a convolution's (N, C, ...)
    output. A (batch, time, features) output is read as time steps, so dead features there go unseen.
    None when the batch gives fewer than ``DEAD_MIN_ROWS`` observations of each unit."""
    if output.ndim < 2:
        return None
    rows = output.ne(0).movedim(1, -1).reshape(-1, output.shape[1])
    if rows.shape[0] < DEAD_MIN_ROWS or not rows.shape[1]:
        return None
    return 1.0 - float(rows.any(0).float().mean()), int(rows.shape[1])


def _rng_forked(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Restores the CPU RNG, and that of the accelerator holding the model, after the block."""
    devices = {p.device for p in model.parameters() if p.device.type != "cpu"}
    kind = next(iter(devices)).type if devices else None
    return torch.random.fork_rng(devices=sorted(d.index or 0 for d in devices), device_type=kind)


@contextlib.contextmanager
def _buffers_kept(model: nn.Module) -> Iterator[None]:
    """Puts every buffer back after the block, so a forward pass in train mode leaves BatchNorm
    statistics as they were."""
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _activations(trace: _Trace) -> Finding:
    if trace.error is not None:
        return Finding("activations", WARN, f"the forward pass on the last batch raised {trace.error}",
                       "The check could not run the model on the batch it trained on; the other findings hold.")
    if trace.first_bad is not None:
        return Finding("activations", FAIL, f"first non-finite output in {trace.first_bad}",
                       "This module is the first to produce NaN or infinity on the last batch; the ones after "
                       "it only pass it on. Look at what it computes (log of 0 or of negatives, division by zero, "
                       "exp overflow); if its weights grew too large, approve the 'Lower the learning rate' or "
                       "'Clip gradients' card when one is offered.")
    if trace.loss is not None and not math.isfinite(trace.loss):
        return Finding("activations", FAIL, f"every module's output is finite but the loss on the batch is "
                       f"{trace.loss}", "The loss itself overflows on this batch: look for labels out of range, "
                       "NaN in the targets, or log(0) in a custom loss.")
    loss = f"; loss {trace.loss:.4g}" if trace.loss is not None else ""
    return Finding("activations", PASS, f"{trace.calls} module outputs on the last batch, all finite{loss}",
                   "The forward pass on the last batch is finite everywhere.")


def _dead_units(trace: _Trace) -> Finding:
    """Units that are zero on the whole batch, at nn.ReLU and nn.ReLU6 modules (whose outputs are exactly 0
    when off). A functional ``F.relu`` inside a forward is no module, so the check cannot see it."""
    if not trace.dead:
        return Finding("dead units", PASS, "no nn.ReLU or nn.ReLU6 module to look at",
                       f"Nothing to check: dead units are counted at nn.ReLU and nn.ReLU6 modules over a batch "
                       f"of at least {DEAD_MIN_ROWS} samples (or positions); F.relu inside a forward cannot be seen.")
    ranked = sorted(((share, units, name) for name, (share, units) in trace.dead.items()), reverse=True)
    described = [f"{name}: {share:.0%} of {units} units zero on the whole batch" for share, units, name in ranked]
    over = sum(share > DEAD_WARN for share, _, _ in ranked)  # a prefix of the ranking
    if over:
        return Finding("dead units", WARN, "; ".join(described[:min(over, 3)]),
                       "Most units of such a layer output zero for every sample, so they get no gradient and stop "
                       "learning (dying ReLU), often after too high a learning rate pushed their biases negative. "
                       "Approve the 'Lower the learning rate' card when it is offered; LeakyReLU or GELU, or a "
                       "smaller learning rate from the start, avoid it.")
    return Finding("dead units", PASS, f"worst {described[0]}", "The ReLU layers have live units.")
