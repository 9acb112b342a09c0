"""Messages from the browser, checked on arrival against the contract (``contract.MESSAGES``).

Every transport (the anywidget comm, the WebSocket bridge) hands each message to :func:`decode`,
which returns a typed :class:`Message` or raises :class:`ProtocolError` naming what does not fit;
nothing reaches the session before it has been checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ProtocolError
from .contract import HYPER_KEYS, MESSAGES


@dataclass(frozen=True)
class Message:
    """A checked message: a command (``name``, ``n`` steps), a selection (``indices``), a plan
    decision (``plan_id``, ``decision``, ``params``), hyperparameters to set (``params``, ``n``
    the parameter group or None for every one) or a saved session to overlay (``name`` its path)."""

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
    if kind not in MESSAGES:
        raise ProtocolError(f"unknown message type {kind!r:.60}; the types are {', '.join(MESSAGES)}")
    MESSAGES[kind].check(content, kind)
    if kind == "select":
        return _selection(content["n"], buffers)
    if buffers:
        raise ProtocolError(f"a {kind} message carries no binary buffer")
    if kind == "command":
        name = content["name"]
        if name != "step" and "n" in content:
            raise ProtocolError(f"only a step command carries n, not {name!r}")
        return Message("command", name, content.get("n", 1) if name == "step" else None)
    if kind == "overlay":
        return Message("overlay", name=content["path"])
    if kind == "hyperparameters":
        values = content["values"]
        unknown = sorted(set(values) - set(HYPER_KEYS))
        if unknown or not values:
            raise ProtocolError(f"a hyperparameters message sets some of {', '.join(HYPER_KEYS)}, got "
                                f"{', '.join(unknown) or 'none'}")
        return Message("hyperparameters", n=content.get("group"), params={k: float(v) for k, v in values.items()})
    params = {k: float(v) for k, v in (content.get("params") or {}).items()}
    if content["decision"] == "reject" and params:
        raise ProtocolError("a reject decision carries no params")
    return Message("plan", plan_id=content["id"], decision=content["decision"], params=params)


def _selection(n: int, buffers: Any) -> Message:
    if n == 0:
        if buffers:
            raise ProtocolError("an empty select message carries no binary buffer")
        return Message("select", n=0, indices=np.empty(0, np.uint32))
    if len(buffers) != 1:
        raise ProtocolError(f"a select message of n={n} carries one buffer of n uint32 indices, got {len(buffers)}")
    data = bytes(buffers[0])
    if len(data) != 4 * n:
        raise ProtocolError(f"a select message says n={n} but its buffer holds {len(data)} bytes, not {4 * n}")
    return Message("select", n=n, indices=np.frombuffer(data, dtype="<u4"))
