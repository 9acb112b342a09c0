"""Hyperparameters changed live, at a step boundary: the optimizer's learning rate, weight decay,
momentum or betas (in every parameter group, or in one), and gradient clipping."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigurationError

OPTIMIZER_KEYS = ("lr", "weight_decay", "momentum", "betas")
POSITIVE = ("lr", "grad_clip_norm")  # 0 would stop training or clip every gradient away


def checked(optimizer: torch.optim.Optimizer, values: dict[str, Any], group: int | None) -> dict[str, Any]:
    """The changes asked for, each checked against the optimizer's groups; names what is wrong."""
    groups = optimizer.param_groups
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < len(groups)):
        raise ConfigurationError(f"group must be None (every group) or 0..{len(groups) - 1}, got {group!r}")
    chosen = groups if group is None else [groups[group]]
    changes = {k: v for k, v in values.items() if v is not None}
    if not changes:
        raise ConfigurationError(f"name a hyperparameter to change: {', '.join(OPTIMIZER_KEYS)} or grad_clip_norm")
    for key, value in changes.items():
        if key == "betas":
            pair = tuple(value) if isinstance(value, list | tuple) else ()
            if len(pair) != 2 or not all(_number(b) and 0 <= b < 1 for b in pair):
                raise ConfigurationError(f"betas must be two numbers in [0, 1), got {value!r}")
            changes[key] = tuple(float(b) for b in pair)
        elif not _number(value) or value < 0 or (key in POSITIVE and value == 0):
            bound = "> 0" if key in POSITIVE else ">= 0"
            raise ConfigurationError(f"{key} must be a finite number {bound}, got {value!r}")
        if key in OPTIMIZER_KEYS and not all(key in g for g in chosen):
            raise ConfigurationError(f"{type(optimizer).__name__} has no {key!r}; its groups have: "
                                     f"{', '.join(k for k in groups[0] if k in OPTIMIZER_KEYS)}")
    return changes


def apply(optimizer: torch.optim.Optimizer, scheduler: Any, changes: dict[str, Any], group: int | None
          ) -> dict[str, list[Any]]:
    """Set the optimizer's values (a scheduler's base rates follow a new learning rate, so its
    schedule goes on from there); returns each key's values before, per group."""
    indices = range(len(optimizer.param_groups)) if group is None else [group]
    before: dict[str, list[Any]] = {}
    for key, value in changes.items():
        if key not in OPTIMIZER_KEYS:
            continue
        before[key] = [optimizer.param_groups[i][key] for i in indices]
        for i in indices:
            old = optimizer.param_groups[i][key]
            optimizer.param_groups[i][key] = value
            base = getattr(scheduler, "base_lrs", None)
            if key == "lr" and base is not None and old:
                base[i] = base[i] * value / old
    return before


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
