"""onthefly-nb: steer PyTorch training live from a Jupyter notebook."""

from .api import Trainer, in_kernel, quickstart
from .control import RunState
from .errors import (
    ArchiveError,
    BatchFormatError,
    ConfigurationError,
    EmptyLoaderError,
    NonFiniteLossError,
    OnTheFlyError,
    PerSampleLossError,
    SliceQueryError,
)
from .huggingface import attach_huggingface
from .lightning import attach_lightning
from .magics import load_ipython_extension
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
    "RunState",
    "Session",
    "SliceQueryError",
    "Trainer",
    "attach_huggingface",
    "attach_lightning",
    "in_kernel",
    "load_ipython_extension",
    "quickstart",
]
