"""A model wrapped in torch.compile trains, records per-sample losses, pauses and saves; the
feature hook does not break its graph."""

from __future__ import annotations

import torch
import torch._dynamo
from conftest import small_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session
from onthefly_nb.persist.weights import cloned


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_model(dim=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def images(n: int = 256) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 4, generator=g)  # image-shaped: the penultimate features are captured
    return TensorDataset(x, (x.flatten(1) @ torch.randn(8, 3, generator=g)).argmax(1))


def test_a_compiled_model_trains_records_pauses_and_saves_without_graph_breaks(tmp_path):
    torch.compiler.reset()
    torch._dynamo.utils.counters.clear()
    model = torch.compile(Flat(), backend="aot_eager")  # the same tracing as inductor, without a C++ build
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(images(), batch_size=16, shuffle=True), max_epochs=50, recluster_seconds=None)
    session.start(paused=True)
    try:
        session.step(40)
        assert session.global_step == 40 and session.status == "paused"
        session.export(tmp_path / "compiled.zip")
    finally:
        session.stop()
    assert int(session.store.seen.sum()) == 40 * 16
    assert len(session.parts.records.features) > 0, "features were captured through the compiled model"
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] <= 4, "a graph for capturing steps and one for the others, not one a step"
    uncompiled = Flat()
    loaded = Session.load(tmp_path / "compiled.zip", model=uncompiled,
                          optimizer=torch.optim.SGD(uncompiled.parameters(), lr=0.1), loss_fn=nn.CrossEntropyLoss(),
                          train_loader=DataLoader(images(), batch_size=16))
    assert loaded.global_step == 40
    trained = cloned(session.model.state_dict())  # keyed as the plain model's
    assert trained.keys() == uncompiled.state_dict().keys()
    assert all(torch.equal(uncompiled.state_dict()[k], v) for k, v in trained.items())
