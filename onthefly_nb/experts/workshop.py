"""Specialists forked from a run onto a slice of its data, compared with it, and merged back.

A fork copies the run's model (and, unless asked otherwise, its optimizer state) at a step
boundary and trains the copy for a budget of steps on a slice: batches drawn from the slice's
dataset indices, optionally mixed with a share of samples from the whole training set. The
main run waits meanwhile, or alternates with the fork step for step. A merge builds candidate
weights (weight averaging, Fisher soup, distillation or adapter fusion), evaluates them before
and after beside a matched-compute baseline, and changes the run only when the user commits it.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.batches import Unpack, to_device
from ..data.losses import reduce_to_samples
from ..errors import ConfigurationError
from ..run.control import TERMINAL
from .adapters import fuse, with_adapters
from .distill import distill
from .gate import Mixture, last_linear, route_labels, train_router
from .merging import average, fisher_average, fisher_diagonal

MERGE_METHODS = ("swa", "fisher", "distill", "adapter")
FORK_MODES = ("wait", "alternate")
ROUTER_FEATURES = ("auto", "inputs", "penultimate")
DISTILL_STEPS = 200
FISHER_SAMPLES = 2048


@dataclass
class ForkOptions:
    """How to train a fork: ``budget`` steps at ``lr`` (the run's if None), with the optimizer
    state copied or ``fresh_optimizer``, ``general_share`` of each batch from the whole training
    set, and optionally only low-rank adapters (``adapter_rank`` on ``adapter_layers``). With
    ``mode='wait'`` the main run waits for the fork; with ``'alternate'`` they take turns, a step each."""

    budget: int = 300
    lr: float | None = None
    fresh_optimizer: bool = False
    general_share: float = 0.0
    seed: int = 0
    adapter_rank: int | None = None
    adapter_layers: Sequence[str] | None = None
    mode: str = "wait"

    def check(self) -> None:
        budget = self.budget
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ConfigurationError(f"budget must be a whole number of steps >= 1, got {budget!r}")
        if self.mode not in FORK_MODES:
            raise ConfigurationError(f"fork mode {self.mode!r} is not available; use one of {', '.join(FORK_MODES)}")
        if not 0.0 <= self.general_share < 1.0:
            raise ConfigurationError(f"general_share must be in [0, 1), got {self.general_share}")


@dataclass
class Expert:
    """A specialist: a copy of the run's model trained on a slice for a budget of steps."""

    name: str
    parent: str
    step: int  # the parent's step at the fork
    slice: str  # how the slice was chosen
    indices: np.ndarray = field(repr=False)
    budget: int
    lr: float
    general_share: float
    model: nn.Module = field(repr=False)
    state: str = "training"
    losses: list[float] = field(default_factory=list, repr=False)  # mean training loss per step
    kind: str = "fork"  # or "baseline": the run trained on for the same compute, for a fair comparison
    adapter_rank: int | None = None  # trained as low-rank adapters of this rank
    adapter_layers: list[str] | None = None  # ... on these Linear layers (None: all)

    def node(self) -> dict[str, Any]:
        """The expert as a lineage node."""
        return {"id": self.name, "parent": self.parent, "kind": self.kind, "label": self.name, "step": self.step,
                "state": self.state, "slice": self.slice, "samples": int(len(self.indices)), "budget": self.budget}


@dataclass
class Merge:
    """Candidate weights from merging experts into the run: evaluated, not yet applied."""

    name: str
    method: str
    experts: list[str]
    step: int
    weights: dict[str, torch.Tensor] = field(repr=False)
    before: dict[str, Any]
    after: dict[str, Any]
    state: str = "candidate"  # then committed or discarded
    baseline: dict[str, Any] = field(default_factory=dict)  # the matched-compute baseline's scores

    def node(self, parent: str) -> dict[str, Any]:
        return {"id": self.name, "parent": parent, "kind": "merge", "label": f"{self.method} merge",
                "step": self.step, "state": self.state, "merged_from": self.experts}


def fork_batches(dataset_size: int, indices: np.ndarray, batch_size: int, budget: int, general_share: float,
                 seed: int) -> list[list[int]]:
    """``budget`` batches of dataset indices: each a share of the slice (drawn in shuffled passes)
    and ``general_share`` of the whole training set."""
    rng = np.random.default_rng(seed)
    general = int(round(batch_size * general_share))
    focused = batch_size - general
    passes = math.ceil(budget * focused / len(indices))
    stream = np.concatenate([rng.permutation(indices) for _ in range(passes)])
    batches = []
    for b in range(budget):
        picked = stream[b * focused:(b + 1) * focused]
        if general:
            picked = np.concatenate([picked, rng.integers(0, dataset_size, general)])
        batches.append(picked.tolist())
    return batches


class ForkTraining:
    """An expert's training, one step at a time, on its own random stream: its steps can run all
    at once or between the main run's steps, and either way neither disturbs the other's RNG."""

    def __init__(self, expert: Expert, optimizer: torch.optim.Optimizer, loss_fn: Any, loader: DataLoader,
                 unpack: Unpack, device: torch.device, seed: int) -> None:
        self.expert, self.optimizer, self.loss_fn = expert, optimizer, loss_fn
        self.unpack, self.device = unpack, device
        self._cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._cuda):  # iter() draws a seed: not from the run's stream
            torch.manual_seed(seed)
            self._rng = self._rng_state()
            self._batches = iter(loader)

    def _rng_state(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self._cuda]

    @property
    def done(self) -> bool:
        return len(self.expert.losses) >= self.expert.budget

    def step(self) -> bool:
        """Train one step; True once the budget is spent."""
        model = self.expert.model
        with torch.random.fork_rng(devices=self._cuda):
            torch.set_rng_state(self._rng[0])
            for device, state in zip(self._cuda, self._rng[1]):
                torch.cuda.set_rng_state(state, device)
            model.train()
            inputs, targets = self.unpack(next(self._batches))
            inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            value = self.loss_fn(model(inputs), targets)
            if value.ndim:
                value = reduce_to_samples(value, len(value)).mean()
            value.backward()
            self.optimizer.step()
            self._rng = self._rng_state()
        self.expert.losses.append(float(value.detach()))
        if self.done:
            self.expert.state = "trained"
        return self.done

    def run(self) -> None:
        """Train the rest of the budget."""
        while not self.done:
            self.step()


def copy_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, source: nn.Module, fresh: bool,
                   lr: float | None) -> torch.optim.Optimizer:
    """An optimizer of the same kind over ``model`` (a deep copy of ``source``), with the state
    of ``optimizer`` copied unless ``fresh``; ``lr`` replaces every group's learning rate."""
    if [p.shape for p in model.parameters()] != [p.shape for p in source.parameters()]:
        raise ConfigurationError("the forked model's parameters do not match the run's")
    clone = type(optimizer)(model.parameters(), **optimizer.defaults)
    if not fresh:
        clone.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    if lr is not None:
        for group in clone.param_groups:
            group["lr"] = lr
    return clone


def slice_loader(dataset: Any, indices: np.ndarray, like: DataLoader) -> DataLoader:
    """An evaluation loader over the dataset indices, batched like ``like``."""
    return DataLoader(Subset(dataset, indices.tolist()), batch_size=like.batch_size or 256,
                      collate_fn=like.collate_fn)


def keeps_run_rng(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Workshop ``method`` on forked random streams: loaders it iterates (shuffling, worker
    seeds) and models it runs (dropout) draw nothing from the run's own streams."""
    @functools.wraps(method)
    def wrapped(self: Workshop, *args: Any, **kwargs: Any) -> Any:
        device = self.session.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            return method(self, *args, **kwargs)

    return wrapped


class Workshop:
    """A session's experts and merges: fork, compare, merge, commit. Forks and commits run on
    the trainer thread at a step boundary (the caller waits, or gets a Future)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.experts: dict[str, Expert] = {}
        self.merges: dict[str, Merge] = {}
        self.table: Any = None  # the latest comparison (a DataFrame), for the dashboard
        self.table_version = 0

    def fork_job(self, rows: np.ndarray, description: str, options: ForkOptions, name: str | None = None,
                 kind: str = "fork") -> Callable[[], Expert]:
        """Check the request now; return the fork to start on the trainer thread at a boundary.
        It returns the expert trained (``mode='wait'``) or training between the run's steps."""
        s = self.session
        options.check()
        if options.adapter_rank is not None:
            with_adapters(s.model, options.adapter_rank, options.adapter_layers)  # checks rank and layers now
        if len(rows) == 0:
            raise ConfigurationError(f"the slice {description!r} holds no samples; nothing to specialise on")
        name = name or f"{s.run_name}-fork{len(self.experts) + 1}"
        if name in self.experts or name == s.run_name:
            raise ConfigurationError(f"an expert named {name!r} exists already; pass name=...")
        batches = fork_batches(s.store.size, rows, s.train_loader.batch_size or 1, options.budget,
                               options.general_share, options.seed)

        def start() -> Expert:
            model, optimizer = self._fork_model(options)
            expert = Expert(name, s.run_name, s.global_step, description, rows, options.budget,
                            float(optimizer.param_groups[0]["lr"]), options.general_share, model, kind=kind,
                            adapter_rank=options.adapter_rank,
                            adapter_layers=None if options.adapter_layers is None else list(options.adapter_layers))
            self.experts[name] = expert
            s._log.append("forked", s.global_step, expert=name, slice=description, samples=int(len(rows)),
                          budget=options.budget, lr=expert.lr, mode=options.mode)
            loader = DataLoader(s.train_loader.dataset, batch_sampler=batches, collate_fn=s.train_loader.collate_fn)
            training = ForkTraining(expert, optimizer, s._loss.train, loader, s.unpack, s.device, options.seed)
            if options.mode == "alternate" and s._controller.state not in TERMINAL:
                s._loop.alongside(training.step, lambda: self._trained(expert))
            else:
                training.run()
                self._trained(expert)
            return expert

        return start

    def _fork_model(self, options: ForkOptions) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A copy of the run's model (or its adapted twin) and the optimizer that trains it."""
        s = self.session
        if options.adapter_rank is None:
            model = copy.deepcopy(s.model)
            return model, copy_optimizer(s.optimizer, model, s.model, options.fresh_optimizer, options.lr)
        model = with_adapters(s.model, options.adapter_rank, options.adapter_layers)
        defaults = {**s.optimizer.defaults, **({"lr": options.lr} if options.lr is not None else {})}
        return model, type(s.optimizer)([p for p in model.parameters() if p.requires_grad], **defaults)

    def _trained(self, expert: Expert) -> None:
        """Log the finished fork, refresh the comparison and propose merging it."""
        s = self.session
        s._log.append("fork_trained", s.global_step, expert=expert.name, steps=len(expert.losses),
                      final_loss=expert.losses[-1])
        self.refresh()
        if expert.kind == "fork":
            self._propose_merge(expert)

    def refresh(self) -> None:
        """Re-run the comparison (with the merge candidates) for the dashboard's compare panel."""
        self.set_table(self.compare({n: m for n, m in self.merges.items() if m.state == "candidate"}))

    def set_table(self, table: Any) -> None:
        """Show ``table`` on the dashboard (each new table is a new version, even if equal)."""
        self.table, self.table_version = table, self.table_version + 1
        self.session._changed.set()

    def _propose_merge(self, expert: Expert) -> None:
        row = self.table.loc
        column = f"slice {expert.name} loss"
        evidence = (f"{expert.name} trained {len(expert.losses)} steps on {expert.slice}; loss on that slice "
                    f"{row[expert.name, column]:.4g} against the run's {row[self.session.run_name, column]:.4g}")
        self.session._plans.propose("merge", f"Merge {expert.name} into the run", evidence,
                                    context={"expert": expert.name})

    def propose_commit(self, merge: Merge) -> None:
        """A card to commit (approve) or discard (reject) a merge candidate, with its before and after."""
        def text(scores: dict[str, Any]) -> str:
            parts = [f"slices loss {scores['slices']['loss']:.4g}"]
            if "validation" in scores and scores["validation"]["accuracy"] is not None:
                parts.append(f"validation accuracy {scores['validation']['accuracy']:.1%}")
            return ", ".join(parts)

        self.session._plans.propose("commit_merge", f"Commit {merge.name}",
                                    f"before: {text(merge.before)}; after: {text(merge.after)}; the run trained "
                                    f"on for the same steps instead: {text(merge.baseline)}",
                                    context={"merge": merge.name})

    @keeps_run_rng
    def compare(self, extra: dict[str, Any] | None = None) -> Any:
        """Loss and accuracy of the run, each expert and the ``extra`` models (modules, mixtures
        or merges) on every fork's slice and on validation."""
        import pandas as pd

        s = self.session
        models = {s.run_name: s.model, **{n: e.model for n, e in self.experts.items()}}
        for name, model in (extra or {}).items():
            models[name] = self._candidate_model(model) if isinstance(model, Merge) else model
        targets = {f"slice {n}": slice_loader(s.train_loader.dataset, e.indices, s.train_loader)
                   for n, e in self.experts.items() if e.kind == "fork"}
        if s.val_loader is not None:
            targets["validation"] = s.val_loader
        rows = []
        for model_name, model in models.items():
            row: dict[str, Any] = {"model": model_name}
            for target, loader in targets.items():
                result = s._evaluate_model(model, loader)
                row[f"{target} loss"] = result["loss"]
                if result["accuracy"] is not None:
                    row[f"{target} accuracy"] = result["accuracy"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")

    @keeps_run_rng
    def merge(self, names: Sequence[str] | None, method: str, steps: int = DISTILL_STEPS) -> Merge:
        s = self.session
        if method not in MERGE_METHODS:
            raise ConfigurationError(f"merge method {method!r} is not available; use one of {', '.join(MERGE_METHODS)}")
        chosen = self._pick(names, lambda e: e.state == "trained" and e.kind == "fork", "trained experts to merge")
        adapted = [n for n in chosen if self.experts[n].adapter_rank is not None]
        if (method == "adapter") != (len(adapted) == len(chosen)):
            raise ConfigurationError(
                f"method='adapter' fuses experts forked with adapter_rank=..., and only those; adapter experts: "
                f"{', '.join(adapted) or 'none'}; others: {', '.join(set(chosen) - set(adapted)) or 'none'}")
        bn_inputs = (s.unpack(batch)[0] for batch in s.train_loader)
        models = [s.model, *(self.experts[n].model for n in chosen)]
        if method == "adapter":
            weights = fuse(s.model, models[1:])
        elif method == "swa":
            weights = average(models, bn_inputs, s.device)
        elif method == "distill":
            weights = self._distilled(chosen, steps)
        else:
            rng = np.random.default_rng(0)
            general = rng.choice(s.store.size, min(s.store.size, FISHER_SAMPLES), replace=False)
            slices = [general, *(self.experts[n].indices for n in chosen)]
            fishers = [fisher_diagonal(m, self._batches(rows), s._loss.evaluate, FISHER_SAMPLES)
                       for m, rows in zip(models, slices)]
            weights = fisher_average(models, fishers, bn_inputs, s.device)
        before = self._scores(s.model, chosen)
        merge = Merge(f"{s.run_name}-merge{len(self.merges) + 1}", method, chosen, s.global_step, weights,
                      before, {})
        merge.after = self._scores(self._candidate_model(merge), chosen)
        extra = steps if method == "distill" else 0  # distillation trains the run's copy for more steps
        merge.baseline = self._scores(self._matched_baseline(chosen, extra).model, chosen)
        self.merges[merge.name] = merge
        s._log.append("merged", s.global_step, merge=merge.name, method=method, experts=chosen,
                      summary=_summary(merge))
        self.refresh()
        return merge

    def _matched_baseline(self, chosen: list[str], extra_steps: int) -> Expert:
        """The baseline trained for as many steps as the chosen forks together, plus
        ``extra_steps`` the merge itself trains (made if missing)."""
        steps = sum(self.experts[n].budget for n in chosen) + extra_steps
        for expert in self.experts.values():
            if expert.kind == "baseline" and expert.budget == steps and expert.step == self.session.global_step:
                return expert
        return self.baseline_job(steps, None)()

    def _distilled(self, chosen: list[str], steps: int) -> dict[str, torch.Tensor]:
        """The run's weights after ``steps`` steps of learning from the gated mixture of the run
        and ``chosen`` on the whole training set (task loss plus KL to the mixture)."""
        s = self.session
        teacher = self.gate(chosen, epochs=30)
        student = copy.deepcopy(s.model)
        optimizer = copy_optimizer(s.optimizer, student, s.model, fresh=False, lr=None)
        batches = fork_batches(s.store.size, np.arange(s.store.size), s.train_loader.batch_size or 1, steps, 0.0, 0)
        loader = DataLoader(s.train_loader.dataset, batch_sampler=batches, collate_fn=s.train_loader.collate_fn)
        moved = ((to_device(x, s.device), to_device(y, s.device)) for x, y in map(s.unpack, loader))
        with torch.random.fork_rng(devices=[s.device.index or 0] if s.device.type == "cuda" else []):
            distill(student, teacher, optimizer, s._loss.train, moved)
        return {k: v.detach().clone() for k, v in student.state_dict().items()}

    def baseline_job(self, steps: int | None, name: str | None) -> Callable[[], Expert]:
        """The run trained on, on all the data, for as many steps as the forks took (matched compute)."""
        s = self.session
        forks = [e for e in self.experts.values() if e.kind == "fork"]
        steps = steps if steps is not None else sum(e.budget for e in forks)
        if not steps:
            raise ConfigurationError("no forks yet: pass steps=... for the baseline's budget")
        return self.fork_job(np.arange(s.store.size), "all samples (matched-compute baseline)", ForkOptions(steps),
                             name or f"{s.run_name}-baseline{len(self.experts) + 1}", kind="baseline")

    @keeps_run_rng
    def gate(self, names: Sequence[str] | None, epochs: int, features: str = "auto",
             max_samples: int = 20_000) -> Mixture:
        """Train a router over the run and the chosen experts; returns the mixture. The router
        reads the inputs or the run's penultimate features (``'auto'``: the inputs when they are
        small vectors, as for clustering)."""
        s = self.session
        chosen = self._pick(names, lambda e: e.kind == "fork", "experts to gate")
        models = [copy.deepcopy(s.model), *(copy.deepcopy(self.experts[n].model) for n in chosen)]
        layer = self._feature_layer(features)
        rows = np.random.default_rng(0).permutation(s.store.size)[:max_samples]
        inputs, labels = route_labels(models, self._batches(rows), s._loss.evaluate, layer)
        mixture = Mixture(models, train_router(inputs, labels, len(models), epochs), layer)
        mixture.names = [s.run_name, *chosen]
        s._log.append("gated", s.global_step, experts=chosen, features=layer or "inputs", routed=np.bincount(
            labels.cpu().numpy(), minlength=len(models)).tolist())
        return mixture

    def _feature_layer(self, features: str) -> str | None:
        """The layer whose input the router reads (None: the inputs themselves)."""
        if features not in ROUTER_FEATURES:
            raise ConfigurationError(f"router features {features!r} are not available; use one of "
                                     f"{', '.join(ROUTER_FEATURES)}")
        if features == "inputs" or (features == "auto" and self.session._features is None):
            return None
        return last_linear(self.session.model)

    def _pick(self, names: Sequence[str] | None, default: Callable[[Expert], bool], what: str) -> list[str]:
        """The experts ``names``, or by default those that pass ``default``; all must exist."""
        chosen = list(names) if names is not None else [n for n, e in self.experts.items() if default(e)]
        if not chosen or any(n not in self.experts for n in chosen):
            known = ", ".join(self.experts) or "none yet"
            raise ConfigurationError(f"no {what} (asked for {chosen}); experts: {known}")
        return chosen

    def _batches(self, rows: np.ndarray) -> Any:
        """(inputs, targets) on the device, for the dataset indices ``rows``."""
        s = self.session
        for batch in slice_loader(s.train_loader.dataset, rows, s.train_loader):
            inputs, targets = s.unpack(batch)
            yield to_device(inputs, s.device), to_device(targets, s.device)

    def _candidate_model(self, merge: Merge) -> nn.Module:
        model = copy.deepcopy(self.session.model)
        model.load_state_dict(merge.weights)
        return model

    def _scores(self, model: nn.Module, experts: list[str]) -> dict[str, Any]:
        s = self.session
        rows = np.unique(np.concatenate([self.experts[n].indices for n in experts]))
        scores = {"slices": s._evaluate_model(model, slice_loader(s.train_loader.dataset, rows, s.train_loader))}
        if s.val_loader is not None:
            scores["validation"] = s._evaluate_model(model, s.val_loader)
        return scores

    def commit_job(self, name: str) -> Callable[[], str]:
        """Check the merge now; return the loading of its weights into the run, for a boundary."""
        s = self.session
        merge = self._candidate(name)

        def run() -> str:
            s.model.load_state_dict(merge.weights)
            merge.state = "committed"
            for expert in merge.experts:
                self.experts[expert].state = "merged"
            s._log.append("merge_committed", s.global_step, merge=name)
            self.refresh()
            return name

        return run

    def discard(self, name: str) -> None:
        merge = self._candidate(name)
        merge.state = "discarded"
        self.session._log.append("merge_discarded", self.session.global_step, merge=name)
        self.session._controller.submit(self.refresh)  # the compare panel drops the candidate

    def _candidate(self, name: str) -> Merge:
        merge = self.merges.get(name)
        if merge is None:
            raise ConfigurationError(f"no merge {name!r}; merges: {', '.join(self.merges) or 'none yet'}")
        if merge.state != "candidate":
            raise ConfigurationError(f"merge {name!r} was already {merge.state}")
        return merge

    def lineage(self) -> list[dict[str, Any]]:
        return [e.node() for e in self.experts.values()] + [m.node(self.session.run_name)
                                                             for m in self.merges.values()]


def _summary(merge: Merge) -> str:
    """The merge's scores in one line, for the event log."""
    def part(label: str, scores: dict[str, Any]) -> str:
        text = f"{label} slices loss {scores['slices']['loss']:.4g}"
        validation = scores.get("validation", {}).get("accuracy")
        return text + (f", val acc {validation:.1%}" if validation is not None else "")

    return "; ".join(part(k, v) for k, v in (("before", merge.before), ("after", merge.after),
                                                ("baseline", merge.baseline)) if v)
