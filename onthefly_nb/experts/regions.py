"""The held-out part of a slice's region: the validation samples that lie where the slice lies.

A verdict on a fork or a merge is measured on them, since no candidate (not the run, not a fork)
trained on validation data. A validation sample is in the region when most of its
``REGION_NEIGHBOURS`` nearest training samples are in the slice, in the space the router reads:
the inputs when they are small vectors, else the run's penultimate features at the fork.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from .gate import features_and_output

REGION_NEIGHBOURS = 5
MAX_REFERENCE = 20_000  # training samples (a uniform sample of them) the neighbours are found among
MAX_HELD_OUT = 50_000  # validation samples looked at


def embed(model: nn.Module, feature_layer: str | None, inputs: Iterable[torch.Tensor]) -> np.ndarray:
    """The router's features (``gate.features_and_output``) of every batch of ``inputs``, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [features_and_output(model, feature_layer, x)[0].float().cpu().numpy() for x in inputs]
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def in_region(reference: np.ndarray, in_slice: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Which ``queries`` have most of their nearest ``reference`` points in the slice."""
    if not len(queries) or not in_slice.any():
        return np.zeros(len(queries), bool)
    if in_slice.all():
        return np.ones(len(queries), bool)
    neighbours = KNeighborsClassifier(n_neighbors=min(REGION_NEIGHBOURS, len(reference)))
    return neighbours.fit(reference, in_slice).predict(queries).astype(bool)
