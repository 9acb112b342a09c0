"""Plan cards: proposals from the loss history, decisions, execution at a step boundary, events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.errors import PlanError, StateError
from onthefly_nb.records.store import STEP_COLUMNS, StepHistory
from onthefly_nb.steering.plans import PlanAction, PlanBook
from onthefly_nb.steering.watch import SPIKE_WINDOW, PlanWatch, propose_fork, replaced


def history_rows(means: list[float], start: int = 0) -> np.ndarray:
    rows = np.zeros((len(means), len(STEP_COLUMNS)))
    rows[:, STEP_COLUMNS.index("step")] = np.arange(start, start + len(means))
    rows[:, STEP_COLUMNS.index("mean")] = means
    rows[:, STEP_COLUMNS.index("p50")] = means
    return rows


class Book:
    """A PlanBook whose log and boundary are plain lists (what a Session wires to its own)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.book = PlanBook(lambda kind, step, **data: self.events.append((kind, data)),
                             submit=lambda action: action(), step=lambda: 0)


def test_a_spike_proposes_one_lower_lr_card_per_spike():
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=False)
    history.extend(history_rows([1.0] * (SPIKE_WINDOW + 5)))
    watch.observe(55)
    assert rec.book.all() == []
    history.extend(history_rows([1.1, 4.0, 1.0], start=55))  # one noisy batch is not a spike
    watch.observe(58)
    assert rec.book.all() == []
    history.extend(history_rows([1.1, 4.0], start=58))  # two steps in a row, across two flushes
    watch.observe(60)
    history.extend(history_rows([5.0, 1.0], start=60))
    watch.observe(62)
    plans = rec.book.all()
    assert [p["kind"] for p in plans] == ["lower_lr", "health_check"]
    assert "step 60" in plans[0]["evidence"] and "5.0x" in plans[0]["evidence"]
    assert plans[0]["params"] == {"factor": 0.5}
    history.extend(history_rows([90.0], start=62))  # another spike while the card is open
    watch.observe(63)
    assert len(rec.book.all()) == 2


def test_one_wild_step_is_a_spike_by_itself():
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=False)
    history.extend(history_rows([1.0] * 60))
    watch.observe(60)
    history.extend(history_rows([12.0, 1.0], start=60))
    watch.observe(62)
    assert [p["kind"] for p in rec.book.all()] == ["lower_lr", "health_check"]


def test_batch_noise_at_a_low_loss_is_not_a_spike():
    """Ten runs of 400 steps of heavy-tailed batch means (lone batches above 3x the median): no card."""
    lone_outliers = 0
    for seed in range(10):
        rec, history = Book(), StepHistory()
        watch = PlanWatch(rec.book, history, can_validate=False)
        noisy = np.random.default_rng(seed).lognormal(np.log(0.03), 0.4, 400)  # means of 64 heavy-tailed losses
        for start in range(0, 400, 20):
            history.extend(history_rows(list(noisy[start:start + 20]), start=start))
            watch.observe(start + 20)
        lone_outliers += int((noisy > 3 * np.median(noisy)).sum())
        assert rec.book.all() == [], f"seed {seed}"
    assert lone_outliers >= 5, "the test needs batches above 3x the median"


def test_a_converged_loss_proposes_no_validation():
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=True)
    history.extend(history_rows([1.0] * 10 + [1e-5] * 60 + [1e-7] * 60))
    watch.validated(70)
    watch.observe(130)
    assert [p["kind"] for p in rec.book.all()] == []


def test_progress_proposes_validation_which_a_validation_makes_moot():
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=True)
    history.extend(history_rows(list(np.linspace(2.0, 1.0, 80))))
    watch.observe(80)
    (plan,) = rec.book.all()
    assert plan["kind"] == "validate_now" and "fell" in plan["evidence"]
    watch.validated(81)
    assert rec.book.all()[0]["status"] == "expired"
    assert ("plan_expired", {"plan": plan["id"], "plan_kind": "validate_now",
                             "reason": "a validation ran at step 81"}) in rec.events


def test_bad_decisions_are_refused_with_what_to_do():
    rec = Book()
    rec.book.register({"lower_lr": PlanAction(lambda plan: "done")})
    from onthefly_nb.steering.plans import ParamSpec

    plan = rec.book.propose("lower_lr", "Lower", "evidence", {"factor": 0.5},
                            {"factor": ParamSpec("factor", 0.01, 1.0, 0.05)})
    with pytest.raises(PlanError, match="no plan 'plan-9'; the plans are: plan-1"):
        rec.book.decide("plan-9", "approve")
    with pytest.raises(PlanError, match=r"must lie in \[0.01, 1.0\], got 3"):
        rec.book.decide(plan.id, "approve", {"factor": 3})
    with pytest.raises(PlanError, match="has no parameter 'lr'; it has: factor"):
        rec.book.decide(plan.id, "approve", {"lr": 0.1})
    with pytest.raises(PlanError, match="must be a number"):
        rec.book.decide(plan.id, "approve", {"factor": "half"})
    with pytest.raises(PlanError, match="'approve' or 'reject'"):
        rec.book.decide(plan.id, "maybe")
    assert rec.book.all()[0]["status"] == "proposed", "a refused decision changes nothing"
    rec.book.decide(plan.id, "reject")
    with pytest.raises(StateError, match="already rejected"):
        rec.book.decide(plan.id, "approve")


def spiking_session(**kwargs) -> Session:
    data = classification_data(512)
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return Session(model, opt, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8, shuffle=True),
                   max_epochs=100, recluster_seconds=None, **kwargs)


def test_an_approved_lower_lr_card_runs_at_a_step_boundary():
    session = spiking_session()
    try:
        session.start(paused=True)
        session.step(120)
        for group in session.optimizer.param_groups:  # the user (or a bug) sets a wild learning rate
            group["lr"] = 40.0
        session.step(20)
        plans = [p for p in session.plans if p["kind"] == "lower_lr"]
        assert plans, f"no lower-LR card after a spike; events: {[e['kind'] for e in session.events][-10:]}"
        result = session.approve(plans[0]["id"], factor=0.01).result(timeout=10)
        assert result == "lr 40 -> 0.4"
        assert session.optimizer.param_groups[0]["lr"] == pytest.approx(0.4)
        kinds = [e["kind"] for e in session.events]
        assert kinds.index("plan_approved") < kinds.index("lr_changed") < kinds.index("plan_executed")
        executed = next(e for e in session.events if e["kind"] == "plan_executed")
        assert executed["step"] == session.global_step, "executed at the boundary of the paused run"
        assert session.plans[0]["status"] == "executed" and session.plans[0]["params"] == {"factor": 0.01}
    finally:
        session.stop()


def test_an_approved_validate_card_validates_mid_epoch():
    data = classification_data(2048)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=256),
                      max_epochs=2, recluster_seconds=None)
    try:
        session.start(paused=True)
        session.step(150)
        plans = [p for p in session.plans if p["kind"] == "validate_now"]
        assert plans, "no validation card though the loss fell"
        assert session.approve(plans[0]["id"], wait=True).startswith("validation loss")
        (result,) = session.metrics["validation"]
        assert result["step"] == 150 and result["epoch"] == 0
    finally:
        session.stop()


def test_a_spike_also_proposes_clipping_which_bounds_later_gradients():
    session = spiking_session()
    try:
        session.start(paused=True)
        session.step(120)
        for group in session.optimizer.param_groups:
            group["lr"] = 3.0  # wild enough to spike, not enough to overflow
        session.step(10)
        card = next(p for p in session.plans if p["kind"] == "clip_gradients")
        assert "gradient norm was" in card["evidence"] and card["params"]["max_norm"] > 0
        assert "clipped to norm 0.5" in card.approve(wait=True, max_norm=0.5)
        for group in session.optimizer.param_groups:
            group["lr"] = 0.05
        session.step(3)
        assert session.status == "paused"
        assert session.parts.run.gradient_norm() <= 0.5 + 1e-4, "the last step's gradients were clipped"
        assert [e["kind"] for e in session.events].count("clipping") == 1
        card = next(p for p in session.plans if p["kind"] == "health_check")
        result = card.approve(wait=True)
        assert result == "every check passes" or ": warn (" in result or ": fail (" in result, result
        assert session.health_report["step"] == session.global_step
        assert [e["kind"] for e in session.events][-2:] == ["health", "plan_executed"]
    finally:
        session.stop()


def test_a_card_expires_once_the_run_moves_on_and_approving_it_then_is_refused():
    events: list[tuple] = []
    now, ran = [0], []
    book = PlanBook(lambda kind, step, **data: events.append((kind, data)), submit=lambda action: action(),
                    step=lambda: now[0])
    book.register({"lower_lr": PlanAction(lambda plan: ran.append(plan.id) or "done")})
    card = book.propose("lower_lr", "Lower the learning rate", "a spike at step 0", lifetime=100)
    assert card.expires == 100 and book.cards()[0]["expires"] == 100
    now[0] = 100
    book.sweep()
    assert book.get(card.id).status == "proposed", "it holds through its last step"
    now[0] = 101
    with pytest.raises(StateError, match="expired: proposed at step 0, and the run has moved on to step 101"):
        book.decide(card.id, "approve")
    assert ran == [] and book.get(card.id).status == "expired" and events[-1][0] == "plan_expired"


def test_a_card_whose_evidence_failed_expires_at_the_next_sweep():
    book = Book().book
    done = {"yes": False}
    book.register({"merge": PlanAction(lambda plan: "merged",
                                       outdated=lambda plan: "it was merged another way" if done["yes"] else None)})
    card = book.propose("merge", "Merge fork-1", "trained 300 steps", lifetime=None)
    book.sweep()
    assert book.get(card.id).status == "proposed" and card.expires is None
    done["yes"] = True
    book.sweep()
    assert book.get(card.id).status == "expired" and book.get(card.id).result == "it was merged another way"


@pytest.mark.parametrize("median", [0.0, 1e-9])
def test_a_spike_from_a_loss_near_zero_is_a_spike_and_no_ratio_is_absurd(median):
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=False)
    history.extend(history_rows([2.0] * 10 + [median] * 60))  # learnt, then memorised to (almost) 0
    watch.observe(70)
    assert rec.book.all() == []
    history.extend(history_rows([1743.0, median], start=70))
    watch.observe(72)
    plans = rec.book.all()
    assert [p["kind"] for p in plans] == ["lower_lr", "health_check"]
    assert "against a median of" in plans[0]["evidence"] and "x the median" not in plans[0]["evidence"]


def test_noise_far_below_the_starting_loss_is_not_a_spike():
    rec, history = Book(), StepHistory()
    watch = PlanWatch(rec.book, history, can_validate=False)
    history.extend(history_rows([2.0] * 10 + [0.0] * 60))
    watch.observe(70)
    history.extend(history_rows([0.01, 0.02, 0.01], start=70))  # 0.1 of the start is the floor
    watch.observe(73)
    assert rec.book.all() == []


def test_a_new_clustering_keeps_a_fork_card_while_its_cluster_stands_out_and_expires_it_after():
    def summary(cluster: int) -> pd.DataFrame:
        return pd.DataFrame({"size": [40], "mean_loss": [3.0], "loss_vs_median": [6.0]}, index=[cluster])

    book = Book().book
    indices = np.arange(200)
    labels = np.where(indices < 40, 0, 1)  # cluster 0: samples 0..39
    card = propose_fork(book, summary(0), indices, labels, step=100)
    assert card is not None and list(card.context["rows"]) == list(range(40))
    shifted = np.where(indices < 45, 2, 1)  # the same samples and five more, under another number
    book.expire("fork", "replaced", lambda plan: replaced(plan, summary(2), indices, shifted))
    assert book.get(card.id).status == "proposed", "the same region: the card stands"
    elsewhere = np.where(indices >= 150, 3, 1)
    book.expire("fork", "replaced", lambda plan: replaced(plan, summary(3), indices, elsewhere))
    assert book.get(card.id).status == "expired"
