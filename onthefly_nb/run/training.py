"""One training run's working parts: the model, its optimizer and data, the loop with control at
step boundaries, evaluations, and the changes a plan can make between steps (learning rate,
gradient clipping, sampling weights). Other components (plans, health, experts, saving) work
through this object's public attributes; it knows none of them, only the hooks they register."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..dashboard.schema import Num, Opt
from ..data.batches import Unpack, check_loader, default_unpack
from ..data.losses import sample_loss
from ..errors import ConfigurationError
from ..persist.saving import saved
from ..persist.weights import cloned, load_weights
from ..records.features import penultimate_capture
from ..records.records import Records
from . import hyperparameters
from .control import TERMINAL, Controller, RunState
from .distributed import PAUSED, Ranks, unwrapped
from .evaluation import evaluate
from .events import EventLog
from .loop import HANDOVER, TrainingLoop
from .metrics import Metrics
from .output import OutputLog
from .scalars import Gauges, Scalars
from .settings import Settings

LOADERS = {"validation": "val_loader", "test": "test_loader"}


class Hooks:
    """What other components run at the run's moments (each list called in order)."""

    def __init__(self) -> None:
        self.epoch_end: list[Callable[[int], None]] = []  # on the trainer thread, before validation
        self.flush: list[Callable[[], None]] = []  # on the trainer thread after each flush (rank 0 only)
        self.evaluated: list[Callable[[str, dict[str, Any]], None]] = []  # after a validation or test


class Run:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, loss_fn: Any,
                 train_loader: DataLoader, val_loader: DataLoader | None, test_loader: DataLoader | None, *,
                 scheduler: Any, device: str | torch.device | None, unpack: Unpack | None, settings: Settings,
                 log: EventLog, ranks: Ranks | None) -> None:
        _check_types(model, optimizer, scheduler, unpack)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader = check_loader(train_loader, "train_loader")
        self.val_loader = None if val_loader is None else check_loader(val_loader, "val_loader")
        self.test_loader = None if test_loader is None else check_loader(test_loader, "test_loader")
        self.device = _resolve_device(model, device)
        self.loss_fn, self.loss = loss_fn, sample_loss(loss_fn)
        self.unpack: Unpack = unpack or default_unpack
        capture = None if ranks is not None else penultimate_capture(model, self.train_loader.dataset)
        self.records = Records(self.train_loader.dataset, capture)  # rank 0's are the store; others only record
        self.settings, self.log = settings, log
        self.metrics = Metrics()
        self.scalars = Scalars()  # measured at each flush, and logged by the user
        self.gauges = Gauges(model, self.device)
        self.output = OutputLog()  # what the process prints while the run is live
        self.hooks = Hooks()
        self.tests = 0  # test passes so far
        self.fit: Callable[[], Any] | None = None  # another trainer's fit, when one drives this run
        self.gradients_wanted: Callable[[], bool] = lambda: False  # a health check is due at the next boundary
        self.kept_gradients: dict[str, torch.Tensor] | None = None  # for it, when another trainer clears them
        self.controller = Controller(lambda kind, step, data: log.append(kind, step, **data))
        self.ranks, self.lead = ranks, ranks is None or ranks.lead  # rank 0 keeps the records and the dashboard
        recorder = self.records.make_recorder(self.loss, settings.stop_on_nan,
                                         None if ranks is None else ranks.gather_visits)
        self.loop = TrainingLoop(
            model=model, optimizer=optimizer, loss=self.loss, train_loader=self.train_loader, scheduler=scheduler,
            device=self.device, unpack=self.unpack, schedule=settings, controller=self.controller,
            recorder=recorder, on_epoch_end=self.epoch_ended, on_flush=self._flushed)
        self.controller.on_enter = self.loop.flush
        self.controller.on_leave = self.loop.restart_clock
        if ranks is not None:
            self.loop.ranks = ranks
            if ranks.lead:
                self.controller.heartbeat = lambda: ranks.verdict(PAUSED)

    # ---- where the run stands -------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.controller.state

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def total_steps(self) -> int | None:
        """Steps the schedule will run if nobody stops it (None: until stopped)."""
        epochs, steps = self.settings.max_epochs, self.settings.max_steps
        total = None if epochs is None else epochs * self.loop.steps_per_epoch
        return steps if total is None else total if steps is None else min(total, steps)

    def display_epoch(self) -> int:
        """The epoch under way, counted from 1 (the last one once the run has ended)."""
        if self.state in TERMINAL:
            return self.loop.epoch
        epochs = self.settings.max_epochs
        return self.loop.epoch + 1 if epochs is None else min(self.loop.epoch + 1, epochs)

    # ---- training -----------------------------------------------------------------------------------
    def training(self) -> Iterator[str | None]:
        """The run from its first step to its end, for whichever thread drives it (see
        ``TrainingLoop.steps``: it yields after each step, HANDOVER where it needs a thread that may
        wait); exceptions propagate."""
        self.loop.recorder.open()
        self.loop.heavy_epoch_end = self.val_loader is not None and self.settings.val_every_n_epochs > 0
        if self.fit is not None:
            yield from self._waiting_thread()
            self.fit()  # another trainer's loop: it cannot change threads
        else:
            yield from self.loop.steps()
        self.loop.flush()
        yield from self._waiting_thread()  # forks alongside and the final test are long
        self.loop.finish_alongside()
        if self.state is not RunState.STOPPING and self.settings.do_test_after and self.test_loader is not None:
            self.evaluate("test")

    def _waiting_thread(self) -> Iterator[str]:
        while not self.loop.waiting_allowed:
            yield HANDOVER

    def epoch_ended(self, epoch: int) -> None:
        """At an epoch's end (on the trainer thread): the hooks, validation, the epoch's scheduler step."""
        self.log.append("epoch_end", self.step, epoch=epoch)
        for hook in self.hooks.epoch_end:
            hook(epoch)
        every = self.settings.val_every_n_epochs
        if self.val_loader is not None and every and epoch % every == 0:
            self.evaluate("validation")
        if self.scheduler is not None and self.settings.scheduler_interval == "epoch":
            if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step()
            elif (latest := self.metrics.latest("validation")) is not None and latest["loss"] is not None:
                self.scheduler.step(latest["loss"])

    def _flushed(self) -> None:
        if self.lead:
            self.scalars.add(self.step, self.gauges.read(self.optimizer, self.loop.samples_per_sec))
            for hook in self.hooks.flush:
                hook()

    # ---- evaluations ----------------------------------------------------------------------------------
    def loader_for(self, kind: str) -> DataLoader:
        loader = getattr(self, LOADERS[kind])
        if loader is None:
            raise ConfigurationError(f"this session has no {LOADERS[kind]}; pass {LOADERS[kind]}=... to create it.")
        return loader

    def evaluation(self, kind: str) -> Callable[[], dict[str, Any]]:
        """The validation or test pass to run at a step boundary (checked now: the loader exists)."""
        self.loader_for(kind)
        return lambda: self.evaluate(kind)

    def evaluate(self, kind: str) -> dict[str, Any]:
        """Evaluate the run's model now (on the trainer thread) and keep the result. A test pass is
        named in ``ONTHEFLY_TEST_LABEL`` (``test_1``, ``test_2``...) as the reference names it."""
        loader = self.loader_for(kind)
        if kind == "test":
            self.tests += 1
            os.environ["ONTHEFLY_TEST_LABEL"] = f"test_{self.tests}"
        return self.record_metrics(kind, self.evaluate_model(self.model, loader))

    def evaluate_model(self, model: nn.Module, loader: DataLoader) -> dict[str, Any]:
        return evaluate(unwrapped(model), loader, self.loss.evaluate, self.unpack, self.device)

    def record_metrics(self, kind: str, result: dict[str, Any]) -> dict[str, Any]:
        """Keep a validation or test result and log it."""
        kept = self.metrics.record(kind, self.step, self.loop.epoch, result)
        self.scalars.add(self.step, {f"{kind} {key}": value for key, value in kept.items()
                                     if key not in ("step", "epoch", "samples") and type(value) in (int, float)})
        self.log.append(kind, self.step, **{k: v for k, v in kept.items() if k != "step"})
        for hook in self.hooks.evaluated:
            hook(kind, kept)
        return kept

    # ---- changes a plan makes between steps ---------------------------------------------------------
    def scale_lr(self, factor: float) -> str:
        """Multiply every parameter group's learning rate (and the scheduler's base rates) by ``factor``."""
        before = [g["lr"] for g in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        after = [g["lr"] for g in self.optimizer.param_groups]
        self.log.append("lr_changed", self.step, before=before, after=after)
        return "lr " + ", ".join(f"{b:.3g} -> {a:.3g}" for b, a in zip(before, after))

    def set_hyperparameters(self, changes: dict[str, Any], group: int | None) -> str:
        """Apply checked changes (``hyperparameters.checked``) at this boundary; one event says what changed."""
        before = hyperparameters.apply(self.optimizer, self.scheduler, changes, group)
        if "grad_clip_norm" in changes:
            before["grad_clip_norm"] = [self.loop.clip_norm]
            self.loop.clip_norm = float(changes["grad_clip_norm"])
        self.log.append("hyperparameters", self.step, group=group, before=before, after=changes)
        return ", ".join(f"{k} {before[k]} -> {v}" for k, v in changes.items())

    def clip(self, max_norm: float) -> str:
        """Clip every later step's gradients to ``max_norm`` (torch.nn.utils.clip_grad_norm_)."""
        before = self.loop.clip_norm
        self.loop.clip_norm = max_norm
        self.log.append("clipping", self.step, max_norm=max_norm, before=before)
        return f"gradients clipped to norm {max_norm:g} from step {self.step + 1}"

    def reweight(self, rows: np.ndarray | None, factor: float, description: str | None) -> str:
        """Sample ``rows`` ``factor`` times as often from the next epoch (None: the loader's own order)."""
        weights = None
        if rows is not None:
            weights = np.ones(self.records.size)
            weights[rows] = factor
        self.loop.sampler.reweight(weights)
        self.log.append("reweighted", self.step, slice=description, samples=0 if rows is None else len(rows),
                        factor=factor if rows is not None else 1.0)
        if rows is None:
            return "sampling restored to the loader's own order from the next epoch"
        return f"{description} ({len(rows)} samples) sampled {factor:g}x as often from the next epoch"

    def gradient_norm(self) -> float | None:
        """The total gradient norm of the last step (on the trainer thread, where it is still in .grad)."""
        return self.gauges.gradient_norm()

    def lr(self) -> float | None:
        """The first parameter group's learning rate."""
        return None if self.optimizer is None else self.optimizer.param_groups[0].get("lr")

    # ---- saving -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of what training changes next (on the trainer thread at a step boundary)."""
        position = self.loop.position()
        states = {"optimizer": copy.deepcopy(self.optimizer.state_dict()), "rng": self.loop.rng_now(),
                  "epoch_draw": position.pop("epoch_draw")}
        if self.scheduler is not None:
            states["scheduler"] = copy.deepcopy(self.scheduler.state_dict())
        if self.loop.scaler is not None:  # fp16: the loss scale goes on from where it was
            states["scaler"] = self.loop.scaler.state_dict()
        weights = self.loop.sampler.weights
        return {"tensors": {"model": cloned(self.model.state_dict())}, "states": states,
                "arrays": {} if weights is None else {"sampling": {"weights": weights.numpy().copy()}},
                "config": {"model": type(self.model).__name__, "optimizer": type(self.optimizer).__name__,
                           "position": position, "clip_norm": self.loop.clip_norm}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved run (built from the user's objects, not started)."""
        states, config = state["states"], state["config"]
        load_weights(self.model, state["tensors"]["model"], "model")
        kind = config.get("optimizer")  # older archives do not name it
        if kind is not None and kind != type(self.optimizer).__name__:
            raise ConfigurationError(f"the saved run trained with {kind} but this optimizer is "
                                     f"{type(self.optimizer).__name__}; build a {kind} over the model, as then")
        groups = states["optimizer"]["param_groups"]
        missing = sorted({k for g in self.optimizer.param_groups for k in g} - {"params"} - set(groups[0]))
        if missing:
            raise ConfigurationError(f"the saved optimizer state has no {', '.join(missing)}: it is not the "
                                     f"{type(self.optimizer).__name__} this run builds; build it as for the saved run")
        try:
            self.optimizer.load_state_dict(states["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ConfigurationError(f"the optimizer does not match the saved one ({exc}); build it the same way "
                                     f"(same type and parameter groups) over the model") from exc
        if "scheduler" in states:
            if self.scheduler is None:
                raise ConfigurationError("the saved run had a learning-rate scheduler; pass scheduler=... as then")
            self.scheduler.load_state_dict(states["scheduler"])
        if "scaler" in states and self.loop.scaler is not None:
            self.loop.scaler.load_state_dict(states["scaler"])
            self.loop.note_scale()
        if "sampling" in state["arrays"]:
            self.loop.sampler.reweight(state["arrays"]["sampling"]["weights"])
        self.loop.clip_norm = saved(Opt(Num(low=1e-12)), config["clip_norm"], "clip_norm")
        self.loop.resume_at(dict(config["position"], epoch_draw=states["epoch_draw"]), states["rng"])


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigurationError(f"device={device!r} is not a device ({exc}); pass e.g. 'cpu', 'cuda' "
                                 f"or 'cuda:1'") from None
    backend = getattr(torch, resolved.type, None) if resolved.type != "cpu" else None
    if backend is not None and hasattr(backend, "is_available") and not backend.is_available():
        raise ConfigurationError(f"device={device!r}, but this PyTorch ({torch.__version__}) finds no {resolved.type} "
                                 f"device; pass device='cpu', or leave device out to train where the model is")
    model.to(resolved)
    return resolved


def _check_types(model: Any, optimizer: Any, scheduler: Any, unpack: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"model must be a torch.nn.Module, got {type(model).__name__}. Wrap plain functions "
            f"in a Module subclass whose forward() computes the outputs."
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}, "
            f"e.g. torch.optim.Adam(model.parameters(), lr=1e-3)."
        )
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise ConfigurationError(f"scheduler must have a step() method, got {type(scheduler).__name__}.")
    if unpack is not None and not callable(unpack):
        raise ConfigurationError(f"unpack must be a callable batch -> (inputs, targets), got {type(unpack).__name__}.")
