"""Nothing hangs, nothing is lost: calls on the training thread, failed runs with workers, racing
evaluations, stuck runs, request floods and a script that ends while it trains."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, classification_data, make_session, small_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

from onthefly_nb import Session
from onthefly_nb.dashboard.commands import receive
from onthefly_nb.errors import StateError
from onthefly_nb.run.control import MAX_QUEUED_ACTIONS

CALLS = {
    "validate": lambda s: s.validate(), "health": lambda s: s.health(), "compare": lambda s: s.compare(),
    "check_determinism": lambda s: s.check_determinism(), "fork": lambda s: s.fork([0, 1, 2], budget=2),
    "export": lambda s: s.export("never.zip"),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_waiting_call_from_inside_a_step_is_refused_at_once(name, tmp_path):
    """A loss function (or a callback) runs on the training thread: a call that waits for the next
    boundary would wait for itself. It raises StateError, and the run goes on."""
    outcome: dict[str, BaseException | None] = {}
    data = classification_data(128)
    model = small_model()

    def loss(outputs, targets):
        if "error" not in outcome and session.global_step == 3:
            started = time.monotonic()
            try:
                CALLS[name](session)
                outcome["error"] = None
            except StateError as exc:
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - started
        return F.cross_entropy(outputs, targets, reduction="none")

    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), loss, DataLoader(data, batch_size=16),
                      DataLoader(data, batch_size=64), max_epochs=2, recluster_seconds=None, health_every=None,
                      run_name=f"self-{name}")
    session.start().wait(timeout=60)
    assert session.status == "finished"
    error = outcome["error"]
    assert isinstance(error, StateError) and "training thread" in str(error) and "wait=False" in str(error)
    assert outcome["seconds"] < 1


class FailsAt(Dataset):
    """A dataset whose sample ``bad`` raises in the loader's worker."""

    def __init__(self, bad: int) -> None:
        self.data, self.bad = classification_data(256), bad

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        if i == self.bad:
            raise ValueError(f"sample {i} is corrupt")
        return self.data[i]


def test_a_failed_run_lets_its_loader_workers_go():
    """A notebook keeps failed sessions (variables, tracebacks): their workers must not stay."""
    me = psutil.Process()
    before = len(me.children(recursive=True))
    kept = []
    for attempt in range(3):
        model = small_model()
        loader = DataLoader(FailsAt(bad=200), batch_size=16, shuffle=False, num_workers=2)
        session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), loader,
                          max_epochs=1, recluster_seconds=None, run_name=f"fails-{attempt}")
        session.start()
        with pytest.raises(ValueError, match="sample 200 is corrupt"):
            session.wait(timeout=60)
        kept.append(session)
    deadline = time.monotonic() + 20
    while len(me.children(recursive=True)) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(me.children(recursive=True)) == before, [p.cmdline()[:3] for p in me.children(recursive=True)]
    assert all(s.status == "failed" for s in kept)


def test_evaluations_after_the_run_from_many_threads_leave_the_model_and_rng_as_they_were():
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 3))
    data = classification_data(256)
    session = Session(model, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32), DataLoader(data, batch_size=64), max_epochs=1,
                      recluster_seconds=None, health_every=None)
    session.run()
    for _ in range(5):
        model.train()
        rng = torch.get_rng_state().clone()
        threads = [threading.Thread(target=lambda: [session.validate() for _ in range(4)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert model.training, "a racing evaluation left the model in eval mode"
        assert torch.equal(rng, torch.get_rng_state()), "a racing evaluation moved torch's global RNG"


def test_a_new_session_on_a_model_whose_old_run_is_stuck_is_refused(monkeypatch):
    monkeypatch.setattr("onthefly_nb.session.SUPERSEDE_SECONDS", 1.0)
    release = threading.Event()

    class Stuck(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = small_model()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                release.wait(30)  # a loader read or a step that hangs
            return self.inner(x)

    model = Stuck()
    build = lambda name: Session(model, torch.optim.SGD(model.parameters(), lr=0.1),  # noqa: E731
                                 nn.CrossEntropyLoss(), DataLoader(classification_data(256), batch_size=16),
                                 max_epochs=100, recluster_seconds=None, run_name=name)
    old = build("old").start()
    while model.calls < 3:
        time.sleep(0.01)
    with pytest.raises(StateError, match="'old' still trains this model.*has not ended in 1 s"):
        build("new")
    steps = old.global_step
    release.set()
    old.wait(timeout=30)
    assert old.status == "stopped" and old.global_step <= steps + 1  # it was asked to stop, and did
    fresh = build("fresh")  # once it has stopped, a new session is fine
    assert fresh.status == "idle"


def test_a_flood_of_requests_is_refused_past_the_bound_and_the_run_goes_on():
    session = make_session(n=256, max_epochs=10_000, recluster_seconds=None, health_every=None,
                           val_loader=DataLoader(classification_data(64), batch_size=64))
    session.start(paused=True)
    gate = threading.Event()
    try:
        busy = session.parts.run.controller.submit(lambda: gate.wait(30))  # the trainer is busy with it
        deadline = time.monotonic() + 10
        while not busy.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        futures = [session.validate(wait=False) for _ in range(MAX_QUEUED_ACTIONS)]
        with pytest.raises(StateError, match="requests already wait for the next step boundary"):
            session.validate(wait=False)
        assert receive(session, {"type": "command", "name": "validate"}, []) is not None  # the dashboard too
        gate.set()
        session.step(1)
        assert all(f.done() for f in futures)
        session.validate()  # room again
    finally:
        gate.set()
        session.stop(timeout=10)


def test_plan_params_cannot_make_the_handler_wait():
    """A plan message's params are the plan's, never ``approve``'s own ``wait``."""
    session = make_session(n=256, max_epochs=10_000, recluster_seconds=None)
    session.start(paused=True)
    try:
        plan = session.parts.plans.propose("validate_now", "Validate now", "a test card", {}, {})
        started = time.monotonic()
        reason = receive(session, {"type": "plan", "id": plan.id, "decision": "approve", "params": {"wait": 1}}, [])
        assert time.monotonic() - started < 1
        assert reason is not None and "wait" in reason
        assert any(e["kind"] == "rejected_message" for e in session.events)
    finally:
        session.stop(timeout=10)


SCRIPT = """
import sys, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly_nb import Session
torch.manual_seed(0)
x = torch.randn(200_000, 16); y = (x[:, 0] > 0).long()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                  DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True), max_epochs=1000,
                  recluster_seconds=None)
session.start()
session.wait_for(step=20)
{tail}
print("script ends at step", session.global_step, flush=True)
"""


def run_script(tmp_path, tail: str) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT).format(tail=tail))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_a_script_that_ends_while_it_trains_exits_cleanly(tmp_path):
    done = run_script(tmp_path, "")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr and "script ends at step" in done.stdout


def test_an_export_asked_for_just_before_a_script_ends_is_written(tmp_path):
    done = run_script(tmp_path, "session.export('late.zip', wait=False)")
    assert done.returncode == 0, done.stderr[-2000:]
    archive = tmp_path / "late.zip"
    assert archive.is_file() and not list(tmp_path.glob("*.tmp*"))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    loaded = Session.load(archive, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                          loss_fn=nn.CrossEntropyLoss(),
                          train_loader=DataLoader(torch.utils.data.TensorDataset(torch.randn(200_000, 16),
                                                                                 torch.zeros(200_000).long()),
                                                  batch_size=64))
    assert loaded.global_step >= 20

