"""What a dashboard message does: checked by the protocol, then handed to the session as a request
(the trainer acts on it at a step boundary). Every transport uses :func:`receive`."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .protocol import Message, decode

if TYPE_CHECKING:
    from ..session import Session


def receive(session: Session, content: Any, buffers: list[Any] | tuple[Any, ...]) -> str | None:
    """Check and apply one message from a dashboard; returns why it was refused, or None. A refused
    message changes nothing and is logged as a ``rejected_message`` event."""
    try:
        message = decode(content, buffers)
        if message.type == "command":
            _command(session, message)
        elif message.type == "select":
            session.select(message.indices)
        elif message.decision == "approve":
            session.approve(message.plan_id, **message.params)  # type: ignore[arg-type]
        else:
            session.reject(message.plan_id)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - a bad message must never reach the trainer
        kind = content.get("type") if isinstance(content, dict) else type(content).__name__
        reason = f"{type(exc).__name__}: {exc}"[:500]
        session._log.append("rejected_message", session.global_step, message=str(kind)[:60], reason=reason)
        return reason
    return None


def _command(session: Session, message: Message) -> None:
    name = message.name
    if name == "pause":
        session.pause(wait=False)
    elif name == "resume":
        session.resume()
    elif name == "stop":
        session.stop(wait=False)
    elif name == "step":
        session.step(message.n, wait=False)  # type: ignore[arg-type]
    elif name == "validate" and session.val_loader is not None:
        session.validate(wait=False)
    elif name == "test" and session.test_loader is not None:
        session.test(wait=False)
    elif name == "health":
        session.health(wait=False)
    elif name == "compare":
        session.compare(wait=False)
    elif name == "determinism":
        _log_failure(session, name, session.check_determinism(wait=False))  # type: ignore[arg-type]
    elif name == "export":
        session.export(session.default_export_path(), wait=False)
    else:
        raise ValueError(f"command {name!r} is not available in this session")


def _log_failure(session: Session, command: str, future: Future) -> None:
    """Log a command that failed on the trainer thread, so the dashboard shows why."""
    def done(finished: Future) -> None:
        error = finished.exception()
        if error is not None:
            session._log.append("command_failed", session.global_step, command=command,
                                reason=f"{type(error).__name__}: {error}")

    future.add_done_callback(done)
