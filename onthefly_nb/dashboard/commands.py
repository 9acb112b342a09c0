"""What a dashboard message does: checked by the protocol, then handed to the session as a request
(the trainer acts on it at a step boundary). Every transport calls :func:`receive`.

Commands are a registry: ``@command("name")`` adds one (its name is declared in
``contract.COMMAND_NAMES``, its button in ``js/panels/controls.ts``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from .protocol import Message, decode


class EventSink(Protocol):
    def append(self, kind: str, step: int, **data: Any) -> dict[str, Any]: ...
    def refused(self, step: int, message: str, reason: str) -> None: ...


class Steerable(Protocol):
    """What a dashboard message may ask of a session (``onthefly_nb.Session`` is one)."""

    event_log: EventSink
    global_step: int
    val_loader: Any
    test_loader: Any
    optimizer: Any

    def pause(self, wait: bool = ...) -> Any: ...
    def resume(self) -> Any: ...
    def stop(self, wait: bool = ...) -> Any: ...
    def step(self, n: int = ..., wait: bool = ...) -> Any: ...
    def validate(self, wait: bool = ...) -> Any: ...
    def test(self, wait: bool = ...) -> Any: ...
    def health(self, wait: bool = ...) -> Any: ...
    def compare(self, extra: Any = ..., wait: bool = ...) -> Any: ...
    def check_determinism(self, wait: bool = ...) -> Any: ...
    def export(self, path: Any, wait: bool = ...) -> Any: ...
    def default_export_path(self) -> Any: ...
    def select(self, indices: Any) -> Any: ...
    def approve(self, plan_id: str, wait: bool = ..., **params: float) -> Any: ...
    def reject(self, plan_id: str) -> None: ...
    def set_hyperparameters(self, *, group: int | None = ..., wait: bool = ..., **values: Any) -> Any: ...
    def overlay(self, other: Any, name: str | None = ...) -> Any: ...


Command = Callable[[Steerable, Message], Any]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register what the command ``name`` does."""
    def register(run: Command) -> Command:
        COMMANDS[name] = run
        return run

    return register


def receive(session: Steerable, content: Any, buffers: list[Any] | tuple[Any, ...]) -> str | None:
    """Check and apply one message from a dashboard; returns why it was refused, or None. A refused
    message changes nothing and is logged as a ``rejected_message`` event (``EventLog.refused``)."""
    try:
        message = decode(content, buffers)
        if message.type == "command":
            COMMANDS[message.name](session, message)  # type: ignore[index]
        elif message.type == "select":
            session.select(message.indices)
        elif message.type == "overlay":
            session.overlay(message.name or None)
        elif message.type == "hyperparameters":
            set_hyperparameters(session, message.params, message.n)
        elif message.decision == "approve":
            session.approve(message.plan_id, False, **message.params)  # type: ignore[arg-type]  # never waits
        else:
            session.reject(message.plan_id)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - a bad message must never reach the trainer
        kind = content.get("type") if isinstance(content, dict) else type(content).__name__
        reason = f"{type(exc).__name__}: {exc}"[:500]
        session.event_log.refused(session.global_step, str(kind)[:60], reason)
        return reason
    return None


def set_hyperparameters(session: Steerable, values: dict[str, float], group: int | None) -> None:
    """The dashboard's hyperparameter edit: beta1 and beta2 travel apart, the optimizer takes a pair
    (the one not edited keeps its value, read from the group the edit is for)."""
    values = dict(values)
    if "beta1" in values or "beta2" in values:
        current = session.optimizer.param_groups[group or 0].get("betas", (None, None))
        values["betas"] = (values.pop("beta1", current[0]), values.pop("beta2", current[1]))
    session.set_hyperparameters(group=group, wait=False, **values)


def _logging_failure(session: Steerable, name: str, future: Future) -> None:
    """Log a command that failed on the trainer thread, so the dashboard shows why."""
    def done(finished: Future) -> None:
        error = finished.exception()
        if error is not None:
            session.event_log.append("command_failed", session.global_step, command=name,
                                     reason=f"{type(error).__name__}: {error}")

    future.add_done_callback(done)


command("pause")(lambda s, _m: s.pause(wait=False))
command("resume")(lambda s, _m: s.resume())
command("stop")(lambda s, _m: s.stop(wait=False))
command("step")(lambda s, m: s.step(m.n, wait=False))
command("validate")(lambda s, _m: s.val_loader is not None and s.validate(wait=False))
command("test")(lambda s, _m: s.test_loader is not None and s.test(wait=False))
command("health")(lambda s, _m: s.health(wait=False))
command("compare")(lambda s, _m: s.compare(wait=False))
command("determinism")(lambda s, _m: _logging_failure(s, "determinism", s.check_determinism(wait=False)))
command("export")(lambda s, _m: s.export(s.default_export_path(), wait=False))
