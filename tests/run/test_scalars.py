"""Scalars over steps: the gauges read at each flush (learning rate per group, gradient norm,
throughput, memory), validation figures, and what the user logs with session.log(name=value);
kept in a saved session and sent to the dashboard as the scalars trait."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.dashboard.contract import check_traits
from onthefly_nb.errors import ConfigurationError


def two_group_session(**kwargs) -> Session:
    model = small_model()
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                                lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(classification_data(512), batch_size=16),
                   DataLoader(classification_data(128, seed=1), batch_size=64), scheduler=scheduler,
                   recluster_seconds=None, health_every=None, **kwargs)


def series(session: Session, name: str) -> tuple[np.ndarray, np.ndarray]:
    frame = session.scalars
    rows = frame[frame["name"] == name]
    return rows["step"].to_numpy(), rows["value"].to_numpy()


def test_each_flush_reads_the_learning_rate_of_every_group_the_gradient_norm_and_memory():
    session = two_group_session(max_epochs=3)
    session.start(paused=True)
    for _ in range(3 * 32 - 1):  # a pause flushes: one reading per step, each checked below
        session.step(1)
    session.resume().wait(timeout=60)
    steps, first = series(session, "lr/group 0")
    _, second = series(session, "lr/group 1")
    assert len(steps) >= 90 and (np.diff(steps) >= 0).all()
    inside = steps % 32 != 0  # at an epoch's end it is read before and after the scheduler halves it
    epoch = steps[inside] // 32
    np.testing.assert_allclose(first[inside], 0.1 * 0.5 ** epoch, rtol=1e-6)
    np.testing.assert_allclose(second[inside], 0.02 * 0.5 ** epoch, rtol=1e-6)
    assert set(first[~inside].tolist()) <= {0.1, 0.05, 0.025, 0.0125}
    _, norms = series(session, "grad norm")
    assert np.isfinite(norms).all() and (norms > 0).all()
    last = torch.nn.utils.get_total_norm([p.grad for p in session.model.parameters()])
    assert norms[-1] == pytest.approx(float(last)), "the last reading is the last step's gradients"
    assert (series(session, "host memory (MB)")[1] > 10).all()
    validation = [r["loss"] for r in session.metrics["validation"]]
    np.testing.assert_allclose(series(session, "validation loss")[1], validation)
    assert len(series(session, "validation accuracy")[1]) == 3


def test_session_log_charts_a_users_scalar_at_the_current_step_and_refuses_what_is_not_a_number():
    session = two_group_session(max_epochs=1)
    session.start(paused=True).step(5)
    session.log(f1=0.5, margin=torch.tensor(2.0), count=np.int64(3))
    session.step(5)
    session.log(f1=0.75)
    with pytest.raises(ConfigurationError, match=r"session.log\(name=\.\.\.\) takes a real number, got str"):
        session.log(name="x")
    with pytest.raises(ConfigurationError, match="got Tensor"):
        session.log(batch=torch.ones(3))
    steps, values = series(session, "f1")
    assert steps.tolist() == [5, 10] and values.tolist() == [0.5, 0.75]
    assert series(session, "margin")[1].tolist() == [2.0] and series(session, "count")[1].tolist() == [3.0]
    traits = session.parts.view.values()
    check_traits(traits)
    logged = {s["name"]: s for s in traits["scalars"] if s["group"] == "logged"}
    assert sorted(logged) == ["count", "f1", "margin"] and logged["f1"]["points"] == [[5.0, 0.5], [10.0, 0.75]]
    assert {"lr/group 0", "grad norm"} <= {s["name"] for s in traits["scalars"] if s["group"] == "measured"}
    session.stop()


def test_scalars_come_back_with_a_saved_session(tmp_path):
    session = two_group_session(max_epochs=1)
    session.start(paused=True).step(4)
    session.log(f1=0.25)
    session.export(tmp_path / "run.zip")
    before = session.scalars
    session.stop()
    model = small_model()
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                                lr=0.1)
    loaded = Session.load(tmp_path / "run.zip", model, optimizer, nn.CrossEntropyLoss(),
                          DataLoader(classification_data(512), batch_size=16),
                          scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5))
    assert loaded.scalars.equals(before)
    assert {s["name"]: s["group"] for s in loaded.parts.view.values()["scalars"]}["f1"] == "logged"
