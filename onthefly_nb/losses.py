"""Turn a user's loss into one that returns a loss per sample, from the same forward pass."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import ConfigurationError, PerSampleLossError

LossFn = Callable[[Any, Any], torch.Tensor]


def per_sample_loss(loss_fn: Any) -> LossFn:
    """Return a callable giving unreduced losses for ``loss_fn``.

    Built-in torch losses (anything with a ``reduction`` attribute) are cloned with
    ``reduction='none'``; functions with a ``reduction`` parameter (``F.cross_entropy``)
    get ``reduction='none'`` bound; other callables must already return one value per
    sample, which :func:`reduce_to_samples` checks on every batch.
    """
    if isinstance(loss_fn, nn.Module) and hasattr(loss_fn, "reduction"):
        clone = copy.copy(loss_fn)
        clone.reduction = "none"
        return clone
    if not callable(loss_fn):
        raise ConfigurationError(
            f"loss_fn must be callable as loss_fn(outputs, targets), got "
            f"{type(loss_fn).__name__}. Pass e.g. nn.CrossEntropyLoss()."
        )
    if _accepts_reduction(loss_fn):
        return functools.partial(loss_fn, reduction="none")
    return loss_fn


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
