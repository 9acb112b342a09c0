"""Keeping a non-finite loss or gradient out of the weights.

Two ways, chosen per run by :func:`guard_mode`:

- ``device``: the optimizer is a fused one (``fused=True`` Adam, AdamW, SGD, Adagrad), whose kernel
  skips its update when its ``found_inf`` tensor is set, as under ``torch.amp.GradScaler``. The
  flag is computed on the device, so no step waits for the host; the flags are read at the next
  flush (which copies to the host anyway), and the run stops, or notes the skipped steps, then.
- ``host``: on the CPU each loss is read as it comes (about a microsecond) and a bad step is not
  taken at all; the run stops at once.

On a GPU with an unfused optimizer neither applies: a non-finite loss is found at the next flush,
after its update was applied; the README says to pass ``fused=True`` there.
"""

from __future__ import annotations

import math

import torch

HOST, DEVICE = "host", "device"
LOSS, NORM = "loss", "gradient norm"


def guard_mode(device: torch.device, optimizer: torch.optim.Optimizer) -> str | None:
    """How this run keeps non-finite updates out: DEVICE, HOST, or None (found at the flush only)."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        return DEVICE
    return HOST if device.type == "cpu" else None


class NonFiniteGuard:
    """Decides, for each optimizer step, whether its update may reach the weights."""

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str | None) -> None:
        self.optimizer = optimizer
        self.mode = mode
        self._finite = True  # host: every loss of the accumulation group under way was finite
        self._bad: torch.Tensor | None = None  # device: whether any of them was not
        self._flags: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # device: (step, loss, norm)

    def batch(self, value: torch.Tensor) -> None:
        """After a batch's backward pass: take note of whether its loss was finite."""
        if self.mode == HOST:
            self._finite &= math.isfinite(value.item())
        elif self.mode == DEVICE:
            bad = ~torch.isfinite(value.detach())
            self._bad = bad if self._bad is None else self._bad | bad

    def step(self, step: int, norm: torch.Tensor | None) -> str | None:
        """Take the optimizer step of an accumulation group unless its update is not finite. Returns
        what was not (LOSS or NORM) when the step was refused here (host); the caller stops or notes."""
        if self.mode == DEVICE:
            self._device_step(step, norm)
            return None
        if self.mode == HOST:
            finite, self._finite = self._finite, True
            if not finite or (norm is not None and not math.isfinite(norm.item())):
                self.optimizer.zero_grad(set_to_none=True)
                return NORM if finite else LOSS
        self.optimizer.step()
        return None

    def _device_step(self, step: int, norm: torch.Tensor | None) -> None:
        loss_bad, self._bad = self._bad, None
        if loss_bad is None:  # no batch was noted (a loss without a value): nothing to go by
            loss_bad = torch.zeros((), dtype=torch.bool, device=_device_of(self.optimizer))
        norm_bad = None if norm is None else ~torch.isfinite(norm)
        bad = loss_bad if norm_bad is None else loss_bad | norm_bad
        self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]  # the fused kernel's skip flag
        try:
            self.optimizer.step()
        finally:
            self.optimizer.found_inf = None  # type: ignore[attr-defined]
        self._flags.append((step, loss_bad, norm_bad))

    def skipped(self) -> list[tuple[int, str]]:
        """The steps skipped on the device since the last call, with what was not finite (one host
        copy of their flags; call at a flush)."""
        if not self._flags:
            return []
        flags, self._flags = self._flags, []
        losses = torch.stack([f[1] for f in flags]).cpu().tolist()
        norms = [False if f[2] is None else f[2] for f in flags]
        if any(isinstance(n, torch.Tensor) for n in norms):
            norms = torch.stack([torch.as_tensor(n, device=flags[0][1].device) for n in norms]).cpu().tolist()
        return [(step, LOSS if loss else NORM) for (step, _, _), loss, norm in zip(flags, losses, norms)
                if loss or norm]


def _device_of(optimizer: torch.optim.Optimizer) -> torch.device:
    return optimizer.param_groups[0]["params"][0].device


def halted_message(what: str, step: int, on_device: bool, found: Exception | None = None) -> str:
    """Why the run stopped at ``step``; ``found`` is the recorder's own message naming samples."""
    kept = (f"Step {step} was skipped on the device: its update never reached the weights."
            if on_device else f"Step {step} was not applied: the weights are those before it.")
    if found is not None:
        return f"{found} {kept}"
    return (f"the {what} became NaN or infinite at step {step}. {kept} Check the learning rate, that batch's "
            f"inputs, or log/division operations in the model or loss; pass stop_on_nan=False to skip such steps.")
