"""The message schema: every well-formed message decodes, everything else is refused with a reason,
and a live session survives any message thrown at the dashboard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onthefly_nb.dashboard.contract import COMMAND_NAMES, MAX_STEPS, MESSAGES
from onthefly_nb.dashboard.protocol import Message, decode
from onthefly_nb.errors import ProtocolError


def test_each_well_formed_message_decodes():
    assert decode({"type": "command", "name": "pause"}) == Message("command", "pause")
    assert decode({"type": "command", "name": "step", "n": 12}) == Message("command", "step", 12)
    assert decode({"type": "command", "name": "step"}).n == 1
    chosen = np.array([4, 1, 9], dtype="<u4")
    selection = decode({"type": "select", "n": 3}, [memoryview(chosen.tobytes())])
    assert selection.indices.tolist() == [4, 1, 9]
    assert decode({"type": "select", "n": 0}).indices.size == 0
    plan = decode({"type": "plan", "id": "plan-3", "decision": "approve", "params": {"budget": 60}})
    assert (plan.plan_id, plan.decision, plan.params) == ("plan-3", "approve", {"budget": 60.0})
    assert decode({"type": "plan", "id": "plan-3", "decision": "reject"}).params == {}
    edit = decode({"type": "hyperparameters", "values": {"lr": 0.01, "beta2": 0.99}, "group": 1})
    assert (edit.type, edit.n, edit.params) == ("hyperparameters", 1, {"lr": 0.01, "beta2": 0.99})
    assert decode({"type": "hyperparameters", "values": {"grad_clip_norm": 1}}).n is None
    assert decode({"type": "overlay", "path": "runs/a.zip"}) == Message("overlay", "runs/a.zip")


@pytest.mark.parametrize(("content", "buffers", "reason"), [
    ("pause", [], "a message is a JSON object"),
    ({"type": "shell", "cmd": "rm -rf /"}, [], "unknown message type 'shell'"),
    ({"type": "command", "name": "rm -rf"}, [], "unknown command 'rm -rf'"),
    ({"type": "command", "name": "step", "n": -2}, [], r"n must be a whole number in \[1, 10000000\]"),
    ({"type": "command", "name": "step", "n": MAX_STEPS + 1}, [], "n must be a whole number"),
    ({"type": "command", "name": "step", "n": True}, [], "n must be a whole number"),
    ({"type": "command", "name": "pause", "n": 3}, [], "only a step command carries n"),
    ({"type": "command", "name": "pause", "path": "/etc/passwd"}, [], "has no field 'path'"),
    ({"type": "command", "name": "pause"}, [b"x"], "carries no binary buffer"),
    ({"type": "select", "n": 2}, [b"\x00" * 4], "holds 4 bytes, not 8"),
    ({"type": "select", "n": 2}, [], "carries one buffer"),
    ({"type": "select", "n": -1}, [], "n must be a whole number"),
    ({"type": "plan", "id": "", "decision": "approve"}, [], "id must be a string of 1 to 200"),
    ({"type": "plan", "id": "p", "decision": "maybe"}, [], "'approve' or 'reject'"),
    ({"type": "plan", "id": "p", "decision": "approve", "params": {"budget": "all"}}, [], "must be a number"),
    ({"type": "plan", "id": "p", "decision": "approve", "params": [1]}, [], "params is an object"),
    ({"type": "plan", "id": "p", "decision": "reject", "params": {"x": 1}}, [], "a reject decision carries no"),
    ({"type": "overlay", "path": 3}, [], "path must be a string"),
    ({"type": "overlay", "path": "x" * 5000}, [], "path must be a string of 0 to 4096"),
    ({"type": "hyperparameters", "values": {"eval": 1}}, [], "sets some of lr, weight_decay.*got eval"),
    ({"type": "hyperparameters", "values": {}}, [], "got none"),
    ({"type": "hyperparameters", "values": {"lr": "high"}}, [], "must be a number"),
    ({"type": "hyperparameters", "values": {"lr": 0.1}, "group": -1}, [], "group must be a whole number"),
])
def test_ill_formed_messages_are_refused_with_a_reason(content, buffers, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(content, buffers)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
messages = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from(sorted(MESSAGES))},
                          optional={"name": st.sampled_from(sorted(COMMAND_NAMES)) | st.text(max_size=10),
                                    "n": json_values, "id": json_values, "decision": json_values,
                                    "params": json_values, "values": json_values, "group": json_values,
                                    "path": json_values,
                                    "extra": json_values}),
)
buffer_lists = st.lists(st.binary(max_size=64), max_size=2)


@given(messages, buffer_lists)
@settings(max_examples=400, deadline=None)
def test_decode_returns_a_message_or_refuses_with_a_protocol_error(content, buffers):
    try:
        message = decode(content, buffers)
    except ProtocolError:
        return
    assert message.type in MESSAGES
    if message.type == "select":
        assert message.indices.dtype == np.dtype("<u4") and len(message.indices) == message.n


@given(messages, buffer_lists)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_paused_session_survives_any_message(live_dashboard, content, buffers):
    session, dashboard = live_dashboard
    if isinstance(content, dict) and content.get("name") in ("stop", "export", "resume"):
        content = {**content, "name": "pause"}  # the fixture keeps one paused session for every example
    dashboard.handle_message(content, buffers)
    assert session.status in ("paused", "running") and session.parts.lifecycle.error is None


@pytest.fixture(scope="module")
def live_dashboard():
    import ipywidgets.widgets.widget as widget_module
    from conftest import make_session

    class Comm:
        comm_id, kernel = "fuzz", "present"

        def __init__(self, *args, **kwargs) -> None:
            pass

        def open(self, *args, **kwargs) -> None:
            pass

        def send(self, *args, **kwargs) -> None:
            pass

        def on_msg(self, *args, **kwargs) -> None:
            pass

        def close(self, *args, **kwargs) -> None:
            pass

    original = widget_module.comm.create_comm
    widget_module.comm.create_comm = lambda **kwargs: Comm()
    session = make_session(n=256, max_epochs=10_000)
    try:
        dashboard = session.dashboard()
        session.start(paused=True)
        yield session, dashboard
    finally:
        session.stop(timeout=10)
        widget_module.comm.create_comm = original
