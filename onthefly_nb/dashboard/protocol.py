"""The dashboard's messages (browser to Python), written down once and checked on arrival.

Every transport (the anywidget comm, later the WebSocket bridge) hands each message to
:func:`decode`, which returns a typed :class:`Message` or raises :class:`ProtocolError` naming
what does not fit; nothing reaches the session before it has been checked. ``docs/protocol.md``
describes the same messages in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OnTheFlyError

PROTOCOL_VERSION = 1
COMMANDS = frozenset({"pause", "resume", "stop", "step", "validate", "test", "health", "compare",
                      "determinism", "export"})
MAX_STEPS = 10_000_000  # a step command asks for at most this many steps
MAX_SELECTION = 50_000_000  # indices in one selection (200 MB of uint32)
MAX_PLAN_PARAMS = 16
MAX_TEXT = 200  # characters of a plan id or parameter name

FIELDS = {"command": {"type", "name", "n"}, "select": {"type", "n"}, "plan": {"type", "id", "decision", "params"}}


class ProtocolError(OnTheFlyError, ValueError):
    """A message that does not fit the protocol; it is refused and changes nothing."""


@dataclass(frozen=True)
class Message:
    """A checked message: a command (``name``, ``n`` steps), a selection (``indices``) or a plan
    decision (``plan_id``, ``decision``, ``params``)."""

    type: str
    name: str | None = None
    n: int | None = None
    indices: np.ndarray | None = field(default=None, compare=False)
    plan_id: str | None = None
    decision: str | None = None
    params: dict[str, float] = field(default_factory=dict)


def decode(content: Any, buffers: list[Any] | tuple[Any, ...] = ()) -> Message:
    """Check one message from the browser; raise :class:`ProtocolError` saying what is wrong."""
    if not isinstance(content, dict):
        raise ProtocolError(f"a message is a JSON object, got {type(content).__name__}")
    kind = content.get("type")
    if kind not in FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}; the types are {', '.join(FIELDS)}")
    unknown = set(content) - FIELDS[kind]
    if unknown:
        raise ProtocolError(f"a {kind} message has no field {sorted(map(str, unknown))[0]!r}")
    if kind == "command":
        return _command(content, buffers)
    if kind == "select":
        return _selection(content, buffers)
    return _plan(content, buffers)


def _no_buffers(kind: str, buffers: Any) -> None:
    if buffers:
        raise ProtocolError(f"a {kind} message carries no binary buffer")


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{what} must be a whole number in [{low}, {high}], got {value!r}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise ProtocolError(f"{what} must be a string of 1 to {MAX_TEXT} characters, got {value!r:.60}")
    return value


def _command(content: dict[str, Any], buffers: Any) -> Message:
    _no_buffers("command", buffers)
    name = content.get("name")
    if name not in COMMANDS:
        raise ProtocolError(f"unknown command {name!r}; the commands are {', '.join(sorted(COMMANDS))}")
    if name == "step":
        return Message("command", name, _whole(content.get("n", 1), "a step command's n", 1, MAX_STEPS))
    if "n" in content:
        raise ProtocolError(f"only a step command carries n, not {name!r}")
    return Message("command", name)


def _selection(content: dict[str, Any], buffers: Any) -> Message:
    n = _whole(content.get("n"), "a select message's n", 0, MAX_SELECTION)
    if n == 0:
        _no_buffers("empty select", buffers)
        return Message("select", n=0, indices=np.empty(0, np.uint32))
    if len(buffers) != 1:
        raise ProtocolError(f"a select message of n={n} carries one buffer of n uint32 indices, got {len(buffers)}")
    data = bytes(buffers[0])
    if len(data) != 4 * n:
        raise ProtocolError(f"a select message says n={n} but its buffer holds {len(data)} bytes, not {4 * n}")
    return Message("select", n=n, indices=np.frombuffer(data, dtype="<u4"))


def _plan(content: dict[str, Any], buffers: Any) -> Message:
    _no_buffers("plan", buffers)
    plan_id = _text(content.get("id"), "a plan message's id")
    decision = content.get("decision")
    if decision not in ("approve", "reject"):
        raise ProtocolError(f"a plan decision is 'approve' or 'reject', got {decision!r:.60}")
    params = content.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or len(params) > MAX_PLAN_PARAMS:
        raise ProtocolError(f"a plan message's params is an object of at most {MAX_PLAN_PARAMS} numbers")
    checked = {}
    for name, value in params.items():
        _text(name, "a plan parameter's name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"plan parameter {name!r} must be a number, got {value!r:.60}")
        checked[name] = float(value)
    if decision == "reject" and checked:
        raise ProtocolError("a reject decision carries no params")
    return Message("plan", plan_id=plan_id, decision=decision, params=checked)
