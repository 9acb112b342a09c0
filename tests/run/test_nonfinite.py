"""A non-finite loss or gradient never reaches the weights (on the CPU): the step is not applied,
and the run stops naming it, or with stop_on_nan=False notes it and goes on."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import classification_data, small_model, train_plainly
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import NonFiniteLossError, Session

POISON_STEP = 4  # the batch of step 4 (counted from 0) holds the poisoned sample


def poisoned(n: int = 128, batch: int = 16) -> TensorDataset:
    x, y = classification_data(n).tensors
    x = x.clone()
    x[POISON_STEP * batch + 3, 0] = float("nan")
    return TensorDataset(x, y)


def session_of(model: nn.Module, data: TensorDataset, **kwargs) -> Session:
    return Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=16), max_epochs=3, recluster_seconds=None, health_every=None, **kwargs)


def test_a_nan_loss_stops_the_run_naming_the_step_with_the_weights_of_the_step_before():
    data = poisoned()
    model = small_model()
    twin = copy.deepcopy(model)
    expected = train_plainly(twin, torch.optim.SGD(twin.parameters(), lr=0.1), nn.functional.cross_entropy,
                             DataLoader(data, batch_size=16), steps=POISON_STEP)
    session = session_of(model, data)
    with pytest.raises(NonFiniteLossError, match=rf"at step {POISON_STEP} \(samples \[{POISON_STEP * 16 + 3}\]\).*"
                                                 rf"Step {POISON_STEP} was not applied"):
        session.run()
    assert session.status == "failed" and session.global_step == POISON_STEP
    for trained, plain in zip(model.parameters(), expected.parameters()):
        assert torch.isfinite(trained).all() and torch.equal(trained, plain)


def test_with_stop_on_nan_off_the_step_is_skipped_and_training_goes_on():
    data = poisoned()
    model = small_model()
    session = session_of(model, data, stop_on_nan=False)
    session.run()
    assert session.status == "finished" and session.global_step == 3 * 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
    skipped = [e for e in session.events if e["kind"] == "nonfinite_skipped"]
    assert [e["step"] for e in skipped] == [POISON_STEP, 8 + POISON_STEP, 16 + POISON_STEP]
    assert skipped[0]["what"] == "loss"


class InfiniteBackward(nn.Module):
    """x + sqrt(relu(x) * 0): a finite forward pass and loss, an infinite gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sqrt(torch.relu(x) * 0.0)


def test_an_infinite_gradient_under_clipping_is_caught_though_the_loss_is_finite():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), InfiniteBackward(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    session = session_of(model, classification_data(64), grad_clip_norm=1.0)
    with pytest.raises(NonFiniteLossError, match="gradient norm became NaN or infinite at step 0. Step 0 was not"):
        session.run()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before)), "no update reached the weights"
