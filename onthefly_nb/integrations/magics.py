"""``%load_ext onthefly`` registers ``%onthefly``, which steers the current session."""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd

from ..persist.opened import open_saved
from ..session import Session
from ..steering.plans import PLAN_FIELDS

USAGE = """%onthefly [command]

Steers the most recently created onthefly session.

  %onthefly                    show the session's dashboard
  %onthefly status             print the status, step and epoch
  %onthefly pause              pause at the next step boundary
  %onthefly resume             resume a paused run
  %onthefly step N             run N steps, then pause
  %onthefly stop               stop at the next step boundary
  %onthefly validate           evaluate on the validation loader now
  %onthefly test               evaluate on the test loader now
  %onthefly health             run the health checks now (a DataFrame of findings)
  %onthefly plans              the proposed plans and what became of them
  %onthefly approve ID [k=v]   approve a plan, optionally editing its parameters
  %onthefly reject ID          reject a plan
  %onthefly slice "EXPR"       per-sample DataFrame, e.g. %onthefly slice "loss > q95"
  %onthefly slice selection    the samples selected on the dashboard's sample map
  %onthefly export PATH [EXPR] write the slice to PATH (.csv, .parquet or .json)
  %onthefly determinism        replay the last step twice and compare it bit for bit
  %onthefly save [PATH]        save the whole session (.zip); Session.load(PATH, ...) continues it
  %onthefly report [PATH]      write a self-contained HTML report (default run.html)
  %onthefly load PATH          open a saved session read-only (its history, events, metrics)
  %onthefly overlay PATH|off   draw a saved session's median loss on this dashboard's loss chart
"""


def onthefly_magic(line: str) -> Any:
    words = shlex.split(line)
    command, args = (words[0], words[1:]) if words else ("dashboard", [])
    if command == "load":
        if len(args) != 1:
            raise ValueError("usage: %onthefly load PATH   (a .zip or folder session.export wrote)")
        return open_saved(args[0])
    session = Session.current()
    if session is None:
        raise RuntimeError("no onthefly session yet: start one with onthefly.Trainer(...).fit(...)")
    if command == "overlay":
        if len(args) != 1:
            raise ValueError("usage: %onthefly overlay PATH   (or: %onthefly overlay off)")
        name = session.overlay(None if args[0] == "off" else args[0])
        print(f"overlaid {name}" if name else "overlays removed")
        return None
    if command == "dashboard":
        return session.dashboard()
    if command == "slice":
        return session.slice(session.selection if args == ["selection"] else " ".join(args) or None)
    if command == "health":
        return session.health()
    if command == "plans":
        return pd.DataFrame(session.plans, columns=list(PLAN_FIELDS))
    if command == "approve":
        if not args:
            raise ValueError("usage: %onthefly approve ID [name=value ...]")
        print(session.approve(args[0], wait=True, **_parameters(args[1:])))
        return None
    if command == "reject":
        if len(args) != 1:
            raise ValueError("usage: %onthefly reject ID")
        session.reject(args[0])
        print(f"rejected {args[0]}")
        return None
    if command == "export":
        if not args:
            raise ValueError('usage: %onthefly export PATH ["EXPR"]')
        print(f"wrote {session.export_slice(args[0], ' '.join(args[1:]) or None)}")
        return None
    if command == "determinism":
        print(session.check_determinism().summary())
        return None
    if command in ("save", "report"):
        if len(args) > 1:
            raise ValueError(f"usage: %onthefly {command} [PATH]")
        target = args[0] if args else (session.default_export_path() if command == "save" else "run.html")
        print(f"wrote {session.export(target) if command == 'save' else session.report(target)}")
        return None
    if command == "step":
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise ValueError("usage: %onthefly step N   (N a whole number >= 1)")
        session.step(int(args[0]))
    elif command in ("pause", "resume", "stop"):
        getattr(session, command)()
    elif command in ("validate", "test"):
        return getattr(session, command)()
    elif command != "status":
        raise ValueError(f"unknown %onthefly command {command!r}.\n\n{USAGE}")
    print(session)
    return None


def _parameters(words: list[str]) -> dict[str, float]:
    params = {}
    for word in words:
        name, sep, value = word.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"plan parameters are written name=number, e.g. factor=0.3; got {word!r}")
    return params


onthefly_magic.__doc__ = USAGE


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%onthefly`` in an IPython shell (``%load_ext onthefly``)."""
    ipython.register_magic_function(onthefly_magic, magic_kind="line", magic_name="onthefly")
