"""onthefly-nb: steer PyTorch training live from a Jupyter notebook."""

from .errors import (
    ArchiveError,
    BatchFormatError,
    ConfigurationError,
    EmptyLoaderError,
    NonFiniteLossError,
    OnTheFlyError,
    PerSampleLossError,
    PlanError,
    ProtocolError,
    SliceQueryError,
    StateError,
)
from .integrations.huggingface import attach_huggingface
from .integrations.lightning import attach_lightning
from .integrations.magics import load_ipython_extension
from .integrations.reference import Trainer, in_kernel, quickstart
from .persist.opened import SavedRun, open_saved
from .run.control import RunState
from .session import Session

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "BatchFormatError",
    "ConfigurationError",
    "EmptyLoaderError",
    "NonFiniteLossError",
    "OnTheFlyError",
    "PerSampleLossError",
    "PlanError",
    "ProtocolError",
    "RunState",
    "SavedRun",
    "Session",
    "SliceQueryError",
    "StateError",
    "Trainer",
    "attach_huggingface",
    "attach_lightning",
    "in_kernel",
    "load_ipython_extension",
    "open_saved",
    "quickstart",
]
