"""Validation and test runs, automatic or asked for mid-run, leave training to continue as before."""

from __future__ import annotations

import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session


def build(seed: int = 0, scheduler=None, **kwargs) -> Session:
    torch.manual_seed(seed)
    data = classification_data(96, seed=seed)
    model = small_model(seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Session(model, optimizer, nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=8, shuffle=True),
                   val_loader=DataLoader(data, batch_size=16, shuffle=True),
                   test_loader=DataLoader(data, batch_size=32), max_epochs=4,
                   scheduler=scheduler(optimizer) if scheduler else None, **kwargs)


def test_mid_run_validation_and_test_do_not_change_the_trajectory():
    plain = build()
    plain.start(paused=True)
    plain.step(5)
    plain.resume()
    plain.wait(timeout=60)

    probed = build()
    probed.start(paused=True)
    probed.step(5)
    first = probed.validate()
    probed.test()
    probed.resume()
    probed.validate()  # while running: runs at the next step boundary
    probed.wait(timeout=60)

    assert first["step"] == 5 and 0 <= first["accuracy"] <= 1 and first["samples"] == 96
    for a, b in zip(plain.model.parameters(), probed.model.parameters()):
        assert torch.equal(a, b), "a validation run changed the training trajectory"
    assert plain.global_step == probed.global_step == 4 * 12
    kinds = [e["kind"] for e in probed.events]
    assert kinds.count("validation") == 4 + 2 and kinds.count("test") == 1


def test_validation_each_epoch_and_test_after_training():
    session = build(do_test_after=True).start().wait(timeout=60)
    metrics = session.metrics
    assert [m["epoch"] for m in metrics["validation"]] == [1, 2, 3, 4]
    assert metrics["validation"][-1]["loss"] < metrics["validation"][0]["loss"]
    assert len(metrics["test"]) == 1 and metrics["test"][0]["step"] == 48
    assert session.events[-2]["kind"] == "test" and session.events[-1]["kind"] == "finished"
    assert session.model.training, "evaluation left the model in eval mode"


def test_validation_after_the_run_ended_runs_in_the_caller():
    session = build().start().wait(timeout=60)
    result = session.validate()
    assert result["step"] == 48 and result["loss"] is not None


def test_epoch_scheduler_steps_once_per_epoch():
    session = build(scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    session.start().wait(timeout=60)
    assert session.optimizer.param_groups[0]["lr"] == 1e-2 * 0.5**4


def test_step_scheduler_steps_once_per_batch():
    session = build(scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)),
                    scheduler_interval="step")
    session.start().wait(timeout=60)
    assert abs(session.optimizer.param_groups[0]["lr"] - 1e-2 / (1 + 48)) < 1e-12


def test_plateau_scheduler_steps_on_the_validation_loss():
    session = build(scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5))
    session.start().wait(timeout=60)
    losses = [m["loss"] for m in session.metrics["validation"]]
    worse = sum(b >= a for a, b in zip(losses, losses[1:]))
    assert session.optimizer.param_groups[0]["lr"] == 1e-2 * 0.5**worse
