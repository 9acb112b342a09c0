"""A user's loss, trained as given, with one loss per sample from the same forward pass."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigurationError, PerSampleLossError

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass(frozen=True)
class SampleLoss:
    """What is backpropagated, and how per-sample values are had.

    ``per_sample`` is the unreduced twin of a built-in loss (``reduction='none'``); it is
    evaluated on the detached outputs of the training forward pass, so training stays
    exactly the user's loss (class weights and ignore_index included) and the model runs
    once. It is None for a plain callable, which must itself return one loss per sample;
    its mean is then backpropagated.
    """

    train: LossFn
    per_sample: LossFn | None

    @property
    def evaluate(self) -> LossFn:
        """Per-sample losses for evaluation runs."""
        return self.per_sample or self.train


def sample_loss(loss_fn: Any) -> SampleLoss:
    """Split ``loss_fn`` into what is trained and what gives per-sample values."""
    if isinstance(loss_fn, nn.Module) and hasattr(loss_fn, "reduction"):
        clone = copy.copy(loss_fn)
        clone.reduction = "none"
        return SampleLoss(loss_fn, clone)
    if not callable(loss_fn):
        raise ConfigurationError(
            f"loss_fn must be callable as loss_fn(outputs, targets), got "
            f"{type(loss_fn).__name__}. Pass e.g. nn.CrossEntropyLoss()."
        )
    if _accepts_reduction(loss_fn):
        return SampleLoss(loss_fn, functools.partial(loss_fn, reduction="none"))
    return SampleLoss(loss_fn, None)


def _accepts_reduction(fn: Callable[..., Any]) -> bool:
    try:
        return "reduction" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def reduce_to_samples(values: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Check a loss output is per sample and average any extra dimensions away."""
    if not isinstance(values, torch.Tensor):
        raise PerSampleLossError(
            f"loss_fn returned {type(values).__name__}, not a tensor of per-sample losses."
        )
    if values.ndim == 0 or values.shape[0] != batch_size:
        got = "a scalar" if values.ndim == 0 else f"shape {tuple(values.shape)}"
        raise PerSampleLossError(
            f"loss_fn returned {got} for a batch of {batch_size} samples; onthefly_nb needs "
            f"one loss per sample (shape [{batch_size}] or [{batch_size}, ...]) and "
            f"backpropagates their mean. Compute the loss with reduction='none', e.g. "
            f"torch.nn.functional.mse_loss(out, y, reduction='none'), or return "
            f"losses.mean(dim=1) instead of losses.mean()."
        )
    if values.ndim > 1:
        values = values.flatten(1).mean(1)
    return values
