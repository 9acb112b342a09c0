"""Plotly figures of slices, the loss history, Data Maps and the cluster map."""

from __future__ import annotations

import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.dashboard.contract import CLUSTER_COLORS


@pytest.fixture(scope="module")
def session() -> Session:
    model = small_model(seed=1)
    return Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(classification_data(300), batch_size=30, shuffle=True), max_epochs=3,
                   recluster_seconds=None).start().wait(timeout=60)


def test_loss_histogram_overlays_the_slice(session):
    fig = session.figure("loss", slice="loss > q75")
    assert [t.name for t in fig.data] == ["all samples", f"slice ({len(session.slice('loss > q75'))})"]
    assert len(fig.data[0].x) == 300


def test_history_datamap_and_map(session):
    history = session.figure("history")
    assert history.data[-1].name == "median" and len(history.data[-1].x) == session.global_step
    datamap = session.figure("datamap")
    assert len(datamap.data[0].x) == 300
    with pytest.raises(ValueError, match="call session.cluster"):
        session.figure("map")
    session.cluster()
    cmap = session.figure("map")
    assert sum(len(t.x) for t in cmap.data) == len(session.clustering.indices)
    for trace in cmap.data:  # each cluster in the dashboard's colour (contract.CLUSTER_COLORS)
        cluster = int(trace.name.split()[-1])
        assert trace.marker.color == CLUSTER_COLORS[cluster % len(CLUSTER_COLORS)]
    with pytest.raises(ValueError, match="choose one of loss, history, datamap, map"):
        session.figure("pie")
