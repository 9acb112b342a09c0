"""Penultimate-layer features of the hard samples, captured from the training forward pass.

A forward hook on the model's last ``nn.Linear`` keeps its input (the penultimate
activations) for one training batch in ``CAPTURE_EVERY``, projected to at most 64
dimensions by a fixed random matrix when wider. At each flush only the samples in the top
10 % of their batch's losses are kept, in a :class:`FeatureBank` of bounded size (the oldest
entries make way). Shuffling brings every sample into a captured batch within a few epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .slices import feature_columns

FEATURE_DIMS = 64
BANK_BYTES = 64 * 2**20
HARD_PERCENTILE = 0.9
CAPTURE_EVERY = 4


class PenultimateCapture:
    """Keeps the input of the model's last Linear layer for the current batch (detached)."""

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear layer to take penultimate features from")
        self.layer = linears[-1]
        if isinstance(self.layer.weight, nn.parameter.UninitializedParameter):
            raise ValueError("the model's last nn.Linear is lazy and not initialized yet")
        self.dims = min(self.layer.in_features, FEATURE_DIMS)
        self._projection: torch.Tensor | None = None
        if self.layer.in_features > FEATURE_DIMS:
            g = torch.Generator().manual_seed(seed)
            self._projection = torch.randn(self.layer.in_features, FEATURE_DIMS, generator=g) / FEATURE_DIMS**0.5
        self.latest: torch.Tensor | None = None
        self.active = True  # whether the next forward pass is captured
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def attach(self) -> None:
        """Hook the layer (for the length of a run)."""
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        if not self.active or not module.training:  # evaluation passes are not training visits
            return
        if self._projection is None:
            self.latest = inputs[0].detach()
            return
        x = inputs[0].detach()
        if self._projection.device != x.device or self._projection.dtype != x.dtype:
            self._projection = self._projection.to(x.device, x.dtype)
        self.latest = x @ self._projection

    def take(self) -> torch.Tensor | None:
        """The features of the last forward pass, flattened to [N, dims]; None if none ran."""
        latest, self.latest = self.latest, None
        return None if latest is None else latest.flatten(0, -2) if latest.ndim > 2 else latest

    def remove(self) -> None:
        """Unhook the layer and drop any captured batch."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.latest = None


class FeatureBank:
    """Feature rows for at most ``capacity`` dataset indices; new rows replace the oldest."""

    def __init__(self, size: int, dims: int, max_bytes: int = BANK_BYTES) -> None:
        self.capacity = max(1, min(size, max_bytes // (2 * dims)))
        self.rows = np.zeros((self.capacity, dims), dtype=np.float16)
        self.owner = np.full(self.capacity, -1, dtype=np.int64)
        self.slot = np.full(size, -1, dtype=np.int32)
        self._next = 0

    def __len__(self) -> int:
        return int((self.owner >= 0).sum())

    def put(self, indices: np.ndarray, features: np.ndarray) -> None:
        """Store (or refresh) the features of ``indices``; a repeated index keeps its last row."""
        indices, last = np.unique(indices[::-1], return_index=True)
        features = features[::-1][last]
        slots = self.slot[indices]
        new = slots < 0
        count = int(new.sum())
        if count > self.capacity:  # more new rows than room: keep the last ones
            keep = np.flatnonzero(new)[-self.capacity:]
            new[:] = False
            new[keep] = True
            count = self.capacity
        fresh = (self._next + np.arange(count)) % self.capacity
        self._next = int((self._next + count) % self.capacity)
        evicted = self.owner[fresh]
        self.slot[evicted[evicted >= 0]] = -1
        slots[new] = fresh
        self.owner[fresh] = indices[new]
        self.slot[indices[new]] = fresh
        stored = slots >= 0
        self.rows[slots[stored]] = features[stored]

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the indices that have features, their feature rows as float32)."""
        slots = self.slot[indices]
        have = slots >= 0
        return have, self.rows[slots[have]].astype(np.float32)


def penultimate_capture(model: nn.Module, dataset: Any) -> PenultimateCapture | None:
    """A feature hook for clustering, unless the inputs are small vectors (used as they are)."""
    if feature_columns(dataset, np.arange(0)) is not None:
        return None
    try:
        return PenultimateCapture(model)
    except ValueError:
        return None
