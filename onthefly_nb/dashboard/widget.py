"""The anywidget dashboard: one sink of the session's publisher. Python writes every trait (as
``contract.TRAITS`` declares them); the browser only sends messages (commands, selections, plan
decisions), which the session queues for the trainer.

The messages come on a command comm the front end opens itself (target ``COMMAND_TARGET``, with
the widget's ``channel`` key): JupyterLab and Notebook 7 send a comm the browser opened to a kernel
subshell, which ipykernel handles on its own thread, so a Pause is handled while a cell runs. A
comm the kernel opened (the widget's own) is always handled on the main shell, after the cell.
Hosts without that (VS Code, marimo) use the widget's own messages, the same handler."""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.display import DisplayHandle, display

from .contract import PROTOCOL_VERSION, TRAITS, WIDGET_TRAITS
from .publisher import Publisher, Values

STATIC = Path(__file__).parent.parent / "static"
TERMINAL_STATES = ("finished", "stopped", "failed")
RENDERER_MIME = "application/vnd.onthefly.dashboard+json"  # VS Code's renderer (widgets/)
COMMAND_TARGET = "onthefly.commands"


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
               {name: traitlets.Any(None, allow_none=True).tag(sync=True) for name in {**TRAITS, **WIDGET_TRAITS}})
_OPEN: weakref.WeakValueDictionary[str, Dashboard] = weakref.WeakValueDictionary()  # channel key -> dashboard


def _command_comm_opened(comm: Any, message: dict[str, Any]) -> None:
    """A front end opened its command comm (on a subshell thread, in JupyterLab and Notebook 7)."""
    key = (message.get("content", {}).get("data") or {}).get("key")
    dashboard = _OPEN.get(key) if isinstance(key, str) else None
    if dashboard is None:
        comm.close()
        return
    comm.on_msg(lambda msg: dashboard.handle_message(msg["content"]["data"], msg.get("buffers") or [], comm.send))


def _listen_for_command_comms() -> None:
    """Register the command comm's target with the kernel (once; nothing to do outside a kernel)."""
    import comm

    manager = comm.get_comm_manager()
    if COMMAND_TARGET not in getattr(manager, "targets", {COMMAND_TARGET: None}):
        manager.register_target(COMMAND_TARGET, _command_comm_opened)


class Dashboard(_Traits):  # type: ignore[misc, valid-type]
    """Live view of a session, fed by its publisher; ``receive(content, buffers)`` handles the
    browser's messages (returning why one was refused), ``summary()`` is the static HTML beside the
    view, ``final()`` the HTML every display becomes when the run ends (the frozen final dashboard:
    a saved notebook shows it without a kernel), ``renderer()`` the payload of VS Code's renderer."""

    _esm = _bundle("widget.js")
    _css = _bundle("widget.css")

    def __init__(self, publisher: Publisher, receive: Callable[[Any, list[Any]], str | None],
                 summary: Callable[[], str], final: Callable[[], str],
                 renderer: Callable[[], dict[str, Any] | None]) -> None:
        key = secrets.token_hex(16)
        super().__init__(channel={"target": COMMAND_TARGET, "key": key})  # in the comm's opening state
        self._publisher = publisher
        self._receive = receive
        self._summary = summary
        self._final = final
        self._renderer = renderer
        self._displays: list[DisplayHandle] = []
        self._ended = False
        self.on_msg(lambda _widget, content, buffers: self.handle_message(content, buffers))
        _OPEN[key] = self
        _listen_for_command_comms()
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
        """Once the run has ended: every display of this dashboard becomes the frozen final dashboard
        (no widget view, so a notebook reopened without its kernel shows it, never an error)."""
        if not self._displays:
            return
        final = {"text/html": self._final(), "text/plain": "onthefly dashboard: the final state of a run that ended"}
        for handle in self._displays:
            handle.update(final, raw=True)

    def close(self) -> None:
        """Close the comm; the publisher stops feeding this view."""
        self._publisher.detach(self)
        super().close()

    def handle_message(self, content: Any, buffers: list[Any], reply: Callable[[dict[str, Any]], Any] | None = None
                       ) -> None:
        """A message from the browser (on the shell or a subshell thread); a refused one is answered
        with an error, on the comm it came by."""
        reason = self._receive(content, buffers)
        if reason is not None:
            (reply or self.send)({"type": "error", "protocol": PROTOCOL_VERSION, "reason": reason})
