"""The WebSocket bridge on a real session: token, origin, paths, sizes and malformed frames are
refused; a good client gets the traits and steers the run."""

from __future__ import annotations

import http.client
import json
import struct
import time

import pytest
from conftest import make_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from onthefly_nb.dashboard.bridge import MAX_MESSAGE_BYTES, encode_frame


@pytest.fixture(scope="module")
def served():
    session = make_session(n=256, max_epochs=10_000)
    session.start(paused=True)
    bridge = session.bridge(port=0)
    try:
        yield session, bridge
    finally:
        session.stop(timeout=10)
        bridge.stop()


def read_frame(socket) -> tuple[dict, bytes]:
    frame = socket.recv(timeout=10)
    (size,) = struct.unpack_from("<I", frame)
    return json.loads(frame[4:4 + size]), frame[4 + size:]


def message(content: dict, buffers: list[bytes] = ()) -> bytes:
    return encode_frame({"type": "message", "content": content, "buffers": [{} for _ in buffers]}, list(buffers))


def get(bridge, path: str) -> tuple[int, bytes]:
    client = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    client.request("GET", path)
    reply = client.getresponse()
    return reply.status, reply.read()


def test_a_client_with_the_token_gets_the_traits_and_steers_the_run(served):
    session, bridge = served
    assert bridge.url.startswith("http://127.0.0.1:") and bridge.token in bridge.url
    with connect(bridge.websocket_url) as socket:
        hello, _ = read_frame(socket)
        assert hello == {"type": "hello", "protocol": 1, "session": session.run_name, "buffers": []}
        state, payload = read_frame(socket)
        assert state["type"] == "state" and state["state"]["run"]["state"] == "paused"
        assert {b["path"][0] for b in state["buffers"]} >= {"curve"} and len(payload) == sum(
            b["length"] for b in state["buffers"])
        step = session.global_step
        socket.send(message({"type": "command", "name": "step", "n": 3}))
        deadline = time.monotonic() + 10
        while session.global_step < step + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.global_step == step + 3
        while True:  # the publisher sends the new step
            update, _ = read_frame(socket)
            if update["type"] == "state" and update["state"].get("run", {}).get("step") == step + 3:
                break
        socket.send(message({"type": "command", "name": "rm -rf"}))
        while (reply := read_frame(socket)[0])["type"] != "error":
            pass
        assert "unknown command 'rm -rf'" in reply["reason"]
    assert session.status == "paused"


@pytest.mark.parametrize(("query", "origin", "status"), [
    ("", None, 401), ("?token=wrong", None, 401), ("?token={token}", "http://evil.example", 403),
    ("?token={token}", "http://127.0.0.1:1", 403),
])
def test_no_token_a_wrong_token_and_a_foreign_origin_are_refused(served, query, origin, status):
    _, bridge = served
    url = f"ws://127.0.0.1:{bridge.port}/ws" + query.format(token=bridge.token)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=origin, open_timeout=10)
    assert refused.value.response.status_code == status


def test_the_page_needs_the_token_and_nothing_else_is_served(served):
    _, bridge = served
    assert get(bridge, "/")[0] == 401
    status, page = get(bridge, f"/?token={bridge.token}")
    assert status == 200 and b"/static/standalone.js" in page and b"onthefly-app" in page
    assert get(bridge, "/static/widget.css")[0] == 200
    for path in ("/static/../session.py", "/static/%2e%2e/session.py", "/../onthefly_nb/session.py",
                 "/static/widget.js", "/etc/passwd", "/static//widget.css"):
        assert get(bridge, path)[0] == 404, path


def test_oversized_and_malformed_frames_are_refused_and_the_session_goes_on(served):
    session, bridge = served
    with connect(bridge.websocket_url, max_size=None) as socket:
        read_frame(socket), read_frame(socket)
        for bad in (b"", b"\x01", b"\xff\xff\xff\xff{}", struct.pack("<I", 2) + b"[]",
                    encode_frame({"type": "message", "content": {"type": "select", "n": 2},
                                  "buffers": [{"offset": 0, "length": 99}]})):
            socket.send(bad)
            while (reply := read_frame(socket)[0])["type"] != "error":
                pass
        socket.send("a text frame")
        while (reply := read_frame(socket)[0])["type"] != "error":
            pass
        assert "a frame is binary" in reply["reason"]
    with connect(bridge.websocket_url, max_size=None) as socket:
        read_frame(socket), read_frame(socket)
        socket.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    assert session.status == "paused" and session.parts.lifecycle.error is None


def test_a_frame_nested_past_the_recursion_limit_gets_an_error_reply_and_an_event(served):
    session, bridge = served
    body = b"[" * 5000 + b"]" * 5000
    with connect(bridge.websocket_url) as socket:
        read_frame(socket), read_frame(socket)
        socket.send(struct.pack("<I", len(body)) + body)
        while (reply := read_frame(socket)[0])["type"] != "error":
            pass
        assert "nests too deeply" in reply["reason"]
        socket.send(message({"type": "command", "name": "nope"}))  # the connection still answers
        while (reply := read_frame(socket)[0])["type"] != "error":
            pass
    assert any("nests too deeply" in e.get("reason", "") for e in session.events if e["kind"] == "rejected_message")


def request(bridge, path: str, host: str) -> int:
    client = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    client.putrequest("GET", path, skip_host=True)
    client.putheader("Host", host)
    client.endheaders()
    return client.getresponse().status


def test_a_foreign_host_header_is_refused_everywhere(served):
    """After a DNS rebinding a page's own name reaches 127.0.0.1: the Host header tells."""
    _, bridge = served
    page = f"/?token={bridge.token}"
    assert request(bridge, page, f"127.0.0.1:{bridge.port}") == 200
    assert request(bridge, page, f"localhost:{bridge.port}") == 200
    for path in (page, "/static/widget.css", f"/ws?token={bridge.token}"):
        assert request(bridge, path, f"evil.example:{bridge.port}") == 403, path
    with pytest.raises(InvalidStatus) as refused:  # a second Host header, as a confused proxy might add
        connect(bridge.websocket_url, additional_headers={"Host": "rebound.example"}, open_timeout=10)
    assert refused.value.response.status_code == 403


def test_vscode_webviews_connect_only_to_a_bridge_for_vscode():
    session = make_session(n=64, max_epochs=1)
    plain = session.bridge(port=0)
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(plain.websocket_url, origin="vscode-webview://abc", open_timeout=10)
        assert refused.value.response.status_code == 403
        plain.webviews = True  # what a kernel VS Code started gets
        with connect(plain.websocket_url, origin="vscode-webview://abc", open_timeout=10) as socket:
            assert read_frame(socket)[0]["type"] == "hello"
    finally:
        plain.stop()


def test_connections_past_the_cap_are_refused(served, monkeypatch):
    _, bridge = served
    monkeypatch.setattr("onthefly_nb.dashboard.bridge.MAX_CLIENTS", 2)
    with connect(bridge.websocket_url) as first, connect(bridge.websocket_url) as second:
        read_frame(first), read_frame(second)
        with pytest.raises(InvalidStatus) as refused:
            connect(bridge.websocket_url, open_timeout=10)
        assert refused.value.response.status_code == 503
    deadline = time.monotonic() + 10
    while bridge.clients and time.monotonic() < deadline:
        time.sleep(0.05)
    with connect(bridge.websocket_url) as again:  # room again once they left
        assert read_frame(again)[0]["type"] == "hello"


def test_a_flood_of_bad_messages_logs_a_bounded_number_of_events(served):
    session, bridge = served
    before = sum(e["kind"] == "rejected_message" for e in session.events)
    with connect(bridge.websocket_url) as socket:
        read_frame(socket), read_frame(socket)
        for _ in range(500):
            socket.send(message({"type": "command", "name": "nope"}))
        answered = 0
        while answered < 500:
            answered += read_frame(socket)[0]["type"] == "error"
    logged = [e for e in session.events if e["kind"] == "rejected_message"][before:]
    assert 1 <= len(logged) <= 12, len(logged)  # ten, then one a second, counting the rest


@given(st.binary(max_size=200))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_frames_never_hurt_the_session(served, frame):
    session, bridge = served
    with connect(bridge.websocket_url) as socket:
        socket.send(frame)
    assert session.status == "paused" and session.parts.lifecycle.error is None


def test_a_taken_port_moves_to_the_next_free_one_and_says_so(served, capsys):
    _, bridge = served
    other = make_session(n=64, max_epochs=1)
    second = other.bridge(port=bridge.port)
    try:
        assert second.port != bridge.port
        assert f"port {bridge.port} is taken; the dashboard is on port {second.port}" in capsys.readouterr().out
    finally:
        second.stop()


def test_the_widget_and_the_bridge_get_the_same_updates_from_one_publisher(monkeypatch):
    """One publisher feeds both transports: a script's page gets what a notebook gets, at the same rate."""
    import ipywidgets.widgets.widget as widget_module

    sent: list[tuple[float, set[str]]] = []

    class Comm:
        comm_id, kernel = "recording", "present"

        def __init__(self, *args, **kwargs) -> None:
            pass

        def open(self, *args, **kwargs) -> None:
            pass

        def on_msg(self, *args, **kwargs) -> None:
            pass

        def close(self, *args, **kwargs) -> None:
            pass

        def send(self, data=None, metadata=None, buffers=None) -> None:
            if data and data.get("method") == "update":
                sent.append((time.monotonic(), set(data["state"])))

    monkeypatch.setattr(widget_module.comm, "create_comm", lambda **kwargs: Comm())
    session = make_session(n=4096, batch_size=16, max_epochs=10_000)
    session.dashboard()
    bridge = session.bridge(port=0)
    received: list[tuple[float, set[str]]] = []
    try:
        with connect(bridge.websocket_url) as socket:
            read_frame(socket), read_frame(socket)  # hello, then every trait
            sent.clear()
            session.start()
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                header, _ = read_frame(socket)
                received.append((time.monotonic(), set(header["state"])))
        assert len(bridge_names := [names for _, names in received]) >= 15, "fewer than 5 updates a second"
        span = received[-1][0] - received[0][0]
        assert len(received) / span <= 12, f"{len(received)} updates in {span:.1f} s: over 10 a second"
        widget_names = [names for _, names in sent]
        assert abs(len(widget_names) - len(bridge_names)) <= 2
        assert set().union(*bridge_names) == set().union(*widget_names) >= {"run", "curve", "events"}
    finally:
        session.stop(timeout=10)
        bridge.stop()
