"""Scalars over steps: what the run measures at each flush (learning rate per parameter group,
gradient norm, throughput, host and device memory, GPU utilisation) and what the user logs with
``session.log(name=value)``. The dashboard's metrics panel charts them; a saved session keeps them.

Gauges are read at a flush, never per step: the gradient norm is one fused norm over the
parameters' ``.grad`` (one host read, where the flush copies to the host anyway), device memory
comes from the caching allocator's counters (no sync), GPU utilisation from NVML when the
optional ``nvidia-ml-py`` is installed (at most once a second).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..dashboard.schema import Arr, Map, Num
from ..errors import ConfigurationError
from ..persist.saving import saved

MEASURED = "measured"  # the group of the gauges; user scalars are "logged"
LOGGED = "logged"
GPU_SECONDS = 1.0
SAVED = Map(Arr(Arr(Num())))  # name -> [[step, value], ...]


class Scalars:
    """Named series of (step, value), appended from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._logged: set[str] = set()
        self.version = 0

    def add(self, step: int, values: Mapping[str, float | None], logged: bool = False) -> None:
        """Append each finite value at ``step``; None and non-finite values are left out."""
        with self._lock:
            for name, value in values.items():
                if value is None or not math.isfinite(value):
                    continue
                steps, kept = self._series.setdefault(name, ([], []))
                steps.append(float(step))
                kept.append(float(value))
                if logged:
                    self._logged.add(name)
            self.version += 1

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        """``session.log(name=value)``: real numbers (Python, NumPy or one-element tensors) only."""
        numbers = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ConfigurationError(f"session.log({name}=...) takes a real number, got {type(value).__name__}; "
                                         "pass float(value) or tensor.item()")
            numbers[name] = float(value)
        self.add(step, numbers, logged=True)

    def frame(self) -> pd.DataFrame:
        """Every point as rows of (name, step, value), in order of each series."""
        with self._lock:
            parts = [pd.DataFrame({"name": name, "step": np.asarray(steps, dtype=np.int64), "value": values})
                     for name, (steps, values) in self._series.items()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["name", "step", "value"])

    def payload(self, max_points: int) -> list[dict[str, Any]]:
        """Each series, at most ``max_points`` of it spread evenly (the last point kept), for the trait."""
        with self._lock:
            series = [(name, np.asarray(steps), np.asarray(values), name in self._logged)
                      for name, (steps, values) in self._series.items()]
        out = []
        for name, steps, values, logged in series:
            if len(steps) > max_points:
                picks = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(np.int64))
                steps, values = steps[picks], values[picks]
            out.append({"name": name, "group": LOGGED if logged else MEASURED,
                        "points": np.column_stack([steps, values]).tolist()})
        return out

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            series = {name: [[s, v] for s, v in zip(*pair)] for name, pair in self._series.items()}
            return {"documents": {"scalars": {"series": series, "logged": sorted(self._logged)}}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        document = state["documents"].get("scalars") or {"series": {}, "logged": []}
        series = saved(SAVED, document["series"], "scalars")
        with self._lock:
            self._series = {name: ([p[0] for p in points], [p[1] for p in points]) for name, points in series.items()}
            self._logged = set(document["logged"]) & set(self._series)
            self.version += 1


class Gauges:
    """Reads the run's gauges at a flush (the trainer thread)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device
        self._nvml: Any = _nvml_handle(device)
        self._next_gpu = 0.0

    def read(self, optimizer: torch.optim.Optimizer | None, samples_per_sec: float | None) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        if optimizer is not None:
            groups = optimizer.param_groups
            for i, group in enumerate(groups):
                values["lr" if len(groups) == 1 else f"lr/group {i}"] = _number(group.get("lr"))
        values["grad norm"] = self.gradient_norm()
        values["samples/s"] = samples_per_sec
        values["host memory (MB)"] = _host_megabytes()
        if self.device.type == "cuda":
            values["device memory (MB)"] = torch.cuda.memory_allocated(self.device) / 2**20
            values["gpu utilisation (%)"] = self._gpu_percent()
        return values

    def gradient_norm(self) -> float | None:
        """The total norm of the last step's gradients (None when the trainer cleared them)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return None
        with torch.no_grad():
            return float(torch.nn.utils.get_total_norm(grads))

    def _gpu_percent(self) -> float | None:
        now = time.monotonic()
        if self._nvml is None or now < self._next_gpu:
            return None
        self._next_gpu = now + GPU_SECONDS
        import pynvml

        return float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu)


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, int | float) else None


def _host_megabytes() -> float | None:
    """This process's resident memory (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _nvml_handle(device: torch.device) -> Any:
    """An NVML handle for the device, when ``nvidia-ml-py`` is installed and NVML starts."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device() if device.index is None else device.index)
    except Exception:  # no pynvml, or no NVML on this machine: the gauge is left out
        return None
