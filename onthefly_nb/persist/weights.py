"""Copying weights out of a model for a saved session, and loading them back with a clear error."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigurationError

COMPILED = "_orig_mod."  # the prefix torch.compile's wrapper puts on the keys of the model it wraps


def cloned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached copy of a state dict (what a saved session keeps while it is written), keyed as
    the plain model's: a compiled model's weights load into the model uncompiled, and back."""
    return {k.removeprefix(COMPILED): v.detach().clone() for k, v in state.items()}


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """Load saved weights, or say how the model built now differs from the saved one."""
    own = model.state_dict()
    if any(k.startswith(COMPILED) for k in own) and not any(k.startswith(COMPILED) for k in weights):
        weights = {COMPILED + k: v for k, v in weights.items()}  # into a compiled model
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    reshaped = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or reshaped:
        raise ConfigurationError(
            f"the {what} built now does not match the saved one: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, other shapes {reshaped[:5]}; build it exactly as for the saved run")
    model.load_state_dict(weights)
