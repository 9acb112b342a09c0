"""The training loop, run on the session's training thread (a background thread, or a script's own)."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batches import SteerableBatchSampler, Unpack, indexed_loader, to_device
from ..data.losses import SampleLoss, reduce_to_samples
from ..errors import NonFiniteLossError
from ..records.recorder import Recorder
from .control import Controller, RunState
from .distributed import GO, PAUSED, STOP, Ranks
from .nonfinite import DEVICE, NonFiniteGuard, guard_mode, halted_message
from .settings import Settings

HANDOVER = "handover"  # what steps() yields when its boundary needs a thread that may wait
LIVE_FLUSH_SECONDS = 0.1  # while a dashboard shows the run: fresh data for every update
QUIET_FLUSH_SECONDS = 0.5  # otherwise: fewer, larger flushes (each has a fixed cost)


class TrainingLoop:
    """Epochs of steps over an index-keyed loader, with control at every step boundary."""

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, loss: SampleLoss,
                 train_loader: DataLoader, scheduler: Any, device: torch.device, unpack: Unpack,
                 schedule: Settings, controller: Controller, recorder: Recorder,
                 on_epoch_end: Callable[[int], None], on_flush: Callable[[], None]) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.loader = indexed_loader(train_loader)
        self.sampler: SteerableBatchSampler = self.loader.batch_sampler  # type: ignore[assignment]
        self.scheduler = scheduler
        self.device = device
        self.unpack = unpack
        self.schedule = schedule
        self.ctl = controller
        self.recorder = recorder
        self.on_epoch_end = on_epoch_end
        self.on_flush = on_flush
        self.non_blocking = bool(train_loader.pin_memory) and device.type == "cuda"
        self.step = 0
        self.epoch = 0
        self.samples_per_sec: float | None = None
        self._clock = time.monotonic()
        self._clock_samples = 0
        self.flush_seconds = QUIET_FLUSH_SECONDS
        self.clip_norm: float | None = schedule.grad_clip_norm  # gradient clipping (a plan can turn it on)
        self.autocast, self.scaler = mixed_precision(schedule.precision, device)
        self._scale = None if self.scaler is None else self.scaler.get_scale()  # at the last flush (no sync yet)
        self.guard = NonFiniteGuard(optimizer, guard_mode(device, optimizer))
        self._halted: str | None = None  # what was not finite in a step that was not applied
        self.nonfinite: tuple[int, str] | None = None  # the first step refused for that, and what it was
        self._alongside: list[tuple[Callable[[], bool], Callable[[], None]]] = []
        self.wait_seconds = 0.0  # in total: waiting for the loader's next batch
        self.busy_seconds = 0.0  # in total: steps, that wait included (pauses and evaluations left out)
        self.last_batch: tuple[Any, Any] | None = None  # (inputs, targets) of the latest step, on the device
        self.ranks: Ranks | None = None  # the ranks of a torchrun launch, set by the session
        batches = train_loader.batch_sampler
        self._set_epoch: Callable[[int], None] | None = (  # a DistributedSampler's, or a batch sampler's own
            getattr(batches, "set_epoch", None) or getattr(getattr(batches, "sampler", None), "set_epoch", None))
        self.batches_done = 0  # batches of the epoch under way trained on
        self._pending_rng: dict[str, Any] | None = None  # a resumed run's RNG, until its epoch's order is drawn
        self._next_flush = self._clock + self.flush_seconds
        self.waiting_allowed = True  # whether the thread driving steps() may wait at a boundary (pause)
        self.heavy_epoch_end = False  # an epoch end runs validation: a thread that may wait does it

    def steps(self) -> Iterator[str | None]:
        """The run, one step at a time, for whichever thread drives it: yields after every step, and
        HANDOVER at a boundary that has something to serve (a pause, a queued action, an epoch end
        with validation) while ``waiting_allowed`` is False, until a thread that may wait resumes it.
        Returns when the schedule ends or a stop is asked for; exceptions propagate."""
        if (yield from self._boundary()):
            return
        while (self.schedule.max_epochs is None or self.epoch < self.schedule.max_epochs) \
                and not self._reached_max_steps():
            if (yield from self._run_epoch()):
                return
            self.epoch += 1
            self.batches_done = 0
            self.sampler.epoch_draw = None
            while self.heavy_epoch_end and not self.waiting_allowed:
                yield HANDOVER
            self.on_epoch_end(self.epoch)
            self.restart_clock()
            if (yield from self._boundary()):
                return

    def run(self) -> None:
        """Train until the schedule ends or a stop is asked for, on this thread (which may wait)."""
        self.waiting_allowed = True
        for _ in self.steps():
            pass

    def _run_epoch(self) -> Generator[str | None, None, bool]:
        """One pass over the loader; True when a stop was asked for."""
        step_scheduler = self.scheduler is not None and self.schedule.scheduler_interval == "step"
        if self._set_epoch is not None:  # a DistributedSampler shuffles by epoch
            self._set_epoch(self.epoch)
        distributed = self.ranks is not None
        clock = time.perf_counter
        began = clock()
        accumulate, batches = self.schedule.accumulate, len(self.loader)
        for indices, batch in self.loader:
            fetched = clock()
            self.batches_done += 1
            stepping = accumulate == 1 or self.batches_done % accumulate == 0 or self.batches_done == batches
            self._train_step(indices, batch, stepping)
            if not stepping:  # gradient accumulation: the optimizer steps after the group's last batch
                continue
            if step_scheduler:
                self.scheduler.step()
            self.step += 1
            if self._alongside:
                self._step_alongside()
            if distributed:
                if self._distributed_boundary():
                    return True
            else:
                if self.recorder.full or time.monotonic() >= self._next_flush:
                    self.flush()
                self.wait_seconds += fetched - began
                self.busy_seconds += clock() - began
                if (yield from self._boundary()):
                    return True
            if self._reached_max_steps():
                break
            yield None
            began = clock()
        return False

    def _train_step(self, indices: list[int], batch: Any, stepping: bool = True) -> None:
        """One batch: forward, loss, backward; with ``stepping``, the optimizer step (else the
        gradients accumulate, each batch's loss divided by the number accumulated, as in the
        plain accumulation loop)."""
        inputs, targets = self.unpack(batch)
        inputs = to_device(inputs, self.device, self.non_blocking)
        targets = to_device(targets, self.device, self.non_blocking)
        self.last_batch = (inputs, targets)
        accumulate = self.schedule.accumulate
        if accumulate == 1 or (self.batches_done - 1) % accumulate == 0:
            self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.model(inputs)
            if not self.step:
                self._first_batch(outputs, targets, len(indices))
            value = self.loss.train(outputs, targets)
            losses = None
            if value.ndim or (self.loss.per_sample is None and self.loss.off is None):
                losses = reduce_to_samples(value, len(indices))
                value = losses.mean()
        if accumulate > 1:
            value = value / accumulate
        scaler = self.scaler
        if scaler is None:
            value.backward()
            guarded = self.ranks is None  # a lone rank stopping or skipping would leave the others behind
            if guarded:
                self.guard.batch(value)
            if stepping:
                norm = None
                if self.clip_norm is not None:
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
                if not guarded:
                    self.optimizer.step()
                elif (refused := self.guard.step(self.step, norm)) is not None:
                    self._refused(refused)
        else:  # fp16: scaled gradients, unscaled before clipping; a step with inf gradients is skipped
            scaler.scale(value).backward()
            if stepping:
                if self.clip_norm is not None:
                    scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
                scaler.step(self.optimizer)
                scaler.update()
        if self.loss.off is None:
            self.recorder.record(self.step, self.epoch, indices, losses, outputs, targets)
        if self._halted is not None:
            self._halt()

    def _refused(self, what: str) -> None:
        """A step the guard did not apply: the run stops naming it (``stop_on_nan``) or notes it."""
        self.nonfinite = self.nonfinite or (self.step, what)
        if self.recorder.stop_on_nonfinite:
            self._halted = what  # the batch is recorded, then the run stops (see _halt)
        else:
            self.ctl.note("nonfinite_skipped", what=what)

    def _halt(self) -> None:
        """Stop the run at a step that was not applied: the recorder names the samples whose loss was
        non-finite, when it was the loss; else the gradient norm is named."""
        what, self._halted = self._halted, None
        try:
            self.flush()
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(halted_message(what, self.step, False, exc)) from None
        raise NonFiniteLossError(halted_message(what, self.step, False))

    def _first_batch(self, outputs: Any, targets: Any, size: int) -> None:
        """Check the loss on the run's first batch; say so if per-sample values are off."""
        self.loss.check(outputs, targets, size)
        if self.loss.off is not None:
            self.ctl.note("per_sample_off", reason=self.loss.off)

    def _boundary(self) -> Generator[str, None, bool]:
        """The step boundary (on every rank of a launch, rank 0's); True means stop. A thread that
        may not wait hands the boundary over (HANDOVER) when there is something to serve."""
        if self.ranks is not None:
            return self._distributed_boundary()
        while (stop := self.ctl.at_boundary(self.step, self.waiting_allowed)) is None:
            yield HANDOVER
        return stop

    def _distributed_boundary(self) -> bool:
        """Rank 0 says whether to flush (a collective) and whether it was asked anything; if so it
        serves its boundary and every rank follows its verdict: go, stop, or paused meanwhile."""
        ranks = self.ranks
        assert ranks is not None
        asked = ranks.lead and self.ctl.attention
        due = ranks.lead and (asked or self.recorder.full or time.monotonic() >= self._next_flush)
        flush, asked = ranks.word(due, asked)
        if flush:
            self.flush()
        if not asked:
            return False
        if ranks.lead:
            stop = self.ctl.at_boundary(self.step)  # the controller's heartbeat says PAUSED while paused
            ranks.verdict(STOP if stop else GO)
            return stop
        verdict = ranks.verdict()
        if verdict == PAUSED:
            self.ctl.mirror(RunState.PAUSED)
            while verdict == PAUSED:
                verdict = ranks.verdict()
            self.ctl.mirror(RunState.RUNNING)
        if verdict == STOP:
            self.ctl.mirror(RunState.STOPPING)
        return verdict == STOP

    def external_step(self, indices: list[int], outputs: Any, targets: Any) -> None:
        """A training batch another trainer took (Lightning, Hugging Face): record its per-sample
        values from the outputs it computed. Its step boundary is :meth:`Controller.at_boundary`."""
        if not self.step:
            self._first_batch(outputs, targets, len(indices))
        losses = None
        if self.loss.off is not None:
            self.step += 1
            return
        if self.loss.per_sample is None:  # a custom loss gives per-sample values itself
            with torch.no_grad():
                losses = reduce_to_samples(self.loss.train(outputs, targets), len(indices))
        self.recorder.record(self.step, self.epoch, indices, losses, outputs, targets)
        self.step += 1
        if self.recorder.full or time.monotonic() >= self._next_flush:
            self.flush()

    def position(self) -> dict[str, Any]:
        """Where the run stands, for a saved session: the epoch, the step, the batches of this epoch
        already trained on and how the epoch drew its order (None before it has)."""
        return {"epoch": self.epoch, "step": self.step, "batches_done": self.batches_done,
                "epoch_draw": self.sampler.draw_in_effect}

    def rng_now(self) -> dict[str, Any]:
        """The RNG states training goes on from (a resumed run's saved ones until they are back)."""
        return self._pending_rng if self._pending_rng is not None else self.sampler.rng_states()

    def resume_at(self, position: dict[str, Any], rng: dict[str, Any]) -> None:
        """Continue from a saved :meth:`position` and :meth:`rng_now`: the epoch under way is
        replayed in its order from the next batch on, and the RNG states of the saved step come
        back once that order is drawn (at once when the epoch had not drawn it yet)."""
        self.epoch, self.step = position["epoch"], position["step"]
        self.ctl.step = self.step
        self.batches_done = position["batches_done"]
        if position["epoch_draw"] is None:
            self.sampler.set_rng_states(rng)
            return

        def put_back() -> None:
            self.sampler.set_rng_states(rng)
            self._pending_rng = None

        self._pending_rng = rng
        self.sampler.replay(position["epoch_draw"], position["batches_done"], put_back)

    def alongside(self, step: Callable[[], bool], on_done: Callable[[], None]) -> None:
        """Run ``step`` after each of the run's steps until it returns True, then ``on_done``
        (a fork that alternates with the run). Call on the trainer thread."""
        self._alongside.append((step, on_done))

    def _step_alongside(self) -> None:
        for job in list(self._alongside):
            if job[0]():
                self._alongside.remove(job)
                job[1]()

    def finish_alongside(self) -> None:
        """Complete what alternates with the run, once the run itself has ended."""
        while self._alongside:
            self._step_alongside()

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in an epoch: its batches, fewer when gradients accumulate."""
        return -(-len(self.loader) // self.schedule.accumulate)

    def _reached_max_steps(self) -> bool:
        return self.schedule.max_steps is not None and self.step >= self.schedule.max_steps

    def flush(self) -> None:
        """Fold recorded steps into the store and update the throughput estimate; with fp16, note the
        steps the GradScaler skipped since the last flush (its scale halves at each)."""
        before = self.recorder.samples
        skipped = self.guard.skipped() if self.guard.mode == DEVICE else []
        try:
            self.recorder.flush()
        except NonFiniteLossError as exc:
            if not skipped:
                raise
            raise NonFiniteLossError(halted_message(skipped[0][1], skipped[0][0], True, exc)) from None
        if skipped:
            self._skipped_on_device(skipped)
        if self.scaler is not None:
            self._note_overflows(self.scaler.get_scale())
        now = time.monotonic()
        self._clock_samples += self.recorder.samples - before
        elapsed = now - self._clock
        if elapsed > 0.05 and self._clock_samples:
            rate = self._clock_samples / elapsed
            self.samples_per_sec = rate if self.samples_per_sec is None else 0.7 * self.samples_per_sec + 0.3 * rate
            self._clock, self._clock_samples = now, 0
        self._next_flush = now + self.flush_seconds
        self.on_flush()

    def _skipped_on_device(self, skipped: list[tuple[int, str]]) -> None:
        """Steps the fused optimizer skipped since the last flush: stop naming the first, or note each."""
        self.nonfinite = self.nonfinite or skipped[0]
        if self.recorder.stop_on_nonfinite:
            step, what = skipped[0]
            raise NonFiniteLossError(halted_message(what, step, True))
        for step, what in skipped:
            self.ctl.note("nonfinite_skipped", at=step, what=what)

    def close(self) -> None:
        """The run is over: unhook the recorder and let the loader's persistent workers go (a
        DataLoader keeps them in its cached iterator for as long as it lives)."""
        self.recorder.close()
        if self.loader.persistent_workers:
            self.loader._iterator = None

    def note_scale(self) -> None:
        """Take the GradScaler's scale as it is now (a resumed run's) as the last one seen."""
        self._scale = None if self.scaler is None else self.scaler.get_scale()

    def _note_overflows(self, scale: float) -> None:
        last, self._scale = self._scale, scale
        if last is not None and scale < last:
            skipped = round(math.log2(last / scale))
            self.ctl.note("amp_overflow", skipped=skipped, scale=scale,
                          message=f"{skipped} step(s) had inf/NaN gradients and were skipped; loss scale {scale:g}")

    def restart_clock(self) -> None:
        """Leave pauses and evaluations out of the throughput estimate."""
        self._clock, self._clock_samples = time.monotonic(), 0


def mixed_precision(precision: str, device: torch.device) -> tuple[Callable[[], Any], torch.amp.GradScaler | None]:
    """The context the forward pass runs in, and the gradient scaler (fp16 only), for ``precision``."""
    if precision == "32":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    autocast = functools.partial(torch.autocast, device.type, dtype=dtype)
    return autocast, torch.amp.GradScaler(device.type) if precision == "fp16" else None

