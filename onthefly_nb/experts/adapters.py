"""Low-rank adapters (LoRA, Hu et al. 2021) on a model's Linear layers, and their fusion into
the base weights: a fork can train ``r * (in + out)`` numbers per layer instead of the whole
model, and merging adds each adapter's ``B @ A`` to the layer's weight."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigurationError


class LowRankAdapter(nn.Module):
    """``base(x) + scale * x @ A.T @ B.T`` with the base layer frozen; B starts at zero, so an
    untrained adapter changes nothing."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                          dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype))
        self.scale = (alpha if alpha is not None else rank) / rank

    def delta(self) -> torch.Tensor:
        """The change this adapter makes to the base weight."""
        return self.scale * self.B @ self.A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T


def with_adapters(model: nn.Module, rank: int, layers: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose Linear layers (all, or those named in ``layers``) carry adapters;
    only the adapters are trainable."""
    if not isinstance(rank, int) or rank < 1:
        raise ConfigurationError(f"adapter_rank must be a whole number >= 1, got {rank!r}")
    adapted = copy.deepcopy(model)
    linears = {name: m for name, m in adapted.named_modules() if isinstance(m, nn.Linear)}
    chosen = list(layers) if layers is not None else list(linears)
    missing = [n for n in chosen if n not in linears]
    if missing or not chosen:
        raise ConfigurationError(f"no Linear layer named {missing or chosen}; the model's Linear layers are: "
                                 f"{', '.join(linears) or 'none'}")
    for p in adapted.parameters():
        p.requires_grad_(False)
    if chosen == [""]:  # the model is a single Linear layer
        return LowRankAdapter(adapted, rank)  # type: ignore[arg-type]
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = adapted.get_submodule(parent_name) if parent_name else adapted
        setattr(parent, child, LowRankAdapter(linears[name], rank))
    return adapted


def adapted_layers(model: nn.Module) -> dict[str, LowRankAdapter]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LowRankAdapter)}


def fuse(base: nn.Module, adapted: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter's ``B @ A`` added to its layer's weight
    (the deltas of several adapted models add up)."""
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    for model in adapted:
        layers = adapted_layers(model)
        if not layers:
            raise ConfigurationError("an expert to fuse has no adapters; fork it with adapter_rank=...")
        for name, layer in layers.items():
            state[f"{name}.weight" if name else "weight"] += layer.delta().detach()
    return state
