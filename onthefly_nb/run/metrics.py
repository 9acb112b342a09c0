"""Validation and test results of a run, oldest first, safe to read from any thread."""

from __future__ import annotations

import copy
import math
import threading
from typing import Any

from ..dashboard.schema import Arr, Int, Num, Obj, Opt, Unknown
from ..persist.saving import saved

KINDS = ("validation", "test")
RESULT = Obj({"step": Int(0), "epoch": Int(0), "loss": Opt(Num()), "accuracy": Opt(Num())}, extra=Unknown())
SAVED = Obj({kind: Arr(RESULT) for kind in KINDS})


def finite(value: Any) -> float | None:
    """A finite number as float, else None."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}

    def record(self, kind: str, step: int, epoch: int, result: dict[str, Any]) -> dict[str, Any]:
        """Keep one result (its loss and accuracy made finite or None); returns it as kept."""
        kept = {"step": step, "epoch": epoch, **result}
        for key in ("loss", "accuracy"):
            kept[key] = finite(kept.get(key))
        with self._lock:
            self._results[kind].append(kept)
        return kept

    def all(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {k: list(v) for k, v in self._results.items()}

    def latest(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            results = self._results[kind]
            return results[-1] if results else None

    def summary(self, kind: str) -> dict[str, Any] | None:
        """The latest result's step, loss and accuracy (the dashboard's ``val`` and ``test``)."""
        last = self.latest(kind)
        return None if last is None else {"step": last["step"], "loss": last["loss"], "accuracy": last["accuracy"]}

    def curve(self, kind: str = "validation") -> list[list[float]]:
        """``[step, loss]`` of every result with a loss."""
        with self._lock:
            return [[r["step"], r["loss"]] for r in self._results[kind] if r["loss"] is not None]

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"documents": {"metrics": copy.deepcopy(self._results)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        results = saved(SAVED, state["documents"]["metrics"], "metrics")
        with self._lock:
            self._results = results
