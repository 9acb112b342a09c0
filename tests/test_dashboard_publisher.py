"""The dashboard publisher: at most ten updates a second, consistent snapshots, commands queued.

The kernel comm is replaced by a recorder (nothing a user touches); everything else is real.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("onthefly_nb.widget", reason="front-end bundle not built", exc_type=FileNotFoundError)


class RecordingComm:
    comm_id = "recording"
    kernel = "present"

    def __init__(self, *args, **kwargs):
        self.sent: list[tuple[float, dict, list]] = []

    def open(self, *args, **kwargs):
        pass

    def on_msg(self, *args, **kwargs):
        pass

    def send(self, data=None, metadata=None, buffers=None):
        self.sent.append((time.monotonic(), data, list(buffers or [])))

    def close(self, *args, **kwargs):
        pass


@pytest.fixture
def recording_comm(monkeypatch):
    import ipywidgets.widgets.widget as widget_module

    made: list[RecordingComm] = []

    def create_comm(**kwargs):
        made.append(RecordingComm())
        return made[-1]

    monkeypatch.setattr(widget_module.comm, "create_comm", create_comm)
    return made


def updates(comm: RecordingComm) -> list[tuple[float, dict, list]]:
    return [m for m in comm.sent if m[1] and m[1].get("method") == "update"]


def test_updates_are_throttled_and_small_while_training(session_factory, recording_comm):
    session = session_factory(n=512, batch_size=4, max_epochs=1000)
    dashboard = session.dashboard()
    assert session.dashboard() is dashboard, "one dashboard per session"
    comm = dashboard.comm
    session.start()
    time.sleep(2.0)
    session.pause()
    sent = updates(comm)
    times = np.array([t for t, _, _ in sent])
    assert len(sent) >= 5, "the dashboard was not updated while training"
    window = 1.0
    busiest = max(((times >= t) & (times < t + window)).sum() for t in times)
    assert busiest <= 11, f"{busiest} updates within one second"
    for _, data, buffers in sent:
        size = len(json.dumps(data["state"], default=str)) + sum(len(b) for b in buffers)
        assert size < 64 * 1024, f"an update of {size} bytes"


def test_last_update_matches_the_paused_session(session_factory, recording_comm):
    session = session_factory(n=256, batch_size=8, max_epochs=1000)
    dashboard = session.dashboard()
    comm = dashboard.comm
    session.start()
    time.sleep(0.5)
    session.pause()
    time.sleep(0.3)
    state: dict = {}
    buffer = None
    for _, data, buffers in updates(comm):
        state.update(data["state"])
        if "curve" in data["state"]:
            buffer = buffers[data["buffer_paths"].index(["curve", "data"])]
    assert state["run"]["state"] == "paused"
    assert state["run"]["step"] == session.global_step
    rows = np.frombuffer(bytes(buffer), dtype="<f4").reshape(-1, 7)
    history = session.history
    assert rows[-1, 0] == history["step"].iloc[-1]
    np.testing.assert_allclose(rows[-1, 3], history["p50"].iloc[-1], rtol=1e-6)
    assert len(rows) <= 1000


def test_browser_commands_reach_the_trainer(session_factory, recording_comm):
    session = session_factory(n=256, max_epochs=1000)
    dashboard = session.dashboard()
    session.start()
    dashboard._on_message(dashboard, {"type": "command", "name": "pause"}, [])
    assert session._controller.wait_until(lambda s: s.value == "paused", 10)
    k = session.global_step
    dashboard._on_message(dashboard, {"type": "command", "name": "step", "n": 3}, [])
    deadline = time.time() + 10
    while session.global_step < k + 3 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert session.global_step == k + 3 and session.status == "paused"
    for junk in ({"type": "command", "name": "step", "n": -2}, {"type": "command", "name": "rm -rf"},
                 {"type": "other"}, "not a dict"):
        dashboard._on_message(dashboard, junk, [])
    assert session.status == "paused" and session.global_step == k + 3
    dashboard._on_message(dashboard, {"type": "command", "name": "stop"}, [])
    session.wait(timeout=10)
    assert session.status == "stopped"


def test_closing_the_dashboard_ends_its_publisher(session_factory, recording_comm):
    session = session_factory(n=64, max_epochs=2)
    dashboard = session.dashboard()
    session.start().wait(timeout=30)
    publisher = dashboard._publisher
    assert publisher.is_alive()
    dashboard.close()
    publisher.join(timeout=5)
    assert not publisher.is_alive()
    assert session.dashboard() is not dashboard, "a closed dashboard is replaced by a new one"
