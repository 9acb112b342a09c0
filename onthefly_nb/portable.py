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

from .adapters import with_adapters
from .archive import ArchiveContents
from .determinism import capture_rng, restore_rng
from .errors import ConfigurationError
from .experts import Expert, Merge
from .plans import EXPIRED, PROPOSED, ParamSpec, Plan

if TYPE_CHECKING:
    from .session import Session

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
    experts: list[tuple[Expert, dict[str, torch.Tensor]]]
    merges: list[Merge]
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
        experts = []
        for expert, weights in self.experts:
            tensors[f"experts/{expert.name}"] = weights
            arrays[f"experts/{expert.name}"] = {"indices": np.asarray(expert.indices)}
            experts.append({f: getattr(expert, f) for f in EXPERT_FIELDS})
        merges = []
        for merge in self.merges:
            tensors[f"merges/{merge.name}"] = merge.weights
            merges.append({f: getattr(merge, f) for f in MERGE_FIELDS})
        documents = {**self.documents, "config": self.config, "experts": experts, "merges": merges}
        return ArchiveContents(tensors, self.states, arrays, documents, self.events)


def take_snapshot(session: Session) -> Snapshot:
    """Copy the session's state; call on the trainer thread at a step boundary (records flushed)."""
    s = session
    loop = s._loop
    position = loop.position()
    epoch_rng = position.pop("epoch_rng")
    rng = {"now": capture_rng(), "loader_generator": loop.sampler.rng_states()[1],
           "epoch": None if epoch_rng is None else {"torch": epoch_rng[0], "loader_generator": epoch_rng[1]}}
    states = {"optimizer": copy.deepcopy(s.optimizer.state_dict()), "rng": rng}
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
                "classification": s.store.is_classification, "clip_norm": loop.clip_norm, "saved": time.time()},
        model=_cloned(s.model.state_dict()), states=states, store=store, history=history,
        selection=s.selection.copy(), sample_weights=None if weights is None else weights.numpy().copy(),
        experts=[(e, _cloned(e.model.state_dict())) for e in workshop.experts.values()],
        merges=list(workshop.merges.values()),
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
    rng = contents.states["rng"]
    epoch = rng["epoch"]

    def put_back_rng() -> None:
        restore_rng(rng["now"])
        if rng["loader_generator"] is not None and s._loop.sampler.generator is not None:
            s._loop.sampler.generator.set_state(rng["loader_generator"])

    drawn_from = None if epoch is None else (epoch["torch"], epoch["loader_generator"])
    position = dict(config["position"], epoch_rng=drawn_from)
    s._loop.resume_at(position, put_back_rng)


def _restore_plans(session: Session, saved: list[dict[str, Any]]) -> None:
    """Decided plans come back as they were; undecided ones expire (what they would act on was not saved)."""
    plans = []
    for data in saved:
        plan = Plan(**{**data, "param_specs": {k: ParamSpec(**v) for k, v in data["param_specs"].items()}})
        if plan.status == PROPOSED:
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
