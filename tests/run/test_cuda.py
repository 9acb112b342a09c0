"""On a GPU: the recorder adds no host sync per step, and fp16 trains as the plain AMP loop.
Skipped where no CUDA device is present (the CI machine has none)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from conftest import classification_data, same_weights, small_model
from test_precision import amp_loop
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def host_syncs(run: Callable[[], object]) -> int:
    """How many synchronizing CUDA calls ``run`` makes (torch.cuda.set_sync_debug_mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def session_on_the_gpu(steps: int, fused: bool = False, poison: int | None = None) -> Session:
    """A session whose data already lives on the GPU, so the loop itself needs no copies; with
    ``fused``, a fused Adam (the device-side non-finite guard); ``poison``: a NaN input there."""
    x, y = (t.cuda() for t in classification_data(4096).tensors)
    if poison is not None:
        x[poison, 0] = float("nan")
    model = small_model().cuda()
    optimizer = (torch.optim.Adam(model.parameters(), lr=0.01, fused=True) if fused
                 else torch.optim.SGD(model.parameters(), lr=0.1))
    return Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(TensorDataset(x, y), batch_size=16),
                   max_steps=steps, device="cuda", recluster_seconds=None, health_every=None,
                   stop_on_nan=poison is None)


def test_the_recorder_adds_no_host_sync_per_step():
    assert host_syncs(lambda: torch.ones(1, device="cuda").item()) >= 1, "the probe must see a sync"
    host_syncs(session_on_the_gpu(5).run)  # warm up kernels and allocator
    few, many = session_on_the_gpu(20), session_on_the_gpu(220)
    short, long = host_syncs(few.run), host_syncs(many.run)
    assert many.global_step == 220 and int(many.store.seen.sum()) == 220 * 16
    assert long - short < 20, f"200 more steps made {long - short} more host syncs ({short} for 20 steps)"


def test_fp16_on_the_gpu_trains_as_the_plain_amp_loop():
    data = classification_data(192)
    cuda = TensorDataset(*(t.cuda() for t in data.tensors))
    model, twin = small_model().cuda(), small_model().cuda()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(cuda, batch_size=16), max_epochs=2, precision="fp16", device="cuda",
                      recluster_seconds=None)
    session.run()
    amp_loop(twin, cuda, nn.CrossEntropyLoss(), 2, torch.float16, device="cuda")
    assert same_weights(model, twin)
    assert session.slice()["loss"].notna().all()


def test_a_fused_optimizer_skips_a_nan_step_on_the_gpu_without_a_host_sync_per_step():
    host_syncs(session_on_the_gpu(5, fused=True).run)
    short = host_syncs(session_on_the_gpu(20, fused=True).run)
    poisoned = session_on_the_gpu(220, fused=True, poison=30 * 16 + 2)
    long = host_syncs(poisoned.run)
    assert long - short < 20, f"200 more steps made {long - short} more host syncs ({short} for 20 steps)"
    assert [e["step"] for e in poisoned.events if e["kind"] == "nonfinite_skipped"] == [30]
    assert all(torch.isfinite(p).all() for p in poisoned.model.parameters())
