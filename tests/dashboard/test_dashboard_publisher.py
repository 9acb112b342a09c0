"""The dashboard publisher: at most ten updates a second, consistent snapshots, commands queued.

The kernel comm is replaced by a recorder (nothing a user touches); everything else is real.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import classification_data
from torch.utils.data import DataLoader

from onthefly_nb import Session

pytest.importorskip("onthefly_nb.dashboard.widget", reason="front-end bundle not built", exc_type=FileNotFoundError)


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
    dashboard.handle_message({"type": "command", "name": "pause"}, [])
    assert session.parts.run.controller.wait_until(lambda s: s.value == "paused", 10)
    k = session.global_step
    dashboard.handle_message({"type": "command", "name": "step", "n": 3}, [])
    deadline = time.time() + 10
    while session.global_step < k + 3 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert session.global_step == k + 3 and session.status == "paused"
    for junk in ({"type": "command", "name": "step", "n": -2}, {"type": "command", "name": "rm -rf"},
                 {"type": "other"}, "not a dict"):
        dashboard.handle_message(junk, [])
    assert session.status == "paused" and session.global_step == k + 3
    dashboard.handle_message({"type": "command", "name": "stop"}, [])
    session.wait(timeout=10)
    assert session.status == "stopped"


def test_export_and_determinism_buttons_reach_the_session(session_factory, recording_comm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = session_factory(n=256, max_epochs=1000)
    dashboard = session.dashboard()
    dashboard.handle_message({"type": "command", "name": "determinism"}, [])  # no step yet
    wait_for(lambda: any(e["kind"] == "command_failed" for e in session.events))
    failed = next(e for e in session.events if e["kind"] == "command_failed")
    assert failed["command"] == "determinism" and "no step has run yet" in failed["reason"]
    session.start(paused=True)
    session.step(5)
    dashboard.handle_message({"type": "command", "name": "determinism"}, [])
    dashboard.handle_message({"type": "command", "name": "export"}, [])
    wait_for(lambda: any(e["kind"] == "exported" for e in session.events))
    exported = next(e for e in session.events if e["kind"] == "exported")
    assert exported["step"] == 5 and exported["path"] == str(tmp_path / session.default_export_path().name)
    loaded = Session.load(exported["path"], session.model, session.optimizer, session.loss_fn, session.train_loader)
    assert loaded.global_step == 5
    checks = {r["check"]: r["status"] for r in session.health_report["results"]}
    assert checks["determinism"] == "pass"
    def shown() -> list[str]:
        health = latest_state(dashboard.comm)[0].get("health") or {"results": []}
        return [r["check"] for r in health["results"]]

    wait_for(lambda: "determinism" in shown())  # the dashboard got the result


def test_closing_the_dashboard_ends_its_publisher(session_factory, recording_comm):
    session = session_factory(n=64, max_epochs=2)
    dashboard = session.dashboard()
    session.start().wait(timeout=30)
    assert session.parts.publisher.watched and session.parts.publisher.running
    dashboard.close()
    wait_for(lambda: not session.parts.publisher.running)
    assert not session.parts.publisher.watched
    assert session.dashboard() is not dashboard, "a closed dashboard is replaced by a new one"


def latest_state(comm: RecordingComm) -> tuple[dict, dict]:
    """The trait values and the binary buffers (by path) of every update so far, merged."""
    state: dict = {}
    binary: dict = {}
    for _, data, buffers in updates(comm):
        state.update(data["state"])
        for path, buffer in zip(data.get("buffer_paths", []), buffers):
            binary[tuple(path)] = bytes(buffer)
    return state, binary


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_the_sample_map_is_sent_once_per_clustering(session_factory, recording_comm):
    session = session_factory(n=600, max_epochs=3, recluster_seconds=None)
    session.start().wait(timeout=60)
    clustering = session.cluster()
    dashboard = session.dashboard()
    wait_for(lambda: "points" in latest_state(dashboard.comm)[0])
    session.parts.changed.set()
    time.sleep(0.3)
    sends = [d for _, d, _ in updates(dashboard.comm) if "points" in d["state"]]
    assert len(sends) == 1, "the map is resent only when the clustering changes"
    state, binary = latest_state(dashboard.comm)
    points = state["points"]
    n = points["n"]
    assert n == 600 == len(clustering.indices) + len(clustering.background)
    index = np.frombuffer(binary[("points", "index")], "<u4")
    cluster = np.frombuffer(binary[("points", "cluster")], "<u2")
    x = np.frombuffer(binary[("points", "x")], "<f4")
    loss = np.frombuffer(binary[("points", "loss")], "<f4")
    assert sorted(index) == list(range(600))
    hard = len(clustering.indices)
    np.testing.assert_array_equal(cluster[:hard], clustering.labels)
    assert (cluster[hard:] == 0xFFFF).all()
    np.testing.assert_array_equal(x[:hard], clustering.projection[:, 0])
    np.testing.assert_array_equal(loss, session.store.loss[index])
    frame = session.slice(index[:hard].tolist())
    assert (frame["cluster"].to_numpy() == clustering.labels).all()


def test_a_lasso_selection_reaches_python_and_every_view(session_factory, recording_comm):
    session = session_factory(n=300, max_epochs=1)
    session.start().wait(timeout=30)
    dashboard = session.dashboard()
    chosen = np.array([7, 3, 250, 3], dtype="<u4")
    dashboard.handle_message({"type": "select", "n": 4}, [memoryview(chosen.tobytes())])
    assert session.selection.tolist() == [3, 7, 250]
    wait_for(lambda: latest_state(dashboard.comm)[0].get("selection", {}).get("n") == 3)
    state, binary = latest_state(dashboard.comm)
    assert np.frombuffer(binary[("selection", "index")], "<u4").tolist() == [3, 7, 250]
    assert session.slice(session.selection)["index"].tolist() == [3, 7, 250]
    dashboard.handle_message({"type": "select", "n": 0}, [])
    assert session.selection.tolist() == []


def test_bad_messages_are_logged_and_change_nothing(session_factory, recording_comm):
    session = session_factory(n=300, max_epochs=1)
    session.start().wait(timeout=30)
    dashboard = session.dashboard()
    session.select([1, 2])
    junk = [
        ({"type": "select", "n": 3}, [np.array([1], "<u4").tobytes()]),
        ({"type": "select", "n": 1}, [np.array([999], "<u4").tobytes()]),
        ({"type": "select", "n": "all"}, []),
        ({"type": "plan", "id": "plan-404", "decision": "approve"}, []),
        ({"type": "plan", "id": 3, "decision": "approve"}, []),
        ({"type": "command", "name": "format-disk"}, []),
        ({"type": "nonsense"}, []),
    ]
    for content, buffers in junk:
        dashboard.handle_message(content, buffers)
    rejected = [e for e in session.events if e["kind"] == "rejected_message"]
    assert len(rejected) == len(junk)
    reasons = " | ".join(e["reason"] for e in rejected)
    assert "buffer holds 4 bytes, not 12" in reasons and "outside the dataset of 300" in reasons
    assert "no plan 'plan-404'" in reasons and "unknown command 'format-disk'" in reasons
    assert session.selection.tolist() == [1, 2]


def test_plan_decisions_from_the_browser_reach_the_engine(session_factory, recording_comm):
    session = session_factory(n=256, max_epochs=1000)
    dashboard = session.dashboard()
    session.start(paused=True)
    session.step(80)
    for group in session.optimizer.param_groups:
        group["lr"] = 60.0
    session.step(10)
    plan = next(p for p in session.plans if p["kind"] == "lower_lr")
    dashboard.handle_message({"type": "plan", "id": plan["id"], "decision": "approve",
                                      "params": {"factor": 0.25}}, [])
    wait_for(lambda: session.plans[0]["status"] == "executed")
    assert session.optimizer.param_groups[0]["lr"] == 15.0
    wait_for(lambda: (latest_state(dashboard.comm)[0].get("plans") or [{}])[0].get("status") == "executed")
    assert latest_state(dashboard.comm)[0]["plans"][0]["result"] == "lr 60 -> 15"


def test_the_static_summary_travels_with_the_widget(session_factory, recording_comm):
    session = session_factory(n=256, max_epochs=2)
    session.start().wait(timeout=30)
    bundle, _ = session.dashboard()._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert "finished" in html and "<svg" in html and f"{session.global_step} / {session.total_steps}" in html


def test_vscode_gets_the_renderer_payload_beside_the_widget(session_factory, recording_comm, monkeypatch):
    from onthefly_nb.dashboard.widget import RENDERER_MIME

    for key in [k for k in __import__("os").environ if k.startswith("VSCODE_")]:
        monkeypatch.delenv(key)
    session = session_factory(n=64, max_epochs=1)
    bundle, _ = session.dashboard()._repr_mimebundle_()
    assert RENDERER_MIME not in bundle and "text/html" in bundle, "no bridge outside VS Code unless asked"
    monkeypatch.setenv("VSCODE_PID", "4242")
    bundle, _ = session.dashboard()._repr_mimebundle_()
    try:
        payload = bundle[RENDERER_MIME]
        server = session.parts.hosting.server
        assert payload == {"url": f"http://127.0.0.1:{server.port}/", "token": server.token,
                           "session": session.run_name}
        assert "application/vnd.jupyter.widget-view+json" in bundle
    finally:
        session.parts.hosting.server.stop()


def test_health_and_validate_buttons_still_work_after_the_run_ends(session_factory, recording_comm):
    session = session_factory(n=128, max_epochs=1, val_loader=DataLoader(classification_data(64), batch_size=32))
    dashboard = session.dashboard()
    session.start().wait(timeout=60)
    assert session.status == "finished"
    validations = sum(e["kind"] == "validation" for e in session.events)  # the one at the epoch's end
    dashboard.handle_message({"type": "command", "name": "health"}, [])
    dashboard.handle_message({"type": "command", "name": "validate"}, [])
    wait_for(lambda: sum(e["kind"] == "validation" for e in session.events) > validations
             and any(e["kind"] == "health" for e in session.events), timeout=30)
    assert not any(e["kind"] == "command_failed" for e in session.events)


def test_the_chart_gets_every_marker_of_the_run_not_the_last_fifty_events(session_factory, recording_comm):
    session = session_factory(n=128, max_epochs=20)
    session.start(paused=True)
    for _ in range(30):  # 60 pause/resume markers, each at a step boundary
        session.step(1)
    session.wait_for(state="paused")
    for _ in range(40):
        session.health()
    snapshot = session.snapshot()
    kinds = [e["kind"] for e in snapshot["markers"]]
    assert len(snapshot["events"]) == 50
    assert kinds.count("health") == 40 and kinds.count("paused") >= 30, kinds
    assert snapshot["markers"][0]["seq"] < snapshot["events"][0]["seq"], "markers reach back past the event tail"
    assert {"epoch_end", "started"}.isdisjoint(kinds), "only the kinds the chart draws"
    session.stop()


def test_hyperparameters_edited_in_the_dashboard_reach_the_optimizer_at_a_step_boundary(recording_comm):
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.AdamW([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=1e-3)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(classification_data(256), batch_size=16),
                      max_epochs=5, recluster_seconds=None, health_every=None)
    dashboard = session.dashboard()
    session.start(paused=True)
    shown = session.parts.view.values()["hyperparameters"]
    assert shown["groups"][1] == {"lr": 1e-3, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999}
    assert shown["grad_clip_norm"] is None
    dashboard.handle_message({"type": "hyperparameters", "values": {"lr": 5e-4, "beta2": 0.98}, "group": 1}, [])
    dashboard.handle_message({"type": "hyperparameters", "values": {"grad_clip_norm": 2.0}}, [])
    session.step(1)
    wait_for(lambda: sum(e["kind"] == "hyperparameters" for e in session.events) == 2, timeout=10)
    assert optimizer.param_groups[1]["lr"] == 5e-4 and optimizer.param_groups[1]["betas"] == (0.9, 0.98)
    assert optimizer.param_groups[0]["lr"] == 1e-3 and optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    assert session.parts.view.values()["hyperparameters"]["grad_clip_norm"] == 2.0
    dashboard.handle_message({"type": "hyperparameters", "values": {"momentum": 0.9}}, [])
    refused = [e for e in session.events if e["kind"] == "rejected_message"][-1]
    assert refused["message"] == "hyperparameters" and "AdamW has no 'momentum'" in refused["reason"]
    session.stop()


def test_a_saved_run_named_in_the_dashboard_is_overlaid_or_refused_with_the_reason(session_factory, recording_comm,
                                                                                    tmp_path):
    saved = session_factory(n=128, max_epochs=1, run_name="before")
    saved.run()
    saved.export(tmp_path / "before.zip")
    session = session_factory(n=128, max_epochs=3, run_name="now")
    dashboard = session.dashboard()
    session.start(paused=True)
    dashboard.handle_message({"type": "overlay", "path": str(tmp_path / "before.zip")}, [])
    assert [o["name"] for o in session.parts.view.values()["overlays"]] == ["default/before"]
    dashboard.handle_message({"type": "overlay", "path": str(tmp_path / "missing.zip")}, [])
    refused = [e for e in session.events if e["kind"] == "rejected_message"][-1]
    assert refused["message"] == "overlay" and "ArchiveError: No session archive at" in refused["reason"]
    dashboard.handle_message({"type": "overlay", "path": ""}, [])
    assert session.parts.view.values()["overlays"] == []
    session.stop()
