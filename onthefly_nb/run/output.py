"""What the process prints while a run is live: its stdout and stderr lines (warnings among
them: Python prints them to stderr), the latest ones kept for the dashboard's output panel.

Capture copies, it never swallows: ``sys.stdout`` and ``sys.stderr`` are wrapped by a stream that
hands each write to the original first (a notebook cell's output still appears there). They are
put back when the run ends, unless something wrapped them again since; then the wrapper stays,
passing writes on.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

LINES_KEPT = 200
LINE_CHARS = 500  # a longer line is cut (a progress bar redrawn with \r is one line)


class OutputLog:
    """The latest lines, each ``{time, stream, text}``, from any thread."""

    def __init__(self) -> None:
        self._lines: deque[dict[str, Any]] = deque(maxlen=LINES_KEPT)
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()
        self.version = 0
        self.on_line: Callable[[], None] = lambda: None  # a line was kept (the dashboard has news)

    def write(self, stream: str, text: str) -> None:
        """Take a chunk of ``stream``; complete lines are kept, the rest waits for its newline."""
        before = self.version
        with self._lock:
            pending = self._partial.get(stream, "") + text
            *complete, rest = pending.split("\n")
            for line in complete:
                line = line.rsplit("\r", 1)[-1]  # what a terminal would show of a redrawn line
                if line.strip():
                    self._lines.append({"time": time.time(), "stream": stream, "text": line[:LINE_CHARS]})
                    self.version += 1
            self._partial[stream] = rest[-LINE_CHARS:]
        if self.version != before:
            self.on_line()

    def lines(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lines)


class _Tee:
    """A text stream that passes every write on to ``inner`` and copies it to the log."""

    def __init__(self, inner: TextIO, log: OutputLog, name: str) -> None:
        self.inner, self._log, self._name = inner, log, name
        self.active = True

    def write(self, text: str) -> int:
        written = self.inner.write(text)
        if self.active and isinstance(text, str):
            self._log.write(self._name, text)
        return written

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno, a kernel's own methods...
        return getattr(self.inner, name)


class OutputCapture:
    """Copies stdout and stderr into ``log`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, log: OutputLog) -> None:
        self.log = log
        self._tees: dict[str, _Tee] = {}

    def start(self) -> None:
        if self._tees:
            return
        for name in ("stdout", "stderr"):
            tee = _Tee(getattr(sys, name), self.log, name)
            setattr(sys, name, tee)
            self._tees[name] = tee

    def stop(self) -> None:
        for name, tee in self._tees.items():
            tee.active = False
            if getattr(sys, name) is tee:
                setattr(sys, name, tee.inner)
        self._tees = {}
