"""A user's loss, trained as given, with one loss per sample from the same forward pass."""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BatchFormatError, ConfigurationError, PerSampleLossError

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass
class SampleLoss:
    """What is backpropagated, and how per-sample values are had.

    ``per_sample`` is the unreduced twin of a built-in loss (``reduction='none'``); it is
    evaluated on the detached outputs of the training forward pass, so training stays
    exactly the user's loss (class weights and ignore_index included) and the model runs
    once. It is None for a plain callable that returns one loss per sample (its mean is then
    backpropagated); a plain callable that returns one scalar is backpropagated as given, and
    its per-sample values come from :class:`Split` (found on the first batch, by :meth:`check`),
    or, if it cannot be split, are ``off`` (the run trains, recording nothing per sample).
    """

    train: LossFn
    per_sample: LossFn | None
    off: str | None = None  # why per-sample values are off (a scalar loss that cannot be split)

    def check(self, outputs: Any, targets: Any, batch_size: int) -> None:
        """On the first batch, before it trains: refuse shapes the loss would silently broadcast, and
        a ``reduction='none'`` that does not give one value per sample; split a scalar loss."""
        if isinstance(self.per_sample, SameShape):
            self.per_sample.check(outputs, targets)
        if self.per_sample is None:
            with torch.no_grad():
                value = self.train(_detached(outputs), targets)
            if isinstance(value, torch.Tensor) and value.ndim == 0:
                try:
                    self.per_sample = Split.of(self.train, _detached(outputs), targets, batch_size)
                except PerSampleLossError as exc:
                    self.off = str(exc)
                    warnings.warn(f"per-sample views are off: {exc} Training goes on with the loss as given.",
                                  stacklevel=2)
        if isinstance(self.per_sample, functools.partial):
            with torch.no_grad():
                values = self.per_sample(_detached(outputs), targets)
            if not isinstance(values, torch.Tensor) or values.ndim == 0 or values.shape[0] != batch_size:
                raise PerSampleLossError(
                    f"loss_fn takes reduction=, but with reduction='none' it returned "
                    f"{_described(values)} for a batch of {batch_size} samples: it does not pass reduction on. "
                    f"Hand it to the loss it computes, e.g. F.cross_entropy(outputs, targets, reduction=reduction)."
                )

    @property
    def evaluate(self) -> LossFn:
        """Per-sample losses for evaluation runs."""
        return self.per_sample or self.train


ELEMENTWISE = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss, nn.BCEWithLogitsLoss,
               nn.SoftMarginLoss, nn.PoissonNLLLoss)  # outputs and targets of one shape


def sample_loss(loss_fn: Any) -> SampleLoss:
    """Split ``loss_fn`` into what is trained and what gives per-sample values."""
    if isinstance(loss_fn, type) and issubclass(loss_fn, nn.Module):
        raise ConfigurationError(f"loss_fn is the class {loss_fn.__name__}, not a loss: pass an instance, "
                                 f"{loss_fn.__name__}()")
    if isinstance(loss_fn, nn.Module) and hasattr(loss_fn, "reduction"):
        clone = copy.copy(loss_fn)
        clone.reduction = "none"
        per_sample: LossFn = clone
        if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
            per_sample = TokenMean(clone, loss_fn.ignore_index, loss_fn.weight)
        elif isinstance(loss_fn, ELEMENTWISE):
            per_sample = SameShape(clone)
        return SampleLoss(loss_fn, per_sample)
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


def _detached(outputs: Any) -> Any:
    return outputs.detach() if isinstance(outputs, torch.Tensor) else outputs


def _described(values: Any) -> str:
    if not isinstance(values, torch.Tensor):
        return type(values).__name__
    return "a scalar" if values.ndim == 0 else f"shape {tuple(values.shape)}"


def reduce_to_samples(values: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Check a loss output is per sample and average any extra dimensions away."""
    if not isinstance(values, torch.Tensor):
        raise PerSampleLossError(
            f"loss_fn returned {type(values).__name__}, not a tensor of per-sample losses."
        )
    if values.ndim == 0 or values.shape[0] != batch_size:
        raise PerSampleLossError(
            f"loss_fn returned {_described(values)} for a batch of {batch_size} samples; onthefly_nb needs "
            f"one loss per sample (shape [{batch_size}] or [{batch_size}, ...]) and "
            f"backpropagates their mean. Compute the loss with reduction='none', e.g. "
            f"torch.nn.functional.mse_loss(out, y, reduction='none'), or return "
            f"losses.mean(dim=1) instead of losses.mean()."
        )
    if values.ndim > 1:
        values = values.flatten(1).mean(1)
    return values


@dataclass(frozen=True)
class TokenMean:
    """A cross-entropy's per-sample values for any target shape: over a sample's positions
    (tokens, pixels), the mean over those that count, weighted as the loss's own mean is: positions
    whose target is ``ignore_index`` (padding) count for nothing; a sample without any scores 0."""

    unreduced: LossFn
    ignore_index: int
    weight: torch.Tensor | None

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = self.unreduced(outputs, targets)
        if values.ndim < 2 or targets.is_floating_point():  # one class per sample, or class probabilities
            return values
        counted = targets != self.ignore_index
        weights = counted.to(values.dtype)
        if self.weight is not None:
            weights = weights * self.weight.to(values.device, values.dtype)[torch.where(counted, targets, 0)]
        return values.flatten(1).sum(1) / weights.flatten(1).sum(1).clamp(min=torch.finfo(values.dtype).tiny)


@dataclass(frozen=True)
class SameShape:
    """An elementwise loss's per-sample values, refusing outputs and targets of different shapes
    (PyTorch broadcasts ``[B, 1]`` against ``[B]`` to ``[B, B]``: every sample against every target)."""

    unreduced: LossFn

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.check(outputs, targets)
        return self.unreduced(outputs, targets)

    def check(self, outputs: Any, targets: Any) -> None:
        if isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) and outputs.shape != targets.shape:
            raise BatchFormatError(
                f"the model's outputs have shape {list(outputs.shape)[1:]} per sample and the targets "
                f"{list(targets.shape)[1:]}; {type(self.unreduced).__name__} would broadcast them against "
                f"each other and mix samples. Make them match: return outputs.squeeze(-1) from forward, or "
                f"make the targets targets.unsqueeze(-1) (a column)."
            )


@dataclass(frozen=True)
class Split:
    """Per-sample values of a loss that returns one scalar for a batch: the loss of each sample on
    its own, batched with ``torch.func.vmap`` where the loss allows it, else one call per sample
    (``vectorised`` says which). Both run at the flush, on detached outputs, never in the step."""

    loss: LossFn
    vectorised: bool

    @classmethod
    def of(cls, loss: LossFn, outputs: Any, targets: Any, batch_size: int) -> Split:
        """The way that works for ``loss`` on this first batch; PerSampleLossError if none does."""
        refused = ""
        for vectorised in (True, False):
            split = cls(loss, vectorised)
            try:
                values = split(outputs, targets)
            except Exception as exc:  # noqa: BLE001 - vmap refuses data-dependent control flow, .item() and the like
                refused = refused or f"{type(exc).__name__}: {exc}"[:200]
                continue
            if values.shape == (batch_size,):
                if not vectorised:
                    warnings.warn(f"loss_fn returns one number for a batch and torch.func.vmap cannot batch it "
                                  f"({refused}); its per-sample values come from one call per sample, which is "
                                  f"slow. Return one loss per sample to avoid it.", stacklevel=2)
                return split
        raise PerSampleLossError(
            f"loss_fn returns one number for a batch, and it cannot be evaluated on single samples "
            f"(neither batched with torch.func.vmap nor one sample at a time: {refused}). To see per-sample "
            f"losses, return one loss per sample (shape [{batch_size}]), e.g. "
            f"F.cross_entropy(outputs, targets, reduction='none')."
        )

    def __call__(self, outputs: Any, targets: Any) -> torch.Tensor:
        one = lambda o, t: self.loss(o.unsqueeze(0), t.unsqueeze(0))  # noqa: E731
        with torch.no_grad():
            if self.vectorised:
                return torch.func.vmap(one)(outputs, targets)
            return torch.stack([one(o, t).reshape(()) for o, t in zip(outputs, targets)])

