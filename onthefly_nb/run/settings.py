"""A session's settings: how long to train, what runs around the steps, and what is saved with it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigurationError

PRECISIONS = ("32", "bf16", "fp16")


@dataclass(frozen=True)
class Settings:
    """Every setting of a run. A saved session keeps them all (``saved``) but ``seed``, which acts once."""

    project: str = "default"
    run_name: str = "run"
    max_epochs: int | None = 1  # None: no bound on epochs (then max_steps, or until stopped)
    max_steps: int | None = None
    scheduler_interval: str = "epoch"
    do_test_after: bool = False
    stop_on_nan: bool = True
    health_every: int | None = 500
    deterministic: bool = False
    recluster_seconds: float | None = 30.0
    seed: int | None = None
    grad_clip_norm: float | None = None  # clip the gradients' total L2 norm to this before every step
    val_every_n_epochs: int = 1  # validate every this many epochs when there is a validation loader (0: never)
    precision: str = "32"  # "bf16" or "fp16": the forward pass under torch.autocast (fp16 with a GradScaler)
    accumulate: int = 1  # batches whose gradients add up to one optimizer step

    def __post_init__(self) -> None:
        if self.max_epochs is not None and not _whole(self.max_epochs, 1):
            raise ConfigurationError(f"max_epochs must be None or a whole number >= 1, got {self.max_epochs!r}.")
        if self.max_steps is not None and not _whole(self.max_steps, 1):
            raise ConfigurationError(f"max_steps must be None or a whole number >= 1, got {self.max_steps!r}.")
        if self.scheduler_interval not in ("epoch", "step"):
            raise ConfigurationError(f"scheduler_interval must be 'epoch' or 'step', got {self.scheduler_interval!r}.")
        if self.grad_clip_norm is not None and not (isinstance(self.grad_clip_norm, (int, float))
                                                    and not isinstance(self.grad_clip_norm, bool)
                                                    and self.grad_clip_norm > 0):
            raise ConfigurationError(f"grad_clip_norm must be None or a number > 0, got {self.grad_clip_norm!r}.")
        if not _whole(self.val_every_n_epochs, 0):
            raise ConfigurationError(f"val_every_n_epochs must be a whole number >= 0 (0: never), "
                                     f"got {self.val_every_n_epochs!r}.")
        if not _whole(self.accumulate, 1):
            raise ConfigurationError(f"accumulate must be a whole number of batches >= 1, got {self.accumulate!r}.")
        if self.precision not in PRECISIONS:
            raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.health_every is not None and not _whole(self.health_every, 1):
            raise ConfigurationError(f"health_every must be a number of steps >= 1 or None, got {self.health_every!r}")

    def saved(self) -> dict[str, Any]:
        """The settings a saved session keeps."""
        return {k: v for k, v in asdict(self).items() if k != "seed"}

    @classmethod
    def from_saved(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The saved settings found in an archive's configuration (older archives lack some)."""
        return {f.name: config[f.name] for f in fields(cls) if f.name != "seed" and f.name in config}


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
