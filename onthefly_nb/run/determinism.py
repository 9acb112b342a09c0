"""Reproducibility: RNG capture, a replay-one-step determinism check, and a deterministic mode.

:func:`capture_rng` / :func:`restore_rng` save and restore the global generators of Python,
numpy, torch and CUDA in a form that ``torch.load(weights_only=True)`` accepts. :func:`replay_step`
runs one training step twice on copies of the model and optimizer, from the same state, and
compares the results bit for bit. :func:`enable_deterministic` turns on PyTorch's deterministic
algorithms; :func:`seed_worker` and :func:`seeded_generator` make ``DataLoader`` workers reproducible.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .optimizers import same_kind

CUBLAS_WORKSPACE = ":4096:8"
_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_SHOWN = 5  # differing tensors named in a summary


def capture_rng() -> dict[str, Any]:
    """The states of Python's ``random``, numpy's global RNG, torch's CPU generator and each CUDA
    device's generator, as tensors and plain values only."""
    version, mt_state, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the generators saved by :func:`capture_rng` (CUDA devices that are missing here are skipped)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


@dataclass
class DeterminismReport:
    """The outcome of :func:`replay_step`. ``differing`` names each tensor whose bits differed
    between the two replays, as ``grad:<param>``, ``param:<param>`` (after the optimizer step) or
    ``buffer:<buffer>``: gradients first, then parameters, then buffers, each in model order.
    ``max_abs_diff`` gives the largest absolute difference of each (inf: shape, dtype or presence differ)."""

    passed: bool
    loss_bits_equal: bool
    losses: tuple[float, float]
    differing: list[str]
    max_abs_diff: dict[str, float]
    tensors_compared: int

    def summary(self) -> str:
        """One line in plain words."""
        if self.passed:
            return f"deterministic: step replayed twice, loss and {self.tensors_compared} tensors bit-identical"
        problems = []
        if not self.loss_bits_equal:
            problems.append(f"loss differs ({self.losses[0]!r} vs {self.losses[1]!r})")
        if self.differing:
            named = [f"{name} (max |Δ| {self.max_abs_diff[name]:.1e})" for name in self.differing[:_SHOWN]]
            if len(self.differing) > _SHOWN:
                named.append(f"and {len(self.differing) - _SHOWN} more")
            problems.append(f"{len(self.differing)} of {self.tensors_compared} tensors differ: {', '.join(named)}")
        return "NOT deterministic: " + "; ".join(problems)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, the summary included; non-finite numbers become None."""
        data = asdict(self)
        data["losses"] = [_finite(x) for x in self.losses]
        data["max_abs_diff"] = {name: _finite(x) for name, x in self.max_abs_diff.items()}
        data["summary"] = self.summary()
        return data


def replay_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Any, Any], torch.Tensor],
                inputs: Any, targets: Any) -> DeterminismReport:
    """Run one training step (zero_grad, forward, ``loss_fn(outputs, targets)`` averaged if per
    sample, backward, ``optimizer.step()``) twice, each time on fresh copies of ``model`` and
    ``optimizer`` and from the current global RNG state, and compare loss, gradients, parameters and
    buffers bit for bit. The copies run in train mode (a model in train mode keeps the modes of its
    submodules). ``model``, ``optimizer`` and the global RNG
    are left exactly as they were; forward hooks and other attributes are deep-copied with the model.
    Needs an optimizer whose ``step()`` takes no closure and whose constructor accepts its ``defaults``.
    """
    rng = capture_rng()
    try:
        loss_a, tensors_a = _replay(model, optimizer, loss_fn, inputs, targets, rng)
        loss_b, tensors_b = _replay(model, optimizer, loss_fn, inputs, targets, rng)
    finally:
        restore_rng(rng)
    diffs = {name: d for name, a in tensors_a.items() if (d := _difference(a, tensors_b[name])) is not None}
    loss_equal = _difference(loss_a, loss_b) is None
    return DeterminismReport(passed=loss_equal and not diffs, loss_bits_equal=loss_equal,
                             losses=(loss_a.item(), loss_b.item()), differing=list(diffs), max_abs_diff=diffs,
                             tensors_compared=len(tensors_a))


def _replay(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Any, Any], torch.Tensor],
            inputs: Any, targets: Any, rng: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """One step on copies: the loss, then every gradient, parameter (after the step) and buffer by name."""
    memo: dict[int, Any] = {}
    replica = copy.deepcopy(model, memo)
    groups = copy.deepcopy(optimizer.param_groups, memo)  # the memo maps each parameter to its copy in the replica
    replica_optimizer = same_kind(optimizer, groups)
    replica_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    if not replica.training:  # a model left in eval mode steps in train mode; submodules frozen in eval stay so
        replica.train()
    restore_rng(rng)
    with torch.enable_grad():
        replica_optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(replica(inputs), targets)
        loss = loss.mean() if loss.ndim > 0 else loss
        loss.backward()
    params = dict(replica.named_parameters())
    tensors: dict[str, torch.Tensor | None] = {
        f"grad:{name}": None if p.grad is None else p.grad.detach().clone()
        for name, p in params.items() if p.requires_grad
    }
    replica_optimizer.step()
    tensors.update({f"param:{name}": p.detach() for name, p in params.items()})
    tensors.update({f"buffer:{name}": b.detach() for name, b in replica.named_buffers()})
    return loss.detach(), tensors


def _difference(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    """None when ``a`` and ``b`` are bit-identical (the same NaN included), else the largest absolute
    difference between the elements whose bits differ; inf when shape, dtype or presence differ."""
    if a is None or b is None:
        return None if a is b else math.inf
    if a.shape != b.shape or a.dtype != b.dtype:
        return math.inf
    flat_a, flat_b = _real_flat(a), _real_flat(b)
    mask = _bits(flat_a) != _bits(flat_b)
    if not bool(mask.any()):
        return None
    gap = (flat_a[mask].double() - flat_b[mask].double()).abs()
    return torch.nan_to_num(gap, nan=math.inf).max().item()


def _real_flat(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return (torch.view_as_real(t) if t.is_complex() else t).reshape(-1).contiguous()


def _bits(flat: torch.Tensor) -> torch.Tensor:
    return flat.view(_INT_OF_SIZE[flat.element_size()])


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG, torch and (through ``torch.manual_seed``) every CUDA device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def deterministic_settings() -> dict[str, Any]:
    """The global settings that decide whether kernels are deterministic, for display and restore."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def enable_deterministic(seed: int | None, warn_only: bool = False) -> dict[str, Any]:
    """Seed everything (unless ``seed`` is None) and switch PyTorch to deterministic algorithms;
    returns the previous settings for :func:`disable_deterministic`. With ``warn_only`` an op with
    no deterministic version warns instead of raising. ``CUBLAS_WORKSPACE_CONFIG`` (set when unset)
    only takes effect if cuBLAS has not been used yet in this process."""
    previous = deterministic_settings()
    if seed is not None:
        seed_all(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return previous


def disable_deterministic(previous: dict[str, Any]) -> None:
    """Restore the settings returned by :func:`enable_deterministic` (the RNG is not rewound)."""
    torch.use_deterministic_algorithms(previous["deterministic_algorithms"], warn_only=previous["warn_only"])
    torch.backends.cudnn.deterministic = previous["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = previous["cudnn_benchmark"]
    if previous["cublas_workspace_config"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = previous["cublas_workspace_config"]


def seed_worker(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: seed ``random`` and numpy in each worker from the seed torch
    gave that worker (which follows the loader's ``generator``)."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, for a ``DataLoader``'s ``generator=``."""
    return torch.Generator().manual_seed(seed)
