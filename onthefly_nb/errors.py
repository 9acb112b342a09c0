"""Every error this package raises on purpose, in one place. Each says what is wrong and how to fix it.

| error | raised when |
| --- | --- |
| ``ConfigurationError`` | an argument has the wrong type or value (a ``TypeError`` and a ``ValueError``) |
| ``StateError`` | a call made in a state that does not allow it (a merge already committed, a plan |
|   | already decided, a run already started, a wait that would wait for itself) |
| ``EmptyLoaderError`` | a loader yields no batches |
| ``PerSampleLossError`` | a loss function cannot give one value per sample |
| ``BatchFormatError`` | a batch cannot be split into inputs and targets |
| ``NonFiniteLossError`` | the training loss became NaN or infinite |
| ``SliceQueryError`` | a slice query does not evaluate over the per-sample columns |
| ``PlanError`` | a plan decision names an unknown plan or parameter, or a value out of bounds |
| ``ArchiveError`` | a session archive is truncated, altered, newer, or carries executable content |
| ``ProtocolError`` | a dashboard message does not fit the contract (``onthefly_nb.dashboard.protocol``) |
"""

from __future__ import annotations


class OnTheFlyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(OnTheFlyError, TypeError, ValueError):
    """An argument has the wrong type or value."""


class StateError(OnTheFlyError, RuntimeError):
    """A call made in a state that does not allow it."""


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


class ProtocolError(OnTheFlyError, ValueError):
    """A dashboard message that does not fit the contract; it is refused and changes nothing."""
