"""A run's specialists: fork them onto slices, train the matched-compute baseline, compare them
with the run, and gate them behind a router. Forks start on the trainer thread at a step boundary
(the caller waits, or gets a Future); the main run waits meanwhile or alternates with the fork.
Merging them back is ``merges.py``."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batches import to_device
from ..errors import ConfigurationError
from ..persist.weights import cloned, load_weights
from ..run.control import TERMINAL
from ..run.optimizers import same_kind
from ..run.training import Run
from ..steering.plans import PlanBook
from .adapters import with_adapters
from .forks import Expert, ForkOptions, ForkTraining, copy_optimizer, fork_batches, slice_loader
from .gate import ROUTER_BATCH, Mixture, last_linear, route_labels, train_router
from .regions import MAX_HELD_OUT, MAX_REFERENCE, embed, in_region

ROUTER_FEATURES = ("auto", "inputs", "penultimate")
EXPERT_FIELDS = ("name", "parent", "step", "slice", "budget", "lr", "general_share", "state", "losses", "kind",
                 "adapter_rank", "adapter_layers")


def keeps_run_rng(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a method of an object with a ``run`` on forked random streams: loaders it iterates
    (shuffling, worker seeds) and models it runs (dropout) draw nothing from the run's own streams."""
    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        device = self.run.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            return method(self, *args, **kwargs)

    return wrapped


class Workshop:
    """The run's experts (forks and baselines), their comparison table and their router."""

    def __init__(self, run: Run, plans: PlanBook, name: str, notify: Callable[[], None]) -> None:
        self.run = run
        self.plans = plans
        self.name = name  # the run's name: the experts' parent
        self._notify = notify
        self.experts: dict[str, Expert] = {}
        self.table: pd.DataFrame | None = None  # the latest comparison, for the dashboard
        self.table_version = 0
        self.candidates: Callable[[], dict[str, nn.Module]] = dict  # merge candidates the comparison shows
        self.on_trained: list[Callable[[Expert], None]] = []
        self.router_steps = 0  # optimizer steps the gates' routers took: a matched baseline counts them

    # ---- forks ------------------------------------------------------------------------------------
    def fork_job(self, rows: np.ndarray, description: str, options: ForkOptions, name: str | None = None,
                 kind: str = "fork") -> Callable[[], Expert]:
        """Check the request now; return the fork to start on the trainer thread at a boundary.
        It returns the expert trained (``mode='wait'``) or training between the run's steps."""
        run = self.run
        options.check()
        if options.adapter_rank is not None:
            with_adapters(run.model, options.adapter_rank, options.adapter_layers)  # checks rank and layers now
        if len(rows) == 0:
            raise ConfigurationError(f"the slice {description!r} holds no samples; nothing to specialise on")
        if name is not None and (name in self.experts or name == self.name):
            raise ConfigurationError(f"an expert named {name!r} exists already; pass name=...")
        batches = fork_batches(run.records.size, rows, run.train_loader.batch_size or 1, options.budget,
                               options.general_share, options.seed)

        def start() -> Expert:
            chosen = name or self._free_name("baseline" if kind == "baseline" else "fork")
            if chosen in self.experts:
                raise ConfigurationError(f"an expert named {chosen!r} exists already; pass name=...")
            held_out = self.held_out(rows) if kind == "fork" else np.zeros(0, np.int64)  # before it trains
            model, optimizer = self._fork_model(options)
            expert = Expert(chosen, self.name, run.step, description, rows, options.budget,
                            float(optimizer.param_groups[0]["lr"]), options.general_share, model, kind=kind,
                            adapter_rank=options.adapter_rank,
                            adapter_layers=None if options.adapter_layers is None else list(options.adapter_layers),
                            held_out=held_out)
            self.experts[chosen] = expert
            run.log.append("forked", run.step, expert=chosen, slice=description, samples=int(len(rows)),
                           held_out=int(len(held_out)), budget=options.budget, lr=expert.lr, mode=options.mode)
            loader = DataLoader(run.train_loader.dataset, batch_sampler=batches,
                                collate_fn=run.train_loader.collate_fn)
            training = ForkTraining(expert, optimizer, run.loss.train, loader, run.unpack, run.device, options.seed)
            if options.mode == "alternate" and run.state not in TERMINAL:
                run.loop.alongside(training.step, lambda: self._trained(expert))
            else:
                training.run()
                self._trained(expert)
            return expert

        return start

    @keeps_run_rng
    def held_out(self, rows: np.ndarray) -> np.ndarray:
        """The validation dataset indices in the region of the training ``rows`` (``regions.py``);
        none without a validation loader."""
        run = self.run
        if run.val_loader is None:
            return np.zeros(0, np.int64)
        layer = self._feature_layer("auto")
        reference = np.sort(np.random.default_rng(0).permutation(run.records.size)[:MAX_REFERENCE])
        candidates = np.arange(min(len(run.val_loader.dataset), MAX_HELD_OUT))
        train = embed(run.model, layer, (x for x, _ in self.batches(reference)))
        validation = embed(run.model, layer, (x for x, _ in self.batches(candidates, run.val_loader)))
        return candidates[in_region(train, np.isin(reference, rows), validation)]

    def _free_name(self, kind: str) -> str:
        """The next unused expert name (named when the fork starts, so two forks asked for before
        the same step boundary get two names)."""
        number = len(self.experts) + 1
        while f"{self.name}-{kind}{number}" in self.experts:
            number += 1
        return f"{self.name}-{kind}{number}"

    def _fork_model(self, options: ForkOptions) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A copy of the run's model (or its adapted twin) and the optimizer that trains it."""
        run = self.run
        if options.adapter_rank is None:
            model = copy.deepcopy(run.model)
            return model, copy_optimizer(run.optimizer, model, run.model, options.fresh_optimizer, options.lr)
        model = with_adapters(run.model, options.adapter_rank, options.adapter_layers)
        lr = {"lr": options.lr} if options.lr is not None else {}
        return model, same_kind(run.optimizer, [p for p in model.parameters() if p.requires_grad], **lr)

    def _trained(self, expert: Expert) -> None:
        """Log the finished fork, refresh the comparison and tell whoever listens (a merge card)."""
        self.run.log.append("fork_trained", self.run.step, expert=expert.name, steps=len(expert.losses),
                            final_loss=expert.losses[-1])
        self.refresh()
        for callback in self.on_trained:
            callback(expert)

    def baseline_job(self, steps: int | None, name: str | None) -> Callable[[], Expert]:
        """The run trained on, on all the data, for as many steps as the forks and the gates' routers
        took (matched compute)."""
        forks = [e for e in self.experts.values() if e.kind == "fork"]
        steps = steps if steps is not None else sum(e.budget for e in forks) + self.router_steps
        if not steps:
            raise ConfigurationError("no forks yet: pass steps=... for the baseline's budget")
        return self.fork_job(np.arange(self.run.records.size), "all samples (matched-compute baseline)",
                             ForkOptions(steps), name, kind="baseline")

    def matched_baseline(self, steps: int) -> Expert:
        """A baseline trained for ``steps`` from the run's current step (made if missing)."""
        for expert in self.experts.values():
            if expert.kind == "baseline" and expert.budget == steps and expert.step == self.run.step:
                return expert
        return self.baseline_job(steps, None)()

    def pick(self, names: Sequence[str] | None, default: Callable[[Expert], bool], what: str) -> list[str]:
        """The experts ``names``, or by default those that pass ``default``; all must exist."""
        chosen = list(names) if names is not None else [n for n, e in self.experts.items() if default(e)]
        if not chosen or any(n not in self.experts for n in chosen):
            known = ", ".join(self.experts) or "none yet"
            raise ConfigurationError(f"no {what} (asked for {chosen}); experts: {known}")
        return chosen

    # ---- comparison -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-run the comparison (with the merge candidates) for the dashboard's compare panel."""
        self.set_table(self.compare(self.candidates()))

    def set_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """Show ``table`` on the dashboard (each new table is a new version, even if equal)."""
        self.table, self.table_version = table, self.table_version + 1
        self._notify()
        return table

    @keeps_run_rng
    def compare(self, extra: dict[str, Any] | None = None) -> pd.DataFrame:
        """Loss and accuracy of the run, each expert and the ``extra`` models on every fork's slice
        (``slice``: the rows it trained on; ``held-out``: its region's validation samples, what a
        verdict reads) and on validation; ``table.attrs["samples"]`` counts each target's samples."""
        run = self.run
        models = {self.name: run.model, **{n: e.model for n, e in self.experts.items()}, **(extra or {})}
        targets: dict[str, DataLoader] = {}
        for n, e in self.experts.items():
            if e.kind == "fork":
                targets[f"slice {n}"] = self.slice_loader(e.indices)
                if len(e.held_out):
                    targets[f"held-out {n}"] = self.slice_loader(e.held_out, run.val_loader)
        if run.val_loader is not None:
            targets["validation"] = run.val_loader
        rows = []
        for model_name, model in models.items():
            row: dict[str, Any] = {"model": model_name}
            for target, loader in targets.items():
                result = run.evaluate_model(model, loader)
                row[f"{target} loss"] = result["loss"]
                if result["accuracy"] is not None:
                    row[f"{target} accuracy"] = result["accuracy"]
            rows.append(row)
        table = pd.DataFrame(rows).set_index("model")
        table.attrs["samples"] = {target: len(loader.dataset) for target, loader in targets.items()}  # type: ignore[arg-type]
        return table

    def slice_loader(self, rows: np.ndarray, of: DataLoader | None = None) -> DataLoader:
        """The dataset indices ``rows`` of the training loader's dataset (or ``of``'s), batched like it."""
        like = of or self.run.train_loader
        return slice_loader(like.dataset, rows, like)

    def batches(self, rows: np.ndarray, of: DataLoader | None = None) -> Iterator[tuple[Any, Any]]:
        """(inputs, targets) on the device, for the dataset indices ``rows`` (of ``of``'s dataset)."""
        for batch in self.slice_loader(rows, of):
            inputs, targets = self.run.unpack(batch)
            yield to_device(inputs, self.run.device), to_device(targets, self.run.device)

    # ---- the router -----------------------------------------------------------------------------
    @keeps_run_rng
    def gate(self, names: Sequence[str] | None, epochs: int, features: str = "auto",
             max_samples: int = 20_000) -> Mixture:
        """Train a router over the run and the chosen experts; returns the mixture. The router
        reads the inputs or the run's penultimate features (``'auto'``: the inputs when they are
        small vectors, as for clustering)."""
        run = self.run
        chosen = self.pick(names, lambda e: e.kind == "fork", "experts to gate")
        models = [copy.deepcopy(run.model), *(copy.deepcopy(self.experts[n].model) for n in chosen)]
        layer = self._feature_layer(features)
        rows = np.random.default_rng(0).permutation(run.records.size)[:max_samples]
        inputs, labels = route_labels(models, self.batches(rows), run.loss.evaluate, layer)
        mixture = Mixture(models, train_router(inputs, labels, len(models), epochs), layer)
        mixture.names = [self.name, *chosen]
        steps = epochs * -(-len(inputs) // ROUTER_BATCH)
        self.router_steps += steps
        run.log.append("gated", run.step, experts=chosen, features=layer or "inputs", router_steps=steps,
                       routed=np.bincount(labels.cpu().numpy(), minlength=len(models)).tolist())
        return mixture

    def _feature_layer(self, features: str) -> str | None:
        """The layer whose input the router reads (None: the inputs themselves)."""
        if features not in ROUTER_FEATURES:
            raise ConfigurationError(f"router features {features!r} are not available; use one of "
                                     f"{', '.join(ROUTER_FEATURES)}")
        if features == "inputs" or (features == "auto" and self.run.records.features is None):
            return None
        return last_linear(self.run.model)

    def lineage(self) -> list[dict[str, Any]]:
        return [e.node() for e in self.experts.values()]

    # ---- saving -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        experts = list(self.experts.values())
        return {"tensors": {f"experts/{e.name}": cloned(e.model.state_dict()) for e in experts},
                "arrays": {f"experts/{e.name}": {"indices": np.array(e.indices), "held_out": np.array(e.held_out)}
                           for e in experts},
                "documents": {"experts": [{f: copy.deepcopy(getattr(e, f)) for f in EXPERT_FIELDS} for e in experts],
                              "router_steps": self.router_steps}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.router_steps = int(state["documents"].get("router_steps", 0))
        for data in state["documents"]["experts"]:
            name = data["name"]
            if data["adapter_rank"] is None:
                model = copy.deepcopy(self.run.model)
            else:
                model = with_adapters(self.run.model, data["adapter_rank"], data["adapter_layers"])
            load_weights(model, state["tensors"][f"experts/{name}"], f"expert {name}")
            arrays = state["arrays"][f"experts/{name}"]
            expert = Expert(**{**data, "indices": arrays["indices"], "model": model,
                               "held_out": arrays.get("held_out", np.zeros(0, np.int64))})
            if expert.state == "training":  # an alternating fork saved part-way does not go on training
                expert.state = "interrupted"
            self.experts[name] = expert
