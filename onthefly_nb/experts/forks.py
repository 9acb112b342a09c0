"""Specialists forked from a run onto a slice of its data: what a fork is, the batches it trains
on, and its training, one step at a time on a random stream of its own."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.batches import Unpack, to_device
from ..data.losses import reduce_to_samples
from ..errors import ConfigurationError
from ..run.optimizers import same_kind

FORK_MODES = ("wait", "alternate")


@dataclass
class ForkOptions:
    """How to train a fork: ``budget`` steps at ``lr`` (the run's if None), with the optimizer
    state copied or ``fresh_optimizer``, ``general_share`` of each batch from the whole training
    set, and optionally only low-rank adapters (``adapter_rank`` on ``adapter_layers``). With
    ``mode='wait'`` the main run waits for the fork; with ``'alternate'`` they take turns, a step each."""

    budget: int = 300
    lr: float | None = None
    fresh_optimizer: bool = False
    general_share: float = 0.0
    seed: int = 0
    adapter_rank: int | None = None
    adapter_layers: Sequence[str] | None = None
    mode: str = "wait"

    def check(self) -> None:
        budget = self.budget
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ConfigurationError(f"budget must be a whole number of steps >= 1, got {budget!r}")
        if self.mode not in FORK_MODES:
            raise ConfigurationError(f"fork mode {self.mode!r} is not available; use one of {', '.join(FORK_MODES)}")
        if not 0.0 <= self.general_share < 1.0:
            raise ConfigurationError(f"general_share must be in [0, 1), got {self.general_share}")


@dataclass
class Expert:
    """A specialist: a copy of the run's model trained on a slice for a budget of steps."""

    name: str
    parent: str
    step: int  # the parent's step at the fork
    slice: str  # how the slice was chosen
    indices: np.ndarray = field(repr=False)
    budget: int
    lr: float
    general_share: float
    model: nn.Module = field(repr=False)
    state: str = "training"
    losses: list[float] = field(default_factory=list, repr=False)  # mean training loss per step
    kind: str = "fork"  # or "baseline": the run trained on for the same compute, for a fair comparison
    adapter_rank: int | None = None  # trained as low-rank adapters of this rank
    adapter_layers: list[str] | None = None  # ... on these Linear layers (None: all)
    held_out: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # its region's
    # validation samples (``regions.py``): what its verdicts are measured on

    def node(self) -> dict[str, Any]:
        """The expert as a lineage node."""
        return {"id": self.name, "parent": self.parent, "kind": self.kind, "label": self.name, "step": self.step,
                "state": self.state, "slice": self.slice, "samples": int(len(self.indices)), "budget": self.budget}


def fork_batches(dataset_size: int, indices: np.ndarray, batch_size: int, budget: int, general_share: float,
                 seed: int) -> list[list[int]]:
    """``budget`` batches of dataset indices: each a share of the slice (drawn in shuffled passes)
    and ``general_share`` of the whole training set."""
    rng = np.random.default_rng(seed)
    general = int(round(batch_size * general_share))
    focused = batch_size - general
    passes = math.ceil(budget * focused / len(indices))
    stream = np.concatenate([rng.permutation(indices) for _ in range(passes)])
    batches = []
    for b in range(budget):
        picked = stream[b * focused:(b + 1) * focused]
        if general:
            picked = np.concatenate([picked, rng.integers(0, dataset_size, general)])
        batches.append(picked.tolist())
    return batches


class ForkTraining:
    """An expert's training, one step at a time, on its own random stream: its steps can run all
    at once or between the main run's steps, and either way neither disturbs the other's RNG."""

    def __init__(self, expert: Expert, optimizer: torch.optim.Optimizer, loss_fn: Any, loader: DataLoader,
                 unpack: Unpack, device: torch.device, seed: int) -> None:
        self.expert, self.optimizer, self.loss_fn = expert, optimizer, loss_fn
        self.unpack, self.device = unpack, device
        self._cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._cuda):  # iter() draws a seed: not from the run's stream
            torch.manual_seed(seed)
            self._rng = self._rng_state()
            self._batches = iter(loader)

    def _rng_state(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self._cuda]

    @property
    def done(self) -> bool:
        return len(self.expert.losses) >= self.expert.budget

    def step(self) -> bool:
        """Train one step; True once the budget is spent."""
        model = self.expert.model
        with torch.random.fork_rng(devices=self._cuda):
            torch.set_rng_state(self._rng[0])
            for device, state in zip(self._cuda, self._rng[1]):
                torch.cuda.set_rng_state(state, device)
            model.train()
            inputs, targets = self.unpack(next(self._batches))
            inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            value = self.loss_fn(model(inputs), targets)
            if value.ndim:
                value = reduce_to_samples(value, len(value)).mean()
            value.backward()
            self.optimizer.step()
            self._rng = self._rng_state()
        self.expert.losses.append(float(value.detach()))
        if self.done:
            self.expert.state = "trained"
        return self.done

    def run(self) -> None:
        """Train the rest of the budget."""
        while not self.done:
            self.step()


def copy_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, source: nn.Module, fresh: bool,
                   lr: float | None) -> torch.optim.Optimizer:
    """An optimizer of the same kind over ``model`` (a deep copy of ``source``), with the state
    of ``optimizer`` copied unless ``fresh``; ``lr`` replaces every group's learning rate."""
    if [p.shape for p in model.parameters()] != [p.shape for p in source.parameters()]:
        raise ConfigurationError("the forked model's parameters do not match the run's")
    clone = same_kind(optimizer, model.parameters())
    if not fresh:
        clone.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    if lr is not None:
        for group in clone.param_groups:
            group["lr"] = lr
    return clone


def slice_loader(dataset: Any, indices: np.ndarray, like: DataLoader) -> DataLoader:
    """An evaluation loader over the dataset indices, batched like ``like``."""
    return DataLoader(Subset(dataset, indices.tolist()), batch_size=like.batch_size or 256,
                      collate_fn=like.collate_fn)
