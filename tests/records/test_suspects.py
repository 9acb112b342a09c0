"""session.suspects() finds planted label flips in one run; forgets ranks never-learnt samples first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, small_model
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import ConfigurationError, Session


def flipped(n: int = 600, rate: float = 0.15, seed: int = 1) -> tuple[TensorDataset, np.ndarray]:
    """Separable data with a share of labels moved to another class; the mask of the moved ones."""
    x, y = classification_data(n).tensors
    rng = np.random.default_rng(seed)
    flip = rng.random(n) < rate
    noisy = y.clone()
    noisy[torch.from_numpy(flip)] = (y[torch.from_numpy(flip)] + torch.from_numpy(rng.integers(1, 3, flip.sum()))) % 3
    return TensorDataset(x, noisy), flip


@pytest.fixture(scope="module")
def trained() -> tuple[Session, np.ndarray]:
    data, flip = flipped()
    model = small_model()
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32, shuffle=True), max_epochs=20, recluster_seconds=None,
                      health_every=None)
    return session.run(), flip


def test_suspects_are_the_flipped_samples(trained):
    session, flip = trained
    found = session.suspects()
    predicted = np.zeros(len(flip), bool)
    predicted[found["index"].to_numpy()] = True
    assert f1_score(flip, predicted) >= 0.8, (predicted.sum(), flip.sum())
    assert found["confidence"].is_monotonic_increasing and (found["correctness"] < 0.5).all()
    assert list(found.columns[:3]) == ["index", "label", "prediction"]


def test_forgets_ranks_never_learnt_samples_as_most_forgotten(trained):
    session, flip = trained
    frame = session.slice().set_index("index").sort_index()
    never = frame["correctness"] == 0
    assert never.any() and np.isinf(frame.loc[never, "forgets"]).all()
    assert np.isfinite(frame.loc[~never, "forgets"]).all()
    assert roc_auc_score(flip, frame["forgets"].replace(np.inf, 1e9)) >= 0.85


def test_a_bad_threshold_and_a_regression_run_are_refused(trained, session_factory):
    session, _ = trained
    with pytest.raises(ConfigurationError, match="share of visits"):
        session.suspects(threshold=0)
    x = torch.randn(64, 4)
    model = nn.Linear(4, 1)
    regression = Session(model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(),
                         DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16), max_epochs=2,
                         recluster_seconds=None).run()
    with pytest.raises(ConfigurationError, match="classification"):
        regression.suspects()
