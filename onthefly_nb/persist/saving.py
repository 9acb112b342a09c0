"""Saving a session to one archive and continuing it later, bit for bit.

Each component saves and restores itself: ``state_dict()`` returns the sections it owns
(``tensors``, ``states``, ``arrays``, ``documents``, ``config``, ``events``; each key in one
component only) and ``load_state_dict(state)`` reads them back. :func:`snapshot` composes them on
the trainer thread at a step boundary (copies only); :func:`export` writes the archive on another
thread; :func:`restore` puts an archive into a freshly built, not yet started session.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from ..dashboard.schema import Schema
from ..errors import ArchiveError, ConfigurationError, OnTheFlyError, ProtocolError
from .archive import ArchiveContents, read_archive, write_archive

SECTIONS = ("tensors", "states", "arrays", "documents", "config")
State = dict[str, Any]


class Component(Protocol):
    def state_dict(self) -> State: ...
    def load_state_dict(self, state: State) -> None: ...


def snapshot(components: Mapping[str, Component], settings: dict[str, Any]) -> State:
    """Every component's state in one, each key from one component only (on the trainer thread)."""
    state: State = {section: {} for section in SECTIONS}
    state["config"].update(settings, saved=time.time())
    state["events"] = []
    for name, component in components.items():
        for section, values in component.state_dict().items():
            if section == "events":
                state["events"] = values
                continue
            clash = set(values) & set(state[section])
            if clash:
                raise RuntimeError(f"{name} saves {section} {sorted(clash)} that another component saves too")
            state[section].update(values)
    return state


def contents(state: State) -> ArchiveContents:
    """The archive's contents: the configuration is the ``config`` document."""
    return ArchiveContents(state["tensors"], state["states"], state["arrays"],
                           {**state["documents"], "config": state["config"]}, state["events"])


def read(path: str | Path) -> State:
    """A saved session's state, verified before anything in it is used; ArchiveError if it is not one."""
    found = read_archive(path)
    config = found.documents.get("config")
    if not isinstance(config, dict):
        raise ArchiveError(f"{path} holds no session configuration; it is not a saved session")
    return {"tensors": found.tensors, "states": found.states, "arrays": found.arrays,
            "documents": {k: v for k, v in found.documents.items() if k != "config"}, "config": config,
            "events": found.events}


def objects(state: State, given: dict[str, Any], factory: Callable[[dict[str, Any]], dict[str, Any]] | None
            ) -> dict[str, Any]:
    """The user's objects to continue ``state`` with: those ``given``, updated by ``factory(config)``."""
    config = state["config"]
    found = {**given, **(factory(dict(config)) if factory is not None else {})}
    missing = [k for k in ("model", "optimizer", "loss_fn", "train_loader") if found.get(k) is None]
    if missing:
        raise ConfigurationError(f"Session.load needs {', '.join(missing)}: build them as for the saved run "
                                 f"(a {config['model']} over {config['samples']} samples), or pass factory=...")
    return found


def saved(schema: Schema, value: Any, what: str) -> Any:
    """``value`` (read from an archive) when it fits ``schema``; else ArchiveError naming what does not."""
    try:
        schema.check(value, what)
    except ProtocolError as exc:
        raise ArchiveError(f"the archive's {exc}: it was altered or damaged; save the session again") from None
    return value


def restore(components: Mapping[str, Component], state: State) -> None:
    """Hand every component the saved state (each reads and checks its own keys). What does not fit
    (a tampered archive whose checksums were made to match) is an ArchiveError naming the component."""
    for name, component in components.items():
        try:
            component.load_state_dict(state)
        except OnTheFlyError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise ArchiveError(f"the archive's {name} state is not what onthefly-nb saves ({type(exc).__name__}: "
                               f"{exc}); it was altered or damaged: save the session again") from exc


def check_target(path: str | Path) -> Path:
    """Where an export may go: a .zip file, or a new (or empty) folder in an existing one."""
    target = Path(path).expanduser()
    if not target.parent.is_dir():
        raise ConfigurationError(f"cannot export to {target}: the folder {target.parent} does not exist")
    if target.suffix != ".zip" and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigurationError(f"cannot export to {target}: it exists; name a new folder or a .zip file")
    return target


def export(target: Path, copied: Future, log: Callable[..., Any], step: Callable[[], int], name: str) -> Future:
    """Write the state ``copied`` resolves to (``(state, pause_seconds)``, taken at a boundary) to
    ``target`` on another thread; a Future of the path. The outcome is logged either way."""
    written: Future = Future()

    def write() -> None:
        try:
            state, pause = copied.result()
            started = time.perf_counter()
            write_archive(target, contents(state))
            log("exported", state["config"]["position"]["step"], path=str(target), pause_ms=round(pause * 1e3, 2),
                write_seconds=round(time.perf_counter() - started, 3))
            written.set_result(str(target))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the export
            log("export_failed", step(), path=str(target), reason=f"{type(exc).__name__}: {exc}")
            written.set_exception(exc)

    writer = threading.Thread(target=write, name=f"onthefly-export-{name}", daemon=True)
    WRITERS.add(writer)
    writer.start()
    return written


WRITERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # the export threads, running or done


def finish_exports(timeout: float) -> None:
    """Wait (up to ``timeout`` seconds in all) for the exports asked for to be written or to fail,
    and their threads to end (the process may exit then: no thread is left inside torch)."""
    deadline = time.monotonic() + timeout
    for writer in list(WRITERS):
        writer.join(max(0.0, deadline - time.monotonic()))
