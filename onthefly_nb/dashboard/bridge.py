"""A localhost WebSocket bridge: the dashboard for hosts without Jupyter's widget manager (the
standalone page of a plain script, VS Code's notebook renderer), with the same traits and
messages as the widget (docs/protocol.md).

The server runs an asyncio loop on its own thread, bound to 127.0.0.1 only (default port 47621,
else the next free one, said so). ``/ws?token=...`` needs the session's random token (compared in
constant time), a Host header naming this server (no DNS rebinding) and an Origin of this server,
none, or (in a kernel VS Code started) a VS Code webview; clients, frames and queues are capped in
size and messages are checked by :mod:`protocol` before they reach the session. ``/`` (with the token) serves
the standalone page, ``/static/`` two bundled files by name, and anything else is a 404. The
bridge is one sink of the session's publisher (the same traits, at the same rate, as the widget)
while any client is connected. Frames are :mod:`frames`'s. It imports nothing of training and
nothing of ipywidgets.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .contract import PROTOCOL_VERSION
from .frames import decode_frame, encode_frame, state_frame
from .publisher import PUBLISH_INTERVAL, Publisher, Values

HOST = "127.0.0.1"
DEFAULT_PORT = 47621
PORT_VARIABLE = "ONTHEFLY_DASHBOARD_PORT"  # the reference's environment variable for the port
PORT_ATTEMPTS = 20
MAX_MESSAGE_BYTES = 16 * 2**20
MAX_CLIENTS = 16  # WebSocket clients at once; more are refused (each holds a copy of the state in flight)
MAX_QUEUED_FRAMES = 4  # frames read ahead per client (each up to MAX_MESSAGE_BYTES)
STATIC = Path(__file__).parent.parent / "static"
ASSETS = {"/static/widget.css": ("widget.css", "text/css"),
          "/static/standalone.js": ("standalone.js", "text/javascript")}
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>onthefly · {title}</title>
<link rel="stylesheet" href="/static/widget.css"></head>
<body style="margin:0;padding:12px"><div id="onthefly-app"></div>
<script type="module" src="/static/standalone.js"></script></body></html>"""

Receive = Callable[[Any, list[Any]], "str | None"]


def default_port() -> int:
    """``ONTHEFLY_DASHBOARD_PORT`` when it is a port number, else 47621."""
    value = os.environ.get(PORT_VARIABLE, "")
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else DEFAULT_PORT


class Bridge:
    """The session's WebSocket server; ``start()`` it, open ``url``, ``stop()`` it (the session does)."""

    def __init__(self, publisher: Publisher, receive: Receive, refuse: Callable[[str, str], None], name: str,
                 port: int | None = None, webviews: bool = False) -> None:
        self._publisher = publisher
        self._receive_message = receive  # a decoded frame's message -> why it was refused, or None
        self._refuse = refuse  # (what, reason): log a frame that did not decode
        self.name = name
        self.requested_port = default_port() if port is None else port
        self.port: int | None = None
        self.token = secrets.token_urlsafe(24)
        self.webviews = webviews  # whether VS Code webviews (vscode-webview:// origins) may connect
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def clients(self) -> int:
        """WebSocket clients connected now."""
        return len(self._clients)

    @property
    def websocket_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws?token={self.token}"

    def start(self) -> Bridge:
        """Serve on the requested port, or the next free one; returns once listening."""
        threading.Thread(target=self._run, name=f"onthefly-bridge-{self.name}", daemon=True).start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._server is not None and not self._stopped.is_set():
            self._stopped.set()
            self._publisher.detach(self)
            self._loop.call_soon_threadsafe(self._server.close)

    def stop_soon(self, delay: float = 2 * PUBLISH_INTERVAL + 0.5) -> None:
        """Stop after the publisher has sent the final state (the session's end)."""
        threading.Timer(delay, self.stop).start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._bind())
        except BaseException as exc:  # noqa: BLE001 - raised by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_until_complete(self._server.wait_closed())

    async def _bind(self) -> Server:
        ports = [0] if self.requested_port == 0 else range(self.requested_port, self.requested_port + PORT_ATTEMPTS)
        for port in ports:
            try:
                server = await serve(self._connection, HOST, port, process_request=self._http,
                                     max_size=MAX_MESSAGE_BYTES, max_queue=MAX_QUEUED_FRAMES, compression=None)
            except OSError:
                continue
            self.port = server.sockets[0].getsockname()[1]
            if port not in (0, self.requested_port):
                print(f"onthefly: port {self.requested_port} is taken; the dashboard is on port {self.port}")
            return server
        raise OSError(f"no free port in {self.requested_port}-{self.requested_port + PORT_ATTEMPTS - 1}; "
                      f"pass port=0 for any free one")

    # ---- HTTP: the page, two assets, the WebSocket handshake's checks ----------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        token = parse_qs(parts.query).get("token", [""])[0]
        if request.headers.get_all("Host") not in ([host] for host in self._hosts()):  # DNS rebinding
            return _response(HTTPStatus.FORBIDDEN, f"this server answers to {HOST}:{self.port} only")
        if parts.path == "/ws":
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                return _response(HTTPStatus.UNAUTHORIZED, "a valid token is needed: open the URL the session printed")
            if not self._origin_allowed(request.headers.get("Origin")):
                return _response(HTTPStatus.FORBIDDEN, "this origin may not connect to the dashboard")
            if len(self._clients) >= MAX_CLIENTS:
                return _response(HTTPStatus.SERVICE_UNAVAILABLE, f"{MAX_CLIENTS} dashboards are connected already")
            return None  # go on with the WebSocket handshake
        if parts.path == "/":
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                return _response(HTTPStatus.UNAUTHORIZED, "a valid token is needed: open the URL the session printed")
            return _response(HTTPStatus.OK, PAGE.format(title=self.name), "text/html; charset=utf-8")
        if parts.path in ASSETS:
            name, kind = ASSETS[parts.path]
            file = STATIC / name
            if file.is_file():
                return _response(HTTPStatus.OK, file.read_bytes(), kind)
        return _response(HTTPStatus.NOT_FOUND, "not found")

    def _hosts(self) -> tuple[str, ...]:
        return f"{HOST}:{self.port}", f"localhost:{self.port}"

    def _origin_allowed(self, origin: str | None) -> bool:
        if origin is None:  # not a browser page: a script or VS Code's extension host
            return True
        return origin in tuple(f"http://{host}" for host in self._hosts()) or \
            (self.webviews and origin.startswith("vscode-webview://"))

    # ---- WebSocket: state out, messages in -----------------------------------------------------
    async def _connection(self, connection: ServerConnection) -> None:
        first = not self._clients
        self._clients.add(connection)
        try:
            current = self._publisher.attach(self) if first else self._publisher.current()
            await connection.send(encode_frame({"type": "hello", "protocol": PROTOCOL_VERSION, "session": self.name}))
            await connection.send(state_frame(current))
            async for frame in connection:
                reason = self._receive(frame)
                if reason is not None:
                    await connection.send(encode_frame({"type": "error", "protocol": PROTOCOL_VERSION,
                                                        "reason": reason}))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(connection)
            if not self._clients:
                self._publisher.detach(self)

    def _receive(self, frame: Any) -> str | None:
        try:
            content, buffers = decode_frame(frame)
        except ValueError as exc:
            reason = f"ValueError: {exc}"[:500]
            self._refuse("frame", reason)
            return reason
        return self._receive_message(content, buffers)

    def publish(self, changed: Values) -> None:
        """Send the changed traits to every client (on the publisher's thread)."""
        self._broadcast(state_frame(changed))

    def alive(self) -> None:
        self._broadcast(encode_frame({"type": "alive", "protocol": PROTOCOL_VERSION}))

    def _broadcast(self, frame: bytes) -> None:
        for client in list(self._clients):
            asyncio.run_coroutine_threadsafe(_send(client, frame), self._loop)


async def _send(client: ServerConnection, frame: bytes) -> None:
    try:
        await client.send(frame)
    except ConnectionClosed:
        pass


def _response(status: HTTPStatus, body: str | bytes, kind: str = "text/plain; charset=utf-8") -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
                       ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, data)
