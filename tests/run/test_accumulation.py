"""Gradient accumulation: ``accumulate=k`` batches per optimizer step, per-sample losses for every
batch, control at optimizer-step boundaries, the same weights as the plain accumulation loop."""

from __future__ import annotations

import torch
from conftest import classification_data, same_weights, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session


def accumulation_loop(model, loader, k: int, epochs: int) -> int:
    """The plain accumulation loop; a last, shorter group steps at the epoch's end (as Lightning does)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    steps = 0
    for _ in range(epochs):
        for i, (x, y) in enumerate(loader):
            if i % k == 0:
                optimizer.zero_grad(set_to_none=True)
            (nn.functional.cross_entropy(model(x), y) / k).backward()
            if (i + 1) % k == 0 or i + 1 == len(loader):
                optimizer.step()
                steps += 1
    return steps


def test_accumulated_steps_train_as_the_plain_accumulation_loop():
    data = classification_data(200)  # 13 batches of 16: groups of 4, 4, 4 and 1
    model, twin = small_model(), small_model()
    loader = lambda: DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(5))  # noqa: E731
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss(),
                      loader(), max_epochs=3, accumulate=4, recluster_seconds=None, health_every=None)
    assert session.total_steps == 3 * 4
    session.run()
    steps = accumulation_loop(twin, loader(), 4, 3)
    assert session.global_step == steps == 12
    assert same_weights(model, twin)
    frame = session.slice()
    assert (frame["seen"] == 3).all(), "every batch's samples are recorded"
    history = session.history
    assert list(history["step"]) == list(range(12)), "one history row per optimizer step"


def test_pause_and_step_count_optimizer_steps():
    data = classification_data(256)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=8), max_epochs=100, accumulate=4, recluster_seconds=None)
    session.start(paused=True)
    try:
        session.step(3)
        assert session.global_step == 3 and session.status == "paused"
        assert int(session.store.seen.sum()) == 3 * 4 * 8, "three steps of four batches each"
    finally:
        session.stop()
