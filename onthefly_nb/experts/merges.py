"""Merging trained experts back into the run: candidate weights from a registered method, scored
before and after beside a matched-compute baseline, applied only when the user commits them.

Methods are a registry: ``@merge_method("name")`` adds one, a function of the workshop and the
chosen experts' names that returns the candidate's state dict.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batches import to_device
from ..errors import ConfigurationError, StateError
from ..steering.plans import PlanBook
from .adapters import fuse
from .distill import distill
from .forks import copy_optimizer, fork_batches
from .merging import average, fisher_average, fisher_diagonal
from .workshop import Workshop, keeps_run_rng

DISTILL_STEPS = 200
FISHER_SAMPLES = 2048
MERGE_FIELDS = ("name", "method", "experts", "step", "before", "after", "state", "baseline")

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """How a method makes candidate weights; ``trains`` says it trains for ``steps`` steps itself
    (its matched baseline then counts them); ``adapters`` that it merges adapter forks only."""

    weights: Callable[[Workshop, list[str], int], Weights]  # (workshop, expert names, steps) -> state dict
    trains: bool = False
    adapters: bool = False


MERGE_METHODS: dict[str, MergeMethod] = {}


MakeWeights = Callable[[Workshop, list[str], int], Weights]


def merge_method(name: str, trains: bool = False, adapters: bool = False) -> Callable[[MakeWeights], MakeWeights]:
    """Register ``weights(workshop, expert_names, steps)`` as the merge method ``name``."""
    def register(weights: MakeWeights) -> MakeWeights:
        MERGE_METHODS[name] = MergeMethod(weights, trains, adapters)
        return weights

    return register


@dataclass
class Merge:
    """Candidate weights from merging experts into the run: evaluated, not yet applied."""

    name: str
    method: str
    experts: list[str]
    step: int
    weights: Weights = field(repr=False)
    before: dict[str, Any]
    after: dict[str, Any]
    state: str = "candidate"  # then committed or discarded
    baseline: dict[str, Any] = field(default_factory=dict)  # the matched-compute baseline's scores

    def node(self, parent: str) -> dict[str, Any]:
        return {"id": self.name, "parent": parent, "kind": "merge", "label": f"{self.method} merge",
                "step": self.step, "state": self.state, "merged_from": self.experts}


class Merges:
    """The run's merge candidates and what became of them."""

    def __init__(self, workshop: Workshop, plans: PlanBook) -> None:
        self.workshop = workshop
        self.run = workshop.run
        self.plans = plans
        self.merges: dict[str, Merge] = {}
        workshop.candidates = lambda: {n: self.model(m) for n, m in self.merges.items() if m.state == "candidate"}

    @keeps_run_rng
    def merge(self, names: Sequence[str] | None, method: str, steps: int = DISTILL_STEPS) -> Merge:
        if method not in MERGE_METHODS:
            raise ConfigurationError(f"merge method {method!r} is not available; use one of {', '.join(MERGE_METHODS)}")
        how = MERGE_METHODS[method]
        workshop, run = self.workshop, self.run
        chosen = workshop.pick(names, lambda e: e.state == "trained" and e.kind == "fork", "trained experts to merge")
        adapted = [n for n in chosen if workshop.experts[n].adapter_rank is not None]
        if how.adapters != (len(adapted) == len(chosen)):
            raise ConfigurationError(
                f"method='adapter' fuses experts forked with adapter_rank=..., and only those; adapter experts: "
                f"{', '.join(adapted) or 'none'}; others: {', '.join(set(chosen) - set(adapted)) or 'none'}")
        weights = how.weights(workshop, chosen, steps)
        merge = Merge(f"{workshop.name}-merge{len(self.merges) + 1}", method, chosen, run.step, weights,
                      self._scores(run.model, chosen), {})
        merge.after = self._scores(self.model(merge), chosen)
        budget = sum(workshop.experts[n].budget for n in chosen) + (steps if how.trains else 0)
        merge.baseline = self._scores(workshop.matched_baseline(budget).model, chosen)
        self.merges[merge.name] = merge
        run.log.append("merged", run.step, merge=merge.name, method=method, experts=chosen, summary=_summary(merge))
        workshop.refresh()
        return merge

    def model(self, merge: Merge) -> nn.Module:
        """The run's model with the merge's weights (a copy)."""
        model = copy.deepcopy(self.run.model)
        model.load_state_dict(merge.weights)
        return model

    def resolve(self, models: dict[str, Any] | None) -> dict[str, Any]:
        """``models`` with each Merge replaced by its model (for a comparison)."""
        return {n: self.model(m) if isinstance(m, Merge) else m for n, m in (models or {}).items()}

    def _scores(self, model: nn.Module, experts: list[str]) -> dict[str, Any]:
        """``slices``: on the rows the experts trained on; ``held_out``: on their regions' validation
        samples (what the verdict reads, with its ``samples``); ``validation``: on all of it."""
        chosen = [self.workshop.experts[n] for n in experts]
        rows = np.unique(np.concatenate([e.indices for e in chosen]))
        held_out = np.unique(np.concatenate([e.held_out for e in chosen]))
        scores = {"slices": self.run.evaluate_model(model, self.workshop.slice_loader(rows))}
        if len(held_out):
            result = self.run.evaluate_model(model, self.workshop.slice_loader(held_out, self.run.val_loader))
            scores["held_out"] = {**result, "samples": int(len(held_out))}
        if self.run.val_loader is not None:
            scores["validation"] = self.run.evaluate_model(model, self.run.val_loader)
        return scores

    def propose_commit(self, merge: Merge) -> None:
        """A card to commit (approve) or discard (reject) a merge candidate, with its before and after."""
        def accuracy(scores: dict[str, Any]) -> str:
            value = scores.get("validation", {}).get("accuracy")
            return "n/a" if value is None else f"{value:.1%}"

        evidence = (f"{verdict(merge)}; validation accuracy {accuracy(merge.before)} before, {accuracy(merge.after)} "
                    f"after, {accuracy(merge.baseline)} training on instead")
        self.plans.propose("commit_merge", f"Commit {merge.name}", evidence, context={"merge": merge.name})

    def commit_job(self, name: str) -> Callable[[], str]:
        """Check the merge now; return the loading of its weights into the run, for a boundary."""
        merge = self._candidate(name)

        def commit() -> str:
            self.run.model.load_state_dict(merge.weights)
            merge.state = "committed"
            for expert in merge.experts:
                self.workshop.experts[expert].state = "merged"
            self.run.log.append("merge_committed", self.run.step, merge=name)
            self.plans.sweep()  # its card, and any other on these experts, no longer hold
            self.workshop.refresh()
            return name

        return commit

    def discard(self, name: str) -> None:
        merge = self._candidate(name)
        merge.state = "discarded"
        self.run.log.append("merge_discarded", self.run.step, merge=name)
        self.plans.sweep()
        self.run.controller.submit(self.workshop.refresh)  # the compare panel drops the candidate

    def _candidate(self, name: str) -> Merge:
        merge = self.merges.get(name)
        if merge is None:
            raise ConfigurationError(f"no merge {name!r}; merges: {', '.join(self.merges) or 'none yet'}")
        if merge.state != "candidate":
            raise StateError(f"merge {name!r} was already {merge.state}")
        return merge

    def lineage(self) -> list[dict[str, Any]]:
        return [m.node(self.workshop.name) for m in self.merges.values()]

    def state_dict(self) -> dict[str, Any]:
        merges = list(self.merges.values())
        return {"tensors": {f"merges/{m.name}": m.weights for m in merges},
                "documents": {"merges": [{f: copy.deepcopy(getattr(m, f)) for f in MERGE_FIELDS} for m in merges]}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for data in state["documents"]["merges"]:
            self.merges[data["name"]] = Merge(**{**data, "weights": state["tensors"][f"merges/{data['name']}"]})


def verdict(merge: Merge) -> str:
    """Whether the merge helps, read on the held-out samples of the experts' regions only."""
    before, after, baseline = (s.get("held_out") for s in (merge.before, merge.after, merge.baseline))
    if before is None or after is None:
        return ("no validation sample lies in the experts' regions, so nothing held out judges this merge "
                "(its loss on the rows they trained on says little)")
    where = f"on {after['samples']} held-out validation samples of the experts' regions"
    change = f"loss {before['loss']:.4g} -> {after['loss']:.4g}"
    if not after["loss"] < before["loss"]:
        return f"{where} it hurts: {change}"
    if baseline is not None and baseline["loss"] < after["loss"]:
        return f"{where} it helps ({change}), but training on for the same steps does better ({baseline['loss']:.4g})"
    instead = "" if baseline is None else f"; training on instead {baseline['loss']:.4g}"
    return f"{where} it helps: {change}{instead}"


def _summary(merge: Merge) -> str:
    """The merge's verdict and validation accuracies in one line, for the event log."""
    accuracy = [f"{label} {scores['validation']['accuracy']:.1%}" for label, scores in
                (("before", merge.before), ("after", merge.after), ("baseline", merge.baseline))
                if scores.get("validation", {}).get("accuracy") is not None]
    return verdict(merge) + (f"; val acc {', '.join(accuracy)}" if accuracy else "")


# ---- the methods ------------------------------------------------------------------------------------
def _models(workshop: Workshop, chosen: list[str]) -> list[nn.Module]:
    return [workshop.run.model, *(workshop.experts[n].model for n in chosen)]


def _bn_inputs(workshop: Workshop) -> Any:
    run = workshop.run
    return (run.unpack(batch)[0] for batch in run.train_loader)


@merge_method("swa")
def _swa(workshop: Workshop, chosen: list[str], _steps: int) -> Weights:
    """The uniform average of the weights (BatchNorm statistics recomputed)."""
    return average(_models(workshop, chosen), _bn_inputs(workshop), workshop.run.device)


@merge_method("fisher")
def _fisher(workshop: Workshop, chosen: list[str], _steps: int) -> Weights:
    """Each weight averaged in proportion to its diagonal Fisher information in each model."""
    size = workshop.run.records.size
    general = np.random.default_rng(0).choice(size, min(size, FISHER_SAMPLES), replace=False)
    slices = [general, *(workshop.experts[n].indices for n in chosen)]
    models = _models(workshop, chosen)
    fishers = [fisher_diagonal(m, workshop.batches(rows), workshop.run.loss.evaluate, FISHER_SAMPLES)
               for m, rows in zip(models, slices)]
    return fisher_average(models, fishers, _bn_inputs(workshop), workshop.run.device)


@merge_method("distill", trains=True)
def _distill(workshop: Workshop, chosen: list[str], steps: int) -> Weights:
    """The run's weights after ``steps`` steps of learning from the gated mixture of the run and
    ``chosen`` on the whole training set (task loss plus KL to the mixture)."""
    run = workshop.run
    teacher = workshop.gate(chosen, epochs=30)
    student = copy.deepcopy(run.model)
    optimizer = copy_optimizer(run.optimizer, student, run.model, fresh=False, lr=None)
    batches = fork_batches(run.records.size, np.arange(run.records.size), run.train_loader.batch_size or 1, steps,
                           0.0, 0)
    loader = DataLoader(run.train_loader.dataset, batch_sampler=batches, collate_fn=run.train_loader.collate_fn)
    moved = ((to_device(x, run.device), to_device(y, run.device)) for x, y in map(run.unpack, loader))
    with torch.random.fork_rng(devices=[run.device.index or 0] if run.device.type == "cuda" else []):
        distill(student, teacher, optimizer, run.loss.train, moved)
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


@merge_method("adapter", adapters=True)
def _adapter(workshop: Workshop, chosen: list[str], _steps: int) -> Weights:
    """The adapter forks' low-rank deltas added to the run's weights."""
    return fuse(workshop.run.model, [workshop.experts[n].model for n in chosen])
