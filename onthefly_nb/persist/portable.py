"""Saving a session to one archive and continuing it later, bit for bit.

:func:`take_snapshot` runs on the trainer thread at a step boundary and only copies what training
would change next (weights, optimizer and scheduler state, RNG, the loader's position, the
per-sample store); :meth:`Snapshot.contents` builds the archive from the copies on another thread.
:func:`restore` puts an archive's state into a freshly built, not yet started session.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigurationError
from ..experts.adapters import with_adapters
from ..experts.workshop import Expert, Merge
from ..steering.plans import APPROVED, EXPIRED, PROPOSED, ParamSpec, Plan
from .archive import ArchiveContents

if TYPE_CHECKING:
    from ..session import Session

EXPERT_FIELDS = ("name", "parent", "step", "slice", "budget", "lr", "general_share", "state", "losses", "kind",
                 "adapter_rank", "adapter_layers")
MERGE_FIELDS = ("name", "method", "experts", "step", "before", "after", "state", "baseline")


@dataclass
class Snapshot:
    """Copies of a session's state at one step boundary, ready to be written elsewhere."""

    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    states: dict[str, Any]
    store: np.ndarray
    history: np.ndarray
    selection: np.ndarray
    sample_weights: np.ndarray | None
    experts: list[tuple[dict[str, Any], np.ndarray, dict[str, torch.Tensor]]]  # fields, slice indices, weights
    merges: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]  # fields, weights
    documents: dict[str, Any]
    events: list[dict[str, Any]]

    def contents(self) -> ArchiveContents:
        """The archive's contents (runs off the trainer thread)."""
        tensors = {"model": self.model}
        arrays: dict[str, dict[str, np.ndarray]] = {
            "store": {"block": self.store}, "history": {"rows": self.history},
            "selection": {"indices": self.selection}}
        if self.sample_weights is not None:
            arrays["sampling"] = {"weights": self.sample_weights}
        for fields, indices, weights in self.experts:
            tensors[f"experts/{fields['name']}"] = weights
            arrays[f"experts/{fields['name']}"] = {"indices": indices}
        for fields, weights in self.merges:
            tensors[f"merges/{fields['name']}"] = weights
        documents = {**self.documents, "config": self.config, "experts": [e[0] for e in self.experts],
                     "merges": [m[0] for m in self.merges]}
        return ArchiveContents(tensors, self.states, arrays, documents, self.events)


def take_snapshot(session: Session) -> Snapshot:
    """Copy the session's state; call on the trainer thread at a step boundary (records flushed)."""
    s = session
    loop = s._loop
    position = loop.position()
    states = {"optimizer": copy.deepcopy(s.optimizer.state_dict()), "rng": loop.rng_now(),
              "epoch_draw": position.pop("epoch_draw")}
    if s.scheduler is not None:
        states["scheduler"] = copy.deepcopy(s.scheduler.state_dict())
    with s._lock:
        store, history = s.store._block.copy(), s._history.rows()
    weights = loop.sampler.weights
    workshop = s._workshop
    return Snapshot(
        config={"project": s.project, "run_name": s.run_name, "samples": s.store.size, "model": type(s.model).__name__,
                "max_epochs": s.schedule.max_epochs, "max_steps": s.schedule.max_steps,
                "scheduler_interval": s.schedule.scheduler_interval, "position": position,
                "classification": s.store.is_classification, "clip_norm": loop.clip_norm, "saved": time.time(),
                "do_test_after": s.schedule.do_test_after, "stop_on_nan": loop.recorder.stop_on_nonfinite,
                "health_every": s._checkup.every, "deterministic": s.deterministic},
        model=_cloned(s.model.state_dict()), states=states, store=store, history=history,
        selection=s.selection.copy(), sample_weights=None if weights is None else weights.numpy().copy(),
        experts=[({f: copy.deepcopy(getattr(e, f)) for f in EXPERT_FIELDS}, np.array(e.indices),
                  _cloned(e.model.state_dict())) for e in workshop.experts.values()],
        merges=[({f: copy.deepcopy(getattr(m, f)) for f in MERGE_FIELDS}, m.weights) for m in workshop.merges.values()],
        documents={"metrics": copy.deepcopy(s._metrics), "plans": s._plans.all(), "health": s.health_report},
        events=s._log.all(),
    )


def restore(session: Session, contents: ArchiveContents) -> None:
    """Put the archive's state into ``session`` (built from the user's objects, not started)."""
    s = session
    config = contents.documents["config"]
    if config["samples"] != s.store.size:
        raise ConfigurationError(f"the saved run trained on {config['samples']} samples but train_loader's dataset "
                                 f"has {s.store.size}; pass the same training data")
    _load(s.model, contents.tensors["model"], "model")
    try:
        s.optimizer.load_state_dict(contents.states["optimizer"])
    except (ValueError, KeyError) as exc:
        raise ConfigurationError(f"the optimizer does not match the saved one ({exc}); build it the same way "
                                 f"(same type and parameter groups) over the model") from exc
    if "scheduler" in contents.states:
        if s.scheduler is None:
            raise ConfigurationError("the saved run had a learning-rate scheduler; pass scheduler=... as built then")
        s.scheduler.load_state_dict(contents.states["scheduler"])
    s.store._block[:] = contents.arrays["store"]["block"]
    s.store.is_classification = config["classification"]
    s._history.extend(contents.arrays["history"]["rows"])
    s._selection = contents.arrays["selection"]["indices"]
    if "sampling" in contents.arrays:
        s._loop.sampler.reweight(contents.arrays["sampling"]["weights"])
    s._loop.clip_norm = config["clip_norm"]
    s._metrics = contents.documents["metrics"]
    s.health_report = contents.documents["health"]
    s._log.restore(contents.events)
    _restore_plans(s, contents.documents["plans"])
    _restore_experts(s, contents)
    s._loop.recorder.samples = int(s.store.seen.sum())
    position = dict(config["position"], epoch_draw=contents.states["epoch_draw"])
    s._loop.resume_at(position, contents.states["rng"])


def _restore_plans(session: Session, saved: list[dict[str, Any]]) -> None:
    """Executed, rejected and failed plans come back as they were; the others expire (what they
    would act on was not saved)."""
    plans = []
    for data in saved:
        plan = Plan(**{**data, "param_specs": {k: ParamSpec(**v) for k, v in data["param_specs"].items()}})
        if plan.status in (PROPOSED, APPROVED):
            plan.status, plan.result = EXPIRED, "not carried over by the saved session"
        plans.append(plan)
    book = session._plans
    book._plans = plans
    book._ids = itertools.count(max((int(p.id.rsplit("-", 1)[1]) for p in plans), default=0) + 1)


def _restore_experts(session: Session, contents: ArchiveContents) -> None:
    workshop = session._workshop
    for data in contents.documents["experts"]:
        if data["adapter_rank"] is None:
            model = copy.deepcopy(session.model)
        else:
            model = with_adapters(session.model, data["adapter_rank"], data["adapter_layers"])
        _load(model, contents.tensors[f"experts/{data['name']}"], f"expert {data['name']}")
        expert = Expert(**{**data, "indices": contents.arrays[f"experts/{data['name']}"]["indices"], "model": model})
        if expert.state == "training":  # an alternating fork saved part-way does not go on training
            expert.state = "interrupted"
        workshop.experts[expert.name] = expert
    for data in contents.documents["merges"]:
        workshop.merges[data["name"]] = Merge(**{**data, "weights": contents.tensors[f"merges/{data['name']}"]})


def _load(model: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """Load saved weights, or say how the model built now differs from the saved one."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    reshaped = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or reshaped:
        raise ConfigurationError(
            f"the {what} built now does not match the saved one: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, other shapes {reshaped[:5]}; build it exactly as for the saved run")
    model.load_state_dict(weights)


def _cloned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
