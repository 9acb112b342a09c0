"""Your own loop, tracked: ``session.track()`` hands it index-keyed batches, records the losses of
the outputs it computes, and pauses, steps and stops it at its step boundaries."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.errors import StateError


def own_loop(session: Session, model: nn.Module, optimizer: torch.optim.Optimizer, steps: list[int]) -> None:
    loss_fn = nn.CrossEntropyLoss()
    with session.track() as run:
        for indices, (x, y) in run.batches():
            optimizer.zero_grad(set_to_none=True)
            outputs = model(x)
            loss_fn(outputs, y).backward()
            optimizer.step()
            run.record(indices, outputs, y)
            steps.append(session.global_step)


def test_a_tracked_loop_trains_as_written_and_records_every_sample_under_its_index():
    data = classification_data(160)
    model, twin = small_model(), small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # frozen: each loss is checkable
    loader = DataLoader(data, batch_size=16, shuffle=True)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), loader, DataLoader(data, batch_size=80), max_epochs=3,
                      recluster_seconds=None)
    steps: list[int] = []
    own_loop(session, model, optimizer, steps)
    assert session.status == "finished" and session.global_step == 30 and steps == list(range(1, 31))
    frame = session.slice().set_index("index").sort_index()
    x, y = data.tensors
    with torch.no_grad():
        expected = nn.functional.cross_entropy(twin(x), y, reduction="none")
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), expected, rtol=1e-5, atol=1e-6)
    assert (frame["seen"] == 3).all() and len(session.metrics["validation"]) == 3


def test_pause_step_and_stop_reach_the_loop_at_its_boundaries():
    data = classification_data(256)
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8), max_epochs=1000,
                      recluster_seconds=None)
    steps: list[int] = []
    loop = threading.Thread(target=own_loop, args=(session, model, optimizer, steps))
    loop.start()
    while session.global_step < 10:
        time.sleep(0.01)
    session.pause()
    paused_at = session.global_step
    time.sleep(0.3)
    assert session.status == "paused" and session.global_step == paused_at == len(steps)
    session.step(5)
    assert session.global_step == paused_at + 5
    session.stop()
    loop.join(30)
    assert not loop.is_alive() and session.status == "stopped"


def test_batches_outside_the_block_are_refused_and_an_error_fails_the_run():
    data = classification_data(64)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=8), recluster_seconds=None)
    with pytest.raises(StateError, match="inside `with session.track"):
        next(session.track().batches())
    with pytest.raises(ValueError, match="boom"):
        with session.track() as run:
            for _indices, _batch in run.batches():
                raise ValueError("boom")
    assert session.status == "failed" and "boom" in session.traceback
