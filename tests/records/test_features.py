"""Penultimate features of hard samples: captured by a forward hook, kept within a budget."""

from __future__ import annotations

import numpy as np
import torch
from conftest import planted_data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session
from onthefly_nb.records import recorder
from onthefly_nb.records.features import FeatureBank, PenultimateCapture


def test_bank_keeps_the_newest_rows_within_capacity():
    bank = FeatureBank(size=100, dims=2, max_bytes=4 * 10)  # room for 10 rows of float16 x 2
    assert bank.capacity == 10
    bank.put(np.arange(8), np.arange(16, dtype=np.float32).reshape(8, 2))
    bank.put(np.array([3, 50, 51, 52, 3]), np.array([[9, 9], [1, 1], [2, 2], [3, 3], [7, 7]], np.float32))
    assert len(bank) == 10
    have, rows = bank.get(np.array([0, 3, 50, 52, 99]))
    assert have.tolist() == [False, True, True, True, False]  # 0 was the oldest and made way
    np.testing.assert_array_equal(rows, [[7, 7], [1, 1], [3, 3]])  # index 3 keeps its last row


def test_capture_projects_wide_layers_and_follows_the_last_linear():
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 3))
    capture = PenultimateCapture(model)
    capture.attach()
    model(torch.randn(5, 10, 10))
    features = capture.take()
    assert features.shape == (5, 64) and capture.take() is None


def test_image_like_inputs_cluster_on_penultimate_features():
    data, planted = planted_data(3000)
    x, y = data.tensors
    images = TensorDataset(x.repeat(1, 12).reshape(-1, 1, 8, 9), y)  # 72 values a sample: not "small vectors"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(72, 16), nn.ReLU(), nn.Linear(16, 2))
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(images, batch_size=64, shuffle=True), max_epochs=4, recluster_seconds=None)
    session.start().wait(timeout=120)
    assert "x0" not in session.slice().columns
    assert len(session.parts.records.features) > 0
    result = session.cluster()
    assert result.source == "penultimate features"
    have, _ = session.parts.records.features.get(result.indices)
    assert have.all(), "only samples with captured features are clustered"
    frame = session.slice("cluster >= 0")
    frame["planted"] = planted[frame["index"]]
    best = frame.groupby("cluster")["planted"].sum().max()
    # Features are captured for one batch in four, so only part of the planted region is
    # clustered; those samples land in one cluster of the hidden space (with boundary samples).
    assert frame["planted"].sum() >= 0.3 * planted.sum()
    assert best >= 0.8 * frame["planted"].sum(), frame.groupby("cluster")["planted"].agg(["sum", "count"])


def test_the_hook_leaves_the_model_when_the_run_ends():
    model = nn.Sequential(nn.Flatten(), nn.Linear(72, 16), nn.ReLU(), nn.Linear(16, 2))
    data = TensorDataset(torch.randn(64, 1, 8, 9), torch.randint(0, 2, (64,)))
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=16), max_epochs=1)
    assert len(model[3]._forward_hooks) == 0, "a session that never runs leaves the model alone"
    session.start(paused=True)
    session.pause()
    assert len(model[3]._forward_hooks) == 1
    session.resume().wait(timeout=30)
    assert len(model[3]._forward_hooks) == 0


def test_banked_features_are_those_of_their_own_step_across_flushes(monkeypatch):
    """Captured features wait in reused slots until a flush; every banked row is still the
    activation of its own sample (a frozen model makes them checkable)."""
    torch.manual_seed(0)
    x, y = torch.randn(512, 1, 6, 6), torch.randint(0, 2, (512,))  # images: features are captured
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 2))
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), max_epochs=6,
                      recluster_seconds=None, health_every=None)
    monkeypatch.setattr(recorder, "MAX_PENDING_STEPS", 5)  # a flush every 5 steps: the slots are reused
    flushes = []
    session.parts.run.loop.on_flush = lambda: flushes.append(session.global_step)
    session.run()
    bank = session.parts.records.features
    assert len(flushes) > 15 and len(bank) > 50
    indices = np.arange(512)
    have, rows = bank.get(indices)
    with torch.no_grad():
        expected = model[:3](x).numpy()[have]
    np.testing.assert_allclose(rows, expected, rtol=1e-2, atol=1e-3)  # the bank keeps float16
