"""Watchers that propose plan cards: from the per-step loss history (a spike: lower the learning
rate, clip, check health; progress: validate now), and after a clustering (fork a specialist on
the standout cluster, sample it more often)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..records.store import STEP_COLUMNS, StepHistory
from .plans import ParamSpec, Plan, PlanBook

SPIKE_WINDOW = 50  # steps of history a spike is measured against
SPIKE_FACTOR = 3.0  # a step whose mean loss exceeds this times the window's median is a spike
SPIKE_MADS = 10.0  # ... and exceeds the median by this many median absolute deviations (batch noise)
SPIKE_ALONE = 10.0  # a single step this many times the median is a spike by itself; else two in a row
SPIKE_COOLDOWN = 200  # steps before another lower-LR card
SPIKE_FLOOR = 0.1  # ... and exceeds the median by this share of the loss at the start (a median of 0 has no scale)
LARGEST_RATIO = 1000.0  # a ratio above this is shown as the two values: "1.7e12x" tells nothing
VALIDATE_IMPROVEMENT = 0.2  # relative drop of the median train loss since the last validation
VALIDATE_MIN_STEPS = 50
CONVERGED = 1e-3  # a train loss below this fraction of its start has converged: no more validate cards

_MEAN = STEP_COLUMNS.index("mean")
_MEDIAN = STEP_COLUMNS.index("p50")
_STEP = STEP_COLUMNS.index("step")


class PlanWatch:
    """Proposes plans from the per-step history: lower the learning rate after a loss spike, and
    validate now once the training loss has improved markedly since the last validation."""

    def __init__(self, book: PlanBook, history: StepHistory, can_validate: bool,
                 gradient_norm: Callable[[], float | None] | None = None) -> None:
        self._book = book
        self._gradient_norm = gradient_norm  # the last step's total gradient norm, for a clipping card
        self._history = history
        self._can_validate = can_validate
        self._last_spike = -SPIKE_COOLDOWN
        self._validated_median: float | None = None  # the median train loss at the last validation
        self._validated_step = 0
        self._observed = 0  # history rows looked at so far
        self._was_above = False  # whether the last step looked at was above the spike threshold

    def observe(self, step: int) -> None:
        """Look at the history rows added since the last call (on the trainer thread, after a flush)."""
        total, new = len(self._history), len(self._history) - self._observed
        self._observed = total
        if new <= 0 or total <= SPIKE_WINDOW:
            return
        recent = self._history.last(SPIKE_WINDOW + new)
        self._watch_spike(recent[:-new], recent[-new:], step)
        if self._can_validate and step - self._validated_step >= VALIDATE_MIN_STEPS:
            self._watch_progress(recent, step)

    def _watch_spike(self, before: np.ndarray, new: np.ndarray, step: int) -> None:
        if len(before) < SPIKE_WINDOW // 2:
            return
        means = before[:, _MEAN]
        baseline = float(np.median(means))
        spread = float(np.median(np.abs(means - baseline)))  # batch-to-batch noise (MAD)
        start = float(np.median(self._history.first(10)[:, _MEAN]))
        floor = SPIKE_FLOOR * start if math.isfinite(start) and start > 0 else 1e-6
        threshold = baseline + max((SPIKE_FACTOR - 1) * baseline, SPIKE_MADS * spread, floor)
        values = np.nan_to_num(new[:, _MEAN], nan=np.inf)
        above = values > threshold
        # one wild step, or two in a row above the threshold: a lone noisy batch is not a spike
        lasting = above[1:] & above[:-1] if len(above) > 1 else np.zeros(0, bool)
        alone = values > max(SPIKE_ALONE * baseline, threshold)
        spiked = bool(alone.any()) or bool(lasting.any()) or bool(above[0] and self._was_above)
        self._was_above = bool(above[-1])
        worst = int(np.argmax(values))
        latest = float(new[worst, _MEAN])
        if not spiked or step - self._last_spike < SPIKE_COOLDOWN or self._book.open("lower_lr"):
            return
        self._last_spike = step
        evidence = (f"the mean loss of step {int(new[worst, _STEP])} was {latest:.4g}, {against(latest, baseline)} "
                    f"of the {len(before)} steps before it (noise there: {spread:.2g})")
        propose_lower_lr(self._book, evidence)
        if self._gradient_norm is not None:
            propose_clip(self._book, evidence, self._gradient_norm())
        if not self._book.open("health_check"):
            self._book.propose("health_check", "Run a health check",
                               f"{evidence}; a check of the weights and each layer's gradients tells where it broke")

    def _watch_progress(self, recent: np.ndarray, step: int) -> None:
        if self._book.open("validate_now"):
            return
        median = float(np.median(recent[-10:, _MEDIAN]))
        start = float(np.median(self._history.first(10)[:, _MEDIAN]))
        reference = start if self._validated_median is None else self._validated_median
        converged = reference <= CONVERGED * start  # relative changes of a loss near 0 mean little
        if converged or median >= (1 - VALIDATE_IMPROVEMENT) * reference:
            return
        since = "the start" if self._validated_median is None else f"the last validation at step {self._validated_step}"
        self._book.propose(
            "validate_now", "Run validation now",
            f"the median train loss fell {1 - median / reference:.0%} since {since} "
            f"({reference:.4g} to {median:.4g}); check that validation follows",
        )
        self._validated_step = step

    def validated(self, step: int) -> None:
        """Note a validation, so the next card compares against it; an open card to validate is moot."""
        self._book.expire("validate_now", f"a validation ran at step {step}")
        recent = self._history.last(10)
        if len(recent):
            self._validated_median = float(np.median(recent[:, _MEDIAN]))
        self._validated_step = step


def against(value: float, median: float) -> str:
    """``value`` as a multiple of ``median``, or beside it when the ratio would be absurd."""
    if median > 0 and value / median <= LARGEST_RATIO:
        return f"{value / median:.1f}x the median {median:.4g}"
    return f"against a median of {median:.4g}"


def propose_lower_lr(book: PlanBook, evidence: str) -> Plan | None:
    """A card to scale the learning rate down, unless one is open."""
    if book.open("lower_lr"):
        return None
    return book.propose("lower_lr", "Lower the learning rate", evidence,
                        {"factor": 0.5}, {"factor": ParamSpec("multiply the learning rate by", 0.01, 1.0, 0.05)})


def propose_clip(book: PlanBook, evidence: str, norm: float | None) -> Plan | None:
    """A card to clip gradient norms at half the last one, unless one is open or there is no norm."""
    if book.open("clip_gradients") or norm is None or not math.isfinite(norm) or norm <= 0:
        return None
    return book.propose("clip_gradients", "Clip gradients", f"{evidence}; the last step's gradient norm was {norm:.3g}",
                        {"max_norm": float(f"{norm / 2:.2g}")},
                        {"max_norm": ParamSpec("largest gradient norm", 1e-3, 1e4, 0.1)})


FORK_LOSS_RATIO = 3.0  # a cluster whose mean loss is this many times the median is worth a specialist
FORK_MIN_SIZE = 20


def _standout(summary: Any) -> tuple[int, str] | None:
    """The hardest cluster of a clustering, if it stands out enough to act on, with its evidence."""
    if summary is None or not len(summary):
        return None
    top = summary.iloc[0]
    ratio = float(top["loss_vs_median"])
    if not ratio >= FORK_LOSS_RATIO or int(top["size"]) < FORK_MIN_SIZE:
        return None
    labels = ", ".join(f"{k} ({v})" for k, v in top.get("top_labels", {}).items()) if "top_labels" in top else ""
    mean = float(top["mean_loss"])
    evidence = (f"{int(top['size'])} hard samples, mean loss {mean:.4g}, {against(mean, mean / ratio)} of all samples"
                + (f"; labels {labels}" if labels else ""))
    return int(summary.index[0]), evidence


SAME_REGION = 0.5  # Jaccard overlap above which a new clustering's standout is the card's cluster still


def replaced(plan: Plan, summary: Any, indices: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a new clustering no longer backs a fork or reweight card: its standout cluster (if
    any) shares less than half its samples with the card's."""
    found = _standout(summary)
    if found is None:
        return True
    rows, fresh = plan.context["rows"], indices[labels == found[0]]
    return len(np.intersect1d(rows, fresh)) / max(len(np.union1d(rows, fresh)), 1) < SAME_REGION


def propose_fork(book: PlanBook, summary: Any, indices: np.ndarray, labels: np.ndarray, step: int) -> Plan | None:
    """After a clustering: a card to fork a specialist on the hardest cluster, if it stands out."""
    found = _standout(summary)
    if found is None or book.open("fork"):
        return None
    cluster, evidence = found
    return book.propose(
        "fork", f"Fork a specialist on cluster {cluster}",
        f"cluster {cluster} of the clustering at step {step}: {evidence}",
        {"budget": 300, "general_share": 0.2},
        {"budget": ParamSpec("training steps", 10, 10_000, 10),
         "general_share": ParamSpec("share of general data per batch", 0.0, 0.9, 0.1)},
        context={"rows": indices[labels == cluster], "slice": f"cluster {cluster} (step {step})"},
    )


def propose_reweight(book: PlanBook, summary: Any, indices: np.ndarray, labels: np.ndarray,
                     step: int) -> Plan | None:
    """After a clustering: a card to sample the hardest cluster more often, if it stands out."""
    found = _standout(summary)
    if found is None or book.open("reweight"):
        return None
    cluster, evidence = found
    return book.propose(
        "reweight", f"Sample cluster {cluster} more often",
        f"cluster {cluster} of the clustering at step {step}: {evidence}; from the next epoch its samples are "
        f"drawn 'factor' times as often (with replacement)",
        {"factor": 3.0}, {"factor": ParamSpec("times as often", 1.0, 20.0, 0.5)},
        context={"rows": indices[labels == cluster], "slice": f"cluster {cluster} (step {step})"},
    )
