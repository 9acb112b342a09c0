"""The anywidget dashboard: one sink of the session's publisher. Python writes every trait (as
``contract.TRAITS`` declares them); the browser only sends messages (commands, selections, plan
decisions), which the session queues for the trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.display import DisplayHandle, display

from .contract import PROTOCOL_VERSION, TRAITS
from .publisher import Publisher, Values

STATIC = Path(__file__).parent.parent / "static"
TERMINAL_STATES = ("finished", "stopped", "failed")
RENDERER_MIME = "application/vnd.onthefly.dashboard+json"  # VS Code's renderer (widgets/)


def _bundle(name: str) -> Path:
    path = STATIC / name
    if not path.exists():
        raise FileNotFoundError(
            f"the dashboard's front-end bundle {path} is missing. In a source checkout run "
            f"`npm install && npm run build` (or `make build`); installed wheels ship it."
        )
    return path


# One synced trait per contract trait; the contract, not traitlets, says what each holds.
_Traits = type("_Traits", (anywidget.AnyWidget,),
               {name: traitlets.Any(None, allow_none=True).tag(sync=True) for name in TRAITS})


class Dashboard(_Traits):  # type: ignore[misc, valid-type]
    """Live view of a session, fed by its publisher; ``receive(content, buffers)`` handles the
    browser's messages (returning why one was refused), ``summary()`` is the static HTML a saved
    notebook shows without a kernel, ``renderer()`` the payload of VS Code's renderer (or None)."""

    _esm = _bundle("widget.js")
    _css = _bundle("widget.css")

    def __init__(self, publisher: Publisher, receive: Callable[[Any, list[Any]], str | None],
                 summary: Callable[[], str], renderer: Callable[[], dict[str, Any] | None]) -> None:
        super().__init__()
        self._publisher = publisher
        self._receive = receive
        self._summary = summary
        self._renderer = renderer
        self._displays: list[DisplayHandle] = []
        self._ended = False
        self.on_msg(lambda _widget, content, buffers: self.handle_message(content, buffers))
        self.publish(publisher.attach(self))

    def publish(self, changed: Values) -> None:
        """Set the changed traits in one batched update (on the publisher's thread)."""
        with self.hold_sync():
            for key, value in changed.items():
                setattr(self, key, value)
        run = changed.get("run")
        if not self._ended and run is not None and run["state"] in TERMINAL_STATES:
            self._ended = True
            self._finalize_displays()

    def alive(self) -> None:
        self.send({"type": "alive", "protocol": PROTOCOL_VERSION})

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        """The widget view plus a static HTML summary, which a notebook saved without its
        widget state (or opened without a kernel) still shows, and the payload of VS Code's
        onthefly renderer when the session serves its bridge."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/html"] = self._summary()
            renderer = self._renderer()
            if renderer is not None:
                bundle[0][RENDERER_MIME] = renderer
        return bundle

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Display with a display id, so the static summary can be replaced by the final one."""
        bundle = self._repr_mimebundle_()
        if bundle is not None:
            self._displays.append(display(bundle[0], metadata=bundle[1], raw=True, display_id=True))

    def _finalize_displays(self) -> None:
        """Once the run has ended: every display of this dashboard gets the final summary."""
        bundle = self._repr_mimebundle_()
        if bundle is not None:
            for handle in self._displays:
                handle.update(bundle[0], metadata=bundle[1], raw=True)

    def close(self) -> None:
        """Close the comm; the publisher stops feeding this view."""
        self._publisher.detach(self)
        super().close()

    def handle_message(self, content: Any, buffers: list[Any]) -> None:
        """A message from the browser (on the shell thread); a refused one is answered with an error."""
        reason = self._receive(content, buffers)
        if reason is not None:
            self.send({"type": "error", "protocol": PROTOCOL_VERSION, "reason": reason})
