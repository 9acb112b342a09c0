"""Another optimizer of the same kind as a run's, over other parameters (a fork, a replayed step)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch


def same_kind(optimizer: torch.optim.Optimizer, params: Iterable[Any], **overrides: Any) -> torch.optim.Optimizer:
    """``type(optimizer)`` over ``params`` with its defaults, ``overrides`` on top. Only the defaults
    its constructor takes are passed: AdamW's hold ``decoupled_weight_decay``, which it sets itself."""
    accepted = inspect.signature(type(optimizer).__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    defaults = {k: v for k, v in optimizer.defaults.items() if takes_any or k in accepted}
    return type(optimizer)(params, **{**defaults, **overrides})
