"""A localhost WebSocket bridge: the dashboard for hosts without Jupyter's widget manager (the
standalone page of a plain script, VS Code's notebook renderer), with the same traits and
messages as the widget (docs/protocol.md).

The server runs an asyncio loop on its own thread, bound to 127.0.0.1 only (default port 47621,
else the next free one, said so). ``/ws?token=...`` needs the session's random token (compared in
constant time) and an Origin of this server, a VS Code webview or none; messages are capped in
size and checked by :mod:`protocol` before they reach the session. ``/`` (with the token) serves
the standalone page, ``/static/`` two bundled files by name, and anything else is a 404. A
publisher thread sends the changed traits to every client at most ten times a second.

Every frame, both ways, is binary: ``[uint32 LE header length][UTF-8 JSON header][buffers]``,
the header listing the buffers' ``path`` (server to client), ``offset`` and ``length``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import secrets
import struct
import threading
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ipywidgets.widgets.widget import _remove_buffers
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .commands import receive
from .protocol import PROTOCOL_VERSION
from .widget import PUBLISH_INTERVAL, TraitState

if TYPE_CHECKING:
    from ..session import Session

HOST = "127.0.0.1"
DEFAULT_PORT = 47621
PORT_ATTEMPTS = 20
MAX_MESSAGE_BYTES = 16 * 2**20
STATIC = Path(__file__).parent.parent / "static"
ASSETS = {"/static/widget.css": ("widget.css", "text/css"),
          "/static/standalone.js": ("standalone.js", "text/javascript")}
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>onthefly · {title}</title>
<link rel="stylesheet" href="/static/widget.css"></head>
<body style="margin:0;padding:12px"><div id="onthefly-app"></div>
<script type="module" src="/static/standalone.js"></script></body></html>"""


def encode_frame(header: dict[str, Any], buffers: list[bytes | memoryview] = ()) -> bytes:  # type: ignore[assignment]
    """One frame: the header (with each buffer's offset and length added) and the buffers."""
    offset, listed = 0, []
    for entry, buffer in zip(header.get("buffers", [{}] * len(buffers)), buffers):
        listed.append({**entry, "offset": offset, "length": len(buffer)})
        offset += len(buffer)
    text = json.dumps(_finite({**header, "buffers": listed}), separators=(",", ":"), allow_nan=False).encode()
    return b"".join([struct.pack("<I", len(text)), text, *map(bytes, buffers)])


def decode_frame(frame: bytes) -> tuple[Any, list[memoryview]]:
    """A client's frame as ``(message content, buffers)``; ValueError if it is not one."""
    if not isinstance(frame, bytes) or len(frame) < 4:
        raise ValueError("a frame is binary: a 4-byte header length, the JSON header, the buffers")
    (size,) = struct.unpack_from("<I", frame)
    if size > len(frame) - 4:
        raise ValueError(f"the frame's header length {size} runs past its end ({len(frame)} bytes)")
    header = json.loads(frame[4:4 + size])
    if not isinstance(header, dict) or header.get("type") != "message" or not isinstance(header.get("buffers", []),
                                                                                            list):
        raise ValueError("a client frame's header is {type: 'message', content, buffers}")
    payload, buffers = memoryview(frame)[4 + size:], []
    for entry in header.get("buffers", []):
        if not isinstance(entry, dict):
            raise ValueError(f"a buffer entry is {{offset, length}}, got {entry!r:.80}")
        start, length = entry.get("offset"), entry.get("length")
        if not (isinstance(start, int) and isinstance(length, int) and 0 <= start <= start + length <= len(payload)):
            raise ValueError(f"a buffer entry {entry!r:.80} does not fit the frame's payload")
        buffers.append(payload[start:start + length])
    return header.get("content"), buffers


class Bridge:
    """The session's WebSocket server; ``start()`` it, open ``url``, ``stop()`` it (the session does)."""

    def __init__(self, session: Session, port: int = DEFAULT_PORT) -> None:
        self.session = session
        self.requested_port = port
        self.port: int | None = None
        self.token = secrets.token_urlsafe(24)
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
    def websocket_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws?token={self.token}"

    def start(self) -> Bridge:
        """Serve on the requested port, or the next free one; returns once listening."""
        threading.Thread(target=self._run, name=f"onthefly-bridge-{self.session.run_name}", daemon=True).start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        threading.Thread(target=self._publish, name=f"onthefly-bridge-publish-{self.session.run_name}",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None and not self._stopped.is_set():
            self._stopped.set()
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
                                     max_size=MAX_MESSAGE_BYTES, compression=None)
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
        if parts.path == "/ws":
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                return _response(HTTPStatus.UNAUTHORIZED, "a valid token is needed: open the URL the session printed")
            if not self._origin_allowed(request.headers.get("Origin")):
                return _response(HTTPStatus.FORBIDDEN, "this origin may not connect to the dashboard")
            return None  # go on with the WebSocket handshake
        if parts.path == "/":
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                return _response(HTTPStatus.UNAUTHORIZED, "a valid token is needed: open the URL the session printed")
            return _response(HTTPStatus.OK, PAGE.format(title=self.session.run_name), "text/html; charset=utf-8")
        if parts.path in ASSETS:
            name, kind = ASSETS[parts.path]
            file = STATIC / name
            if file.is_file():
                return _response(HTTPStatus.OK, file.read_bytes(), kind)
        return _response(HTTPStatus.NOT_FOUND, "not found")

    def _origin_allowed(self, origin: str | None) -> bool:
        if origin is None:  # not a browser page: a script or VS Code's extension host
            return True
        return origin in (f"http://{HOST}:{self.port}", f"http://localhost:{self.port}") or \
            origin.startswith("vscode-webview://")

    # ---- WebSocket: state out, messages in -----------------------------------------------------
    async def _connection(self, connection: ServerConnection) -> None:
        self._clients.add(connection)
        try:
            await connection.send(encode_frame({"type": "hello", "protocol": PROTOCOL_VERSION,
                                                "session": self.session.run_name}))
            await connection.send(self._frame(TraitState(self.session).update(self.session.snapshot())))
            async for frame in connection:
                reason = self._receive(frame)
                if reason is not None:
                    await connection.send(encode_frame({"type": "error", "protocol": PROTOCOL_VERSION,
                                                        "reason": reason}))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(connection)

    def _receive(self, frame: Any) -> str | None:
        try:
            content, buffers = decode_frame(frame)
        except ValueError as exc:
            self.session._log.append("rejected_message", self.session.global_step, message="frame",
                                     reason=f"ValueError: {exc}"[:500])
            return f"ValueError: {exc}"
        return receive(self.session, content, buffers)

    def _frame(self, values: dict[str, Any]) -> bytes:
        state, paths, buffers = _remove_buffers(values)
        return encode_frame({"type": "state", "state": state, "buffers": [{"path": p} for p in paths]}, buffers)

    def _publish(self) -> None:
        """Send the changed traits to every client, at most ten times a second, while serving."""
        traits = TraitState(self.session)
        sent: dict[str, Any] = {}
        while not self._stopped.wait(PUBLISH_INTERVAL):
            if not self._clients:
                continue
            values = traits.update(self.session.snapshot())
            changed = {k: v for k, v in values.items() if sent.get(k, ...) != v}
            if not changed:
                continue
            sent.update(changed)
            frame = self._frame(changed)
            for client in list(self._clients):
                asyncio.run_coroutine_threadsafe(_send(client, frame), self._loop)


async def _send(client: ServerConnection, frame: bytes) -> None:
    try:
        await client.send(frame)
    except ConnectionClosed:
        pass


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, which JSON (and JSON.parse) can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _response(status: HTTPStatus, body: str | bytes, kind: str = "text/plain; charset=utf-8") -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
                       ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, data)
