"""Pause, resume, step and stop take effect at step boundaries and never deadlock."""

from __future__ import annotations

import random
import time

import pytest
import torch


def params_snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_pause_holds_every_step_and_resume_continues_from_the_next(session_factory):
    session = session_factory(max_epochs=200)
    session.start()
    time.sleep(0.1)
    session.pause()
    k = session.global_step
    assert session.status == "paused"
    assert k > 0
    weights = params_snapshot(session.model)
    seen = int(session.store.seen.sum())
    time.sleep(0.4)
    assert session.global_step == k, "a step ran while paused"
    assert same(weights, params_snapshot(session.model)), "weights changed while paused"
    assert int(session.store.seen.sum()) == seen
    assert session.history["step"].iloc[-1] == k - 1, "the store misses steps taken before the pause"

    session.step(1)  # exactly one more step: step k+1
    assert session.global_step == k + 1
    assert session.status == "paused"
    history = session.history
    assert history["step"].iloc[-1] == k, "the step after the pause is not k+1"
    assert history["step"].is_monotonic_increasing and history["step"].is_unique

    session.resume()
    deadline = time.time() + 10
    while session.global_step <= k + 1 and time.time() < deadline:
        time.sleep(0.01)
    assert session.global_step > k + 1
    assert session.status == "running"
    control = [e["kind"] for e in session.events if e["kind"] != "epoch_end"]
    assert control[:5] == ["started", "paused", "resumed", "paused", "resumed"]


def test_stop_while_paused_ends_cleanly(session_factory):
    session = session_factory(max_epochs=200)
    session.start()
    session.pause()
    k = session.global_step
    session.stop()
    assert session.status == "stopped"
    assert session.global_step == k
    assert session.done
    assert session.events[-1]["kind"] == "stopped"
    session.wait()  # a stopped run is not an error


def test_start_paused_runs_no_step_until_asked(session_factory):
    session = session_factory()
    session.start(paused=True)
    session.pause()  # already paused at the boundary before step 1
    time.sleep(0.1)
    assert session.global_step == 0
    session.step(5)
    assert session.global_step == 5
    assert len(session.history) == 5
    assert int(session.store.seen.sum()) == 5 * 8


def test_step_counts_from_where_it_was_paused(session_factory):
    session = session_factory()
    session.start(paused=True)
    for expected in (3, 4, 11):
        session.step(expected - session.global_step)
        assert session.global_step == expected


def test_run_ends_finished_after_max_epochs(session_factory):
    session = session_factory(n=64, max_epochs=3)
    session.start().wait(timeout=30)
    assert session.status == "finished"
    assert session.global_step == 3 * 8
    assert session.epoch == 3
    assert (session.store.seen == 3).all()


def test_step_rejects_bad_counts(session_factory):
    session = session_factory()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="whole number"):
            session.step(bad)


@pytest.mark.parametrize("seed", range(200))
def test_random_control_sequences_never_deadlock(session_factory, seed):
    rng = random.Random(seed)
    session = session_factory(n=64, max_epochs=rng.choice([1, 3, 1000]))
    session.start(paused=rng.random() < 0.3)
    for _ in range(rng.randint(1, 8)):
        op = rng.choice(["pause", "resume", "step", "stop", "sleep", "validate_none"])
        if op == "pause":
            session.pause(timeout=10)
            assert session.status in ("paused", "finished", "stopped")
        elif op == "resume":
            session.resume()
        elif op == "step":
            before = session.global_step
            session.step(rng.randint(1, 5), timeout=10)
            assert session.status in ("paused", "finished", "stopped")
            assert session.global_step >= before
        elif op == "stop":
            session.stop(timeout=10)
            assert session.status in ("stopped", "finished")
        else:
            time.sleep(rng.random() * 0.01)
    session.stop(timeout=10)
    assert session.done
    assert session.status in ("stopped", "finished")
    kinds = [e["kind"] for e in session.events]
    assert kinds[0] == "started" and kinds[-1] in ("stopped", "finished")
    assert [e["seq"] for e in session.events] == list(range(len(kinds)))


def test_a_new_session_on_the_same_model_stops_the_old_one(session_factory):
    from onthefly_nb import Session

    first = session_factory(max_epochs=1000)
    first.start()
    second = Session(first.model, first.optimizer, first.loss_fn, first.train_loader, max_epochs=1)
    assert first.status == "stopped" and "superseded" in [e["kind"] for e in first.events]
    other = session_factory(max_epochs=1000).start()  # a different model trains on
    Session(second.model, second.optimizer, second.loss_fn, second.train_loader)
    assert other.status == "running"
    other.stop()


def test_an_action_asked_for_while_another_runs_on_a_paused_run_runs_too(session_factory):
    """An Export clicked during a (slow) determinism check of a paused run used to wait forever."""
    session = session_factory(n=64, max_epochs=100)
    session.start(paused=True)
    controller = session.parts.run.controller
    later: list = []
    first = controller.submit(lambda: later.append(controller.submit(lambda: "second")) or "first")
    assert first.result(timeout=10) == "first"
    assert later[0].result(timeout=10) == "second"
    assert session.status == "paused" and session.global_step == 0
