"""RNG capture, the replay-one-step determinism check and the deterministic mode, on real PyTorch runs."""

from __future__ import annotations

import copy
import io
import json
import math
import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from onthefly_nb.run.determinism import (
    _difference,
    capture_rng,
    deterministic_settings,
    disable_deterministic,
    enable_deterministic,
    replay_step,
    restore_rng,
    seed_worker,
    seeded_generator,
)

# Neither one of the captured global generators nor deep-copied with a model: each draw moves it on.
_OUTSIDE = torch.Generator().manual_seed(0)


class NoisyGradient(nn.Module):
    """Identity forward; adds noise from ``_OUTSIDE`` to the gradient flowing back through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            x.register_hook(lambda grad: grad + 1e-3 * torch.randn(grad.shape, generator=_OUTSIDE))
        return x


class NoisyForward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1e-3 * torch.randn(x.shape, generator=_OUTSIDE)


class OwnNoise(nn.Module):
    """Noise from a generator the module owns: deep-copied, state and all, with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1e-3 * torch.randn(x.shape, generator=self.generator)


def batch(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def trained(model: nn.Module, loss_fn: nn.Module, targets: torch.Tensor | None = None,
            steps: int = 5) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, torch.Tensor, torch.Tensor]:
    """``model`` after a few real Adam steps, with the next batch to check."""
    x, y = batch()
    y = y if targets is None else targets
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(x), y).mean().backward()
        optimizer.step()
    return model, optimizer, loss_fn, x, y


def dropout_mlp() -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    return trained(model, nn.CrossEntropyLoss(reduction="none"))  # per-sample losses, averaged by the check


def regression(*layers: nn.Module) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return trained(nn.Sequential(*layers), nn.MSELoss(), targets=torch.linspace(-1, 1, 32).unsqueeze(1))


def draws() -> list[Any]:
    return [random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(3).tolist(), torch.randn(2).tolist()]


def same(a: Any, b: Any) -> bool:
    """Equal structure, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and _difference(a, b) is None
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_replay_passes_for_a_deterministic_cpu_run() -> None:
    model, optimizer, loss_fn, x, y = dropout_mlp()
    report = replay_step(model, optimizer, loss_fn, x, y)
    assert report.passed and report.loss_bits_equal
    assert report.differing == [] and report.max_abs_diff == {}
    assert report.losses[0] == report.losses[1]
    assert report.tensors_compared == 6 + 6 + 3  # grads and stepped values of 6 parameters, 3 batch-norm buffers
    assert report.summary() == "deterministic: step replayed twice, loss and 15 tensors bit-identical"
    assert json.loads(json.dumps(report.to_json(), allow_nan=False))["passed"] is True

    # The replay reproduced the real next step, dropout mask included.
    optimizer.zero_grad()
    loss = loss_fn(model(x), y).mean()
    assert loss.item() == report.losses[0]


def test_replay_leaves_model_optimizer_and_rng_untouched() -> None:
    model, optimizer, loss_fn, x, y = dropout_mlp()
    model.eval()
    state = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    rng = capture_rng()

    assert replay_step(model, optimizer, loss_fn, x, y).passed
    after = draws()

    assert not any(m.training for m in model.modules())
    assert same(model.state_dict(), state)
    assert same([p.grad for p in model.parameters()], grads)
    assert same(optimizer.state_dict(), optimizer_state)
    restore_rng(rng)
    assert after == draws()  # the next draws are the ones there would have been without the check


def test_gradient_noise_outside_the_captured_rng_names_the_upstream_parameters() -> None:
    model, optimizer, loss_fn, x, y = regression(nn.Linear(4, 8), nn.Tanh(), NoisyGradient(), nn.Linear(8, 1))
    report = replay_step(model, optimizer, loss_fn, x, y)
    assert not report.passed
    assert report.loss_bits_equal  # the forward pass is clean
    # Upstream of the noisy layer: gradients and stepped values differ; layer 3, downstream, is identical.
    assert report.differing == ["grad:0.weight", "grad:0.bias", "param:0.weight", "param:0.bias"]
    assert all(0 < report.max_abs_diff[name] < 1 for name in report.differing)
    assert report.summary().startswith("NOT deterministic: 4 of 8 tensors differ: grad:0.weight (max |Δ| ")


def test_forward_noise_outside_the_captured_rng_changes_the_loss() -> None:
    model, optimizer, loss_fn, x, y = regression(nn.Linear(4, 8), NoisyForward(), nn.ReLU(), nn.Linear(8, 1))
    report = replay_step(model, optimizer, loss_fn, x, y)
    assert not report.passed and not report.loss_bits_equal
    assert report.losses[0] != report.losses[1]
    assert {"grad:0.weight", "grad:3.weight", "param:0.weight", "param:3.weight"} <= set(report.differing)
    assert report.summary().startswith(f"NOT deterministic: loss differs ({report.losses[0]!r} vs ")


def test_a_generator_owned_by_the_module_is_copied_with_it() -> None:
    model, optimizer, loss_fn, x, y = regression(nn.Linear(4, 8), OwnNoise(), nn.ReLU(), nn.Linear(8, 1))
    assert replay_step(model, optimizer, loss_fn, x, y).passed


def test_an_optimizer_with_several_param_groups_and_a_scheduler() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                 {"params": model[2].parameters(), "momentum": 0.5}], lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    x, _ = batch()
    for _ in range(3):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        scheduler.step()
    report = replay_step(model, optimizer, lambda out, _: out.square(), x, None)
    assert report.passed, report.summary()
    assert [group["lr"] for group in optimizer.param_groups] == [0.1 / 8, 0.01 / 8]


def test_a_nan_loss_is_bit_identical_to_itself() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    x = torch.tensor([[float("nan"), 1.0]])
    report = replay_step(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), x, torch.zeros(1, 1))
    assert report.passed and math.isnan(report.losses[0])
    assert report.to_json()["losses"] == [None, None]


def test_difference_is_bitwise() -> None:
    nan = torch.tensor([float("nan"), 1.0])
    assert _difference(nan, nan.clone()) is None
    assert _difference(torch.tensor([0.0]), torch.tensor([-0.0])) == 0.0  # equal values, different bits
    assert _difference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == 0.5
    assert _difference(nan, torch.tensor([2.0, 1.0])) == math.inf
    assert _difference(torch.zeros(2), torch.zeros(3)) == math.inf
    assert _difference(torch.zeros(2), None) == math.inf


def test_rng_round_trip_through_torch_save_weights_only() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached Gaussian in the Python and numpy states
    np.random.randn()
    state = capture_rng()
    expected = draws()

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    draws()
    restore_rng(loaded)
    assert draws() == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_round_trip() -> None:
    state = capture_rng()
    assert len(state["cuda"]) == torch.cuda.device_count()
    expected = torch.rand(3, device="cuda")
    restore_rng(state)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_enable_and_disable_deterministic_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = deterministic_settings()
    previous = enable_deterministic(7)
    try:
        assert previous == before
        assert torch.are_deterministic_algorithms_enabled()
        assert deterministic_settings() == {"deterministic_algorithms": True, "warn_only": False,
                                            "cudnn_deterministic": True, "cudnn_benchmark": False,
                                            "cublas_workspace_config": ":4096:8"}
        assert random.random() == random.Random(7).random()
        assert np.random.rand() == np.random.RandomState(7).rand()
        assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(7)))
    finally:
        disable_deterministic(previous)
    assert deterministic_settings() == before
    assert torch.are_deterministic_algorithms_enabled() == before["deterministic_algorithms"]


def test_disable_restores_a_previous_warn_only_mode_and_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        previous = enable_deterministic(0)
        try:
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            assert deterministic_settings()["cublas_workspace_config"] == ":16:8"  # a user's setting is kept
        finally:
            disable_deterministic(previous)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_seed_worker_seeds_python_and_numpy_from_the_torch_seed() -> None:
    rng = capture_rng()
    try:
        torch.manual_seed(2**40 + 5)
        seed_worker(0)
        assert random.random() == random.Random(5).random()
        assert np.random.rand() == np.random.RandomState(5).rand()
    finally:
        restore_rng(rng)


class RandomDataset(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, random.random(), np.random.rand()], dtype=torch.float64)


def loaded(seed: int) -> torch.Tensor:
    loader = DataLoader(RandomDataset(), batch_size=4, shuffle=True, num_workers=2, worker_init_fn=seed_worker,
                        generator=seeded_generator(seed))
    return torch.cat(list(loader))


def test_seeded_workers_give_identical_batches() -> None:
    first = loaded(0)
    assert torch.equal(first, loaded(0))
    assert not torch.equal(first, loaded(1))
    assert first[:, 1].unique().numel() == 16  # each sample drew its own numbers
