"""A non-finite loss or gradient never reaches the weights (on the CPU): the step is not applied,
and the run stops naming it, or with stop_on_nan=False notes it and goes on."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import classification_data, same_weights, small_model, train_plainly
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import NonFiniteLossError, Session

POISON_STEP = 4  # the batch of step 4 (counted from 0) holds the poisoned sample


def poisoned(n: int = 128, batch: int = 16) -> TensorDataset:
    x, y = classification_data(n).tensors
    x = x.clone()
    x[POISON_STEP * batch + 3, 0] = float("nan")
    return TensorDataset(x, y)


def session_of(model: nn.Module, data: TensorDataset, optimizer: torch.optim.Optimizer | None = None,
               **kwargs) -> Session:
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    return Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(data, batch_size=16), max_epochs=3,
                   recluster_seconds=None, health_every=None, **kwargs)


def fused_adam(model: nn.Module) -> torch.optim.Optimizer:
    """An optimizer whose kernel skips its update when ``found_inf`` is set (the device-side guard)."""
    return torch.optim.Adam(model.parameters(), lr=0.01, fused=True)


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


def test_after_a_nan_stop_the_steps_before_it_are_kept_and_the_health_check_names_the_step():
    session = session_of(small_model(), poisoned())
    with pytest.raises(NonFiniteLossError):
        session.run()
    assert session.store.seen.sum() == POISON_STEP * 16, "the finite steps before the NaN are in the store"
    history = session.history
    assert history["step"].tolist() == list(range(POISON_STEP + 1))
    assert history["mean"].iloc[:-1].notna().all() and history["mean"].isna().iloc[-1]
    loss = session.health().set_index("check").loc["loss"]
    assert loss["status"] == "fail" and f"step {POISON_STEP}" in loss["evidence"]


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
    loss = session.health().set_index("check").loc["loss"]  # every recorded loss is finite: the stop tells
    assert loss["status"] == "fail" and loss["evidence"].startswith("the gradient norm became NaN or infinite at step")


def test_a_fused_optimizer_skips_the_bad_steps_on_the_device_and_trains_as_the_loop_without_them():
    data = poisoned()
    model = small_model()
    twin = copy.deepcopy(model)
    session = session_of(model, data, fused_adam(model), stop_on_nan=False)
    session.run()
    assert session.status == "finished" and session.global_step == 3 * 8
    skipped = [e for e in session.events if e["kind"] == "nonfinite_skipped"]
    assert [(e["step"], e["what"]) for e in skipped] == [(s, "loss") for s in (POISON_STEP, 8 + POISON_STEP,
                                                                                16 + POISON_STEP)]
    optimizer = fused_adam(twin)
    for _ in range(3):  # the plain loop that leaves the poisoned batch out
        for x, y in DataLoader(data, batch_size=16):
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(x).all():
                continue
            nn.functional.cross_entropy(twin(x), y).backward()
            optimizer.step()
    assert same_weights(model, twin), "a skipped step leaves no trace: weights and Adam's moments as without it"


def test_with_a_fused_optimizer_the_run_stops_at_the_next_flush_naming_the_skipped_step():
    model = small_model()
    session = session_of(model, poisoned(), fused_adam(model))
    with pytest.raises(NonFiniteLossError, match=rf"at step {POISON_STEP} \(samples \[{POISON_STEP * 16 + 3}\]\).*"
                                                 rf"Step {POISON_STEP} was skipped on the device"):
        session.run()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert session.health().set_index("check").loc["loss", "status"] == "fail"


def test_with_a_fused_optimizer_an_infinite_gradient_norm_is_skipped_on_the_device():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), InfiniteBackward(), nn.Linear(16, 3))
    before = copy.deepcopy(model)
    session = session_of(model, classification_data(64), fused_adam(model), grad_clip_norm=1.0)
    with pytest.raises(NonFiniteLossError, match="gradient norm became NaN or infinite at step 0. Step 0 was skipped"):
        session.run()
    assert same_weights(model, before), "no update reached the weights"
