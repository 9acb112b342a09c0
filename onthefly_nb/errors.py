"""Errors raised for bad input, each saying what is wrong and how to fix it."""

from __future__ import annotations


class OnTheFlyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(OnTheFlyError, TypeError):
    """A Session argument has the wrong type or shape."""


class EmptyLoaderError(OnTheFlyError, ValueError):
    """A loader yields no batches."""


class PerSampleLossError(OnTheFlyError, ValueError):
    """The loss function cannot give one value per sample."""


class BatchFormatError(OnTheFlyError, ValueError):
    """A batch cannot be split into inputs and targets."""


class NonFiniteLossError(OnTheFlyError, FloatingPointError):
    """The training loss became NaN or infinite."""


class SliceQueryError(OnTheFlyError, ValueError):
    """A slice query does not evaluate over the per-sample columns."""


class PlanError(OnTheFlyError, ValueError):
    """A plan decision names an unknown plan or parameter, or a value out of bounds."""


class ArchiveError(OnTheFlyError, ValueError):
    """A session archive is truncated, corrupt, from a newer format, or carries executable content."""
