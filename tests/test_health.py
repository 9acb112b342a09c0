"""Health checks on real runs: a healthy one passes, broken ones fail naming what broke."""

from __future__ import annotations

import torch
from conftest import classification_data
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session


class SqrtOfZero(nn.Module):
    """Adds sqrt(0 * x): nothing in the forward pass, an infinite derivative in the backward one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sqrt(torch.relu(x) * 0.0)


def session_of(model: nn.Module, lr: float = 0.05, **kwargs) -> Session:
    data = classification_data(256)
    return Session(model, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=8, shuffle=True), max_epochs=20, recluster_seconds=None, **kwargs)


def findings(session: Session) -> dict[str, tuple[str, str]]:
    frame = session.health()
    return {row.check: (row.status, row.evidence) for row in frame.itertuples()}


def test_a_healthy_run_passes_and_logs_it():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    try:
        session.start(paused=True)
        session.step(150)
        found = findings(session)
        assert {k: v[0] for k, v in found.items()} == {
            "loss": "pass", "parameters": "pass", "gradients": "pass", "learning rate": "pass", "loss trend": "pass"}
        assert "total norm" in found["gradients"][1]
        assert session.events[-1]["kind"] == "health" and session.events[-1]["status"] == "pass"
        assert session.health_report["step"] == 150 and len(session.health_report["results"]) == 5
    finally:
        session.stop()


def test_nan_gradients_fail_naming_the_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), SqrtOfZero(), nn.Linear(16, 3))
    session = session_of(model, stop_on_nan=False)
    try:
        session.start(paused=True)
        session.step(1)
        found = findings(session)
        assert found["gradients"][0] == "fail" and "0.weight" in found["gradients"][1]
        assert found["parameters"][0] == "fail" and "0.weight" in found["parameters"][1]
        assert session.events[-1]["status"] == "fail"
        assert session.status == "paused", "a health check does not disturb the run"
    finally:
        session.stop()


def test_an_unused_layer_and_a_wild_learning_rate_warn():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    session = session_of(Unused(), lr=5.0)
    try:
        session.start(paused=True)
        session.step(2)
        found = findings(session)
        assert found["gradients"][0] == "warn" and "spare.weight" in found["gradients"][1]
        assert found["learning rate"] == ("warn", "lr 5")
    finally:
        session.stop()


def test_health_before_the_first_step_and_after_the_end():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 3)))
    session.start(paused=True)
    found = findings(session)
    assert found["loss"][0] == "warn" and found["gradients"] == ("warn", "no gradients yet")
    session.stop()
    assert findings(session)["loss"][0] == "warn", "checks still run on an ended session"
