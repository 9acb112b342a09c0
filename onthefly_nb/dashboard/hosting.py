"""Where a session's dashboard is shown: the anywidget view (one per session, displayable many
times) and the localhost WebSocket bridge, both fed by the same publisher, both answering
messages through ``commands.receive``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..outputs.frozen import frozen_html
from .bridge import Bridge
from .commands import Steerable, receive
from .publisher import Publisher


def in_vscode() -> bool:
    """Whether VS Code launched this kernel (its renderer then shows the dashboard too)."""
    return any(key.startswith("VSCODE_") for key in os.environ)


class Hosting:
    """The widget and the bridge of one session; ``summary()`` is its static HTML."""

    def __init__(self, publisher: Publisher, session: Steerable, name: str, summary: Callable[[], str]) -> None:
        self.publisher = publisher
        self.session = session
        self.name = name
        self.summary = summary
        self.server: Bridge | None = None
        self._widget: Any = None

    def receive(self, content: Any, buffers: list[Any]) -> str | None:
        return receive(self.session, content, buffers)

    def widget(self) -> Any:
        """The session's dashboard widget (a new one once the last was closed)."""
        if self._widget is None or self._widget.comm is None:
            from .widget import Dashboard  # anywidget and ipywidgets load only when a widget is asked for

            final = lambda: frozen_html(self.publisher.current(), self.summary())  # noqa: E731
            self._widget = Dashboard(self.publisher, self.receive, self.summary, final, self.renderer_payload)
        return self._widget

    def bridge(self, port: int | None = None) -> Bridge:
        """The WebSocket bridge, started once on ``port`` (47621 by default, the next free one if taken)."""
        if self.server is None:
            self.server = Bridge(self.publisher, self.receive, self._refuse, self.name,
                                 port, webviews=in_vscode()).start()
        return self.server

    def _refuse(self, what: str, reason: str) -> None:
        self.session.event_log.refused(self.session.global_step, what, reason)

    def renderer_payload(self) -> dict[str, Any] | None:
        """What VS Code's renderer needs to connect (the bridge starts in a kernel VS Code launched)."""
        bridge = self.bridge() if self.server is None and in_vscode() else self.server
        return None if bridge is None else {"url": f"http://127.0.0.1:{bridge.port}/", "token": bridge.token,
                                            "session": self.name}

    def run_ended(self) -> None:
        """The run has ended: every dashboard gets the final state now (a widget's displays turn
        into the frozen final dashboard), and the bridge stops a moment later."""
        if self.publisher.watched:
            self.publisher.publish_now()
        if self.server is not None:
            self.server.stop_soon()
