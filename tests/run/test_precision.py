"""Mixed precision: the forward pass under torch.autocast (bf16, or fp16 with a GradScaler),
per-sample losses kept in float32, skipped fp16 steps noted, the health check reading the scaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, same_weights, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import ConfigurationError, Session


def amp_loop(model, data, loss_fn, epochs: int, dtype: torch.dtype, device: str = "cpu") -> None:
    """The plain PyTorch AMP loop (torch.amp docs)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device) if dtype == torch.float16 else None
    for _ in range(epochs):
        for x, y in DataLoader(data, batch_size=16):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=dtype):
                loss = loss_fn(model(x), y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_trains_as_the_plain_amp_loop(precision, dtype):
    data = classification_data(192)
    model, twin = small_model(), small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=16), max_epochs=2, precision=precision, recluster_seconds=None)
    session.run()
    amp_loop(twin, data, nn.CrossEntropyLoss(), 2, dtype)
    assert same_weights(model, twin)
    frame = session.slice()
    assert len(frame) == 192 and frame["loss"].dtype == np.float32 and np.isfinite(frame["loss"]).all()


def test_per_sample_losses_are_float32_values_of_the_autocast_outputs():
    data = classification_data(128)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32), max_epochs=1, precision="bf16", recluster_seconds=None)
    session.run()
    x, y = data.tensors
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(x)
    expected = nn.functional.cross_entropy(outputs.float(), y, reduction="none").numpy()
    recorded = session.slice().set_index("index").sort_index()["loss"].to_numpy()
    np.testing.assert_allclose(recorded, expected, rtol=1e-6, atol=1e-6)


def test_fp16_steps_the_scaler_skips_are_noted_and_the_health_check_reads_its_scale():
    data = classification_data(256)
    model = small_model()
    huge = lambda outputs, targets: nn.functional.cross_entropy(outputs, targets) * 1e4  # noqa: E731 - overflows fp16
    session = Session(model, torch.optim.SGD(model.parameters(), lr=1e-6), huge, DataLoader(data, batch_size=16),
                      max_epochs=3, precision="fp16", recluster_seconds=None, health_every=None)
    session.run()
    overflows = [e for e in session.events if e["kind"] == "amp_overflow"]
    assert overflows and sum(e["skipped"] for e in overflows) >= 1
    assert "skipped" in overflows[0]["message"]
    health = session.health()
    scale = health[health["check"] == "loss scale"]
    assert len(scale) == 1 and scale["status"].iloc[0] in ("pass", "warn")


def test_an_unknown_precision_is_refused():
    with pytest.raises(ConfigurationError, match="precision must be one of 32, bf16, fp16"):
        Session(small_model(), None, nn.CrossEntropyLoss(), DataLoader(classification_data(16), batch_size=4),
                precision="fp8")


def test_an_fp16_run_saved_midway_continues_bit_for_bit(tmp_path):
    data = classification_data(192)

    def build(model, **kwargs):
        return Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                       DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3)),
                       max_epochs=2, precision="fp16", recluster_seconds=None, **kwargs)

    whole = small_model()
    build(whole, run_name="whole").run()
    half = small_model()
    first = build(half, run_name="first")
    first.start(paused=True)
    first.step(17)
    first.export(tmp_path / "half.zip")
    first.stop()
    resumed_model = small_model(seed=9)
    resumed = Session.load(tmp_path / "half.zip", model=resumed_model,
                           optimizer=torch.optim.SGD(resumed_model.parameters(), lr=0.1), loss_fn=nn.CrossEntropyLoss(),
                           train_loader=DataLoader(data, batch_size=16, shuffle=True,
                                                   generator=torch.Generator().manual_seed(3)))
    assert resumed.parts.run.loop.scaler.get_scale() == first.parts.run.loop.scaler.get_scale()
    resumed.run()
    assert resumed.global_step == 24
    assert same_weights(resumed_model, whole)
