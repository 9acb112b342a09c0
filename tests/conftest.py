"""Shared fixtures: small real datasets and models made in the test, never downloaded."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def classification_data(n: int = 256, dim: int = 8, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Gaussian inputs with labels from a random linear rule."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, classes, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


def small_model(dim: int = 8, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, classes))


def make_session(n: int = 256, batch_size: int = 8, max_epochs: int = 50, lr: float = 1e-2,
                 **kwargs: Any) -> Session:
    data = classification_data(n)
    model = small_model()
    loader = DataLoader(data, batch_size=batch_size, shuffle=True)
    return Session(model, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(), loader,
                   max_epochs=max_epochs, **kwargs)


def planted_data(n: int = 4000, seed: int = 0, share: int = 20, blob: str = "opposite"
                 ) -> tuple[TensorDataset, np.ndarray]:
    """Two Gaussian classes split by a linear rule, plus 1/``share`` of the samples in a far blob
    whose labels follow the ``opposite`` rule (a region a linear model cannot fit), are ``coin``
    flips (label noise) or follow the ``same`` rule."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    planted = torch.zeros(n, dtype=torch.bool)
    planted[torch.randperm(n, generator=g)[: n // share]] = True
    x[planted, 2:4] += 4.0
    if blob == "opposite":
        y[planted] = 1 - y[planted]
    elif blob == "coin":
        y[planted] = torch.randint(0, 2, (int(planted.sum()),), generator=g)
    return TensorDataset(x, y), planted.numpy()


def train_plainly(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, loader: Any, epochs: int = 1,
                  steps: int | None = None) -> nn.Module:
    """The plain PyTorch loop a session is compared with: ``epochs`` passes (at most ``steps`` steps)."""
    done = 0
    for _ in range(epochs):
        for x, y in loader:
            if done == steps:
                return model
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()
            done += 1
    return model


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models' state dicts are equal bit for bit."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture
def session_factory():
    """Builds sessions and guarantees every training thread is gone after the test."""
    made: list[Session] = []

    def factory(**kwargs: Any) -> Session:
        session = make_session(**kwargs)
        made.append(session)
        return session

    yield factory
    for session in made:
        session.stop(timeout=10)
    assert no_training_threads(), "a training thread was left running"


def no_training_threads() -> bool:
    """No background training thread of any session is alive."""
    return not [t for t in threading.enumerate() if t.name.startswith("onthefly-train-") and t.is_alive()]
