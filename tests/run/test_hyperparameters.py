"""Hyperparameters changed live from Python: at a step boundary, recorded as an event, kept in the
saved session, and refused with a clear error when they do not fit the optimizer."""

from __future__ import annotations

import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import ConfigurationError, Session


def session_of(optimizer_of, **kwargs) -> Session:
    model = small_model()
    return Session(model, optimizer_of(model.parameters()), nn.CrossEntropyLoss(),
                   DataLoader(classification_data(128), batch_size=16), max_epochs=50, recluster_seconds=None,
                   **kwargs)


def test_a_change_lands_at_a_step_boundary_is_an_event_and_is_saved(tmp_path):
    session = session_of(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    session.start(paused=True)
    try:
        session.step(5)
        said = session.set_hyperparameters(lr=0.01, momentum=0.5, grad_clip_norm=1.0)
        assert "lr [0.1] -> 0.01" in said
        group = session.optimizer.param_groups[0]
        assert group["lr"] == 0.01 and group["momentum"] == 0.5 and session.parts.run.loop.clip_norm == 1.0
        event = next(e for e in session.events if e["kind"] == "hyperparameters")
        assert event["step"] == 5 and event["before"]["lr"] == [0.1] and event["after"]["momentum"] == 0.5
        session.step(3)
        session.export(tmp_path / "run.zip")
    finally:
        session.stop()
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loaded = Session.load(tmp_path / "run.zip", model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(),
                          train_loader=DataLoader(classification_data(128), batch_size=16))
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0.5
    assert loaded.parts.run.loop.clip_norm == 1.0


def test_a_scheduler_goes_on_from_the_new_learning_rate():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(classification_data(64), batch_size=16),
                      scheduler=scheduler, max_epochs=10, recluster_seconds=None)
    session.start(paused=True)
    try:
        session.step(1)
        session.set_hyperparameters(lr=0.02)
        session.step(4)  # the epoch (4 steps) ends: StepLR halves the rate it was given
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    finally:
        session.stop()


def test_values_that_do_not_fit_the_optimizer_are_refused_naming_the_problem():
    session = session_of(lambda p: torch.optim.Adam(p, lr=1e-3))
    with pytest.raises(ConfigurationError, match="Adam has no 'momentum'"):
        session.set_hyperparameters(momentum=0.9)
    with pytest.raises(ConfigurationError, match="lr must be a finite number > 0"):
        session.set_hyperparameters(lr=0)
    with pytest.raises(ConfigurationError, match="betas must be two numbers"):
        session.set_hyperparameters(betas=(0.9, 1.2))
    with pytest.raises(ConfigurationError, match="group must be None"):
        session.set_hyperparameters(lr=0.1, group=3)
    with pytest.raises(ConfigurationError, match="name a hyperparameter"):
        session.set_hyperparameters()
    assert session.optimizer.param_groups[0]["betas"] == (0.9, 0.999), "nothing changed by a refused call"
    assert not any(e["kind"] == "hyperparameters" for e in session.events)
