"""Health checks on real runs: a healthy one passes, broken ones fail naming what broke."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from conftest import classification_data
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from onthefly_nb import Session
from onthefly_nb.errors import ConfigurationError
from onthefly_nb.records.store import STEP_COLUMNS
from onthefly_nb.run.determinism import deterministic_settings, disable_deterministic
from onthefly_nb.steering.health import Probe, check_health


class SqrtOfZero(nn.Module):
    """Adds sqrt(0 * x): nothing in the forward pass, an infinite derivative in the backward one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sqrt(torch.relu(x) * 0.0)


def session_of(model: nn.Module, lr: float = 0.05, **kwargs) -> Session:
    data = classification_data(256)
    return Session(model, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=8, shuffle=True), max_epochs=20, recluster_seconds=None, **kwargs)


def findings(session: Session) -> dict[str, tuple[str, str]]:
    frame = session.health()
    return {row.check: (row.status, row.evidence) for row in frame.itertuples()}


def test_a_healthy_run_passes_and_logs_it():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    try:
        session.start(paused=True)
        session.step(150)
        found = findings(session)
        pipeline = found.pop("data pipeline")  # measured: tiny batches may well wait on the loader
        assert pipeline[0] in ("pass", "warn") and "of step time waiting for data" in pipeline[1]
        assert {k: v[0] for k, v in found.items()} == {
            "loss": "pass", "parameters": "pass", "gradients": "pass", "learning rate": "pass", "loss trend": "pass",
            "activations": "pass", "dead units": "pass", "label balance": "pass"}
        assert "total norm" in found["gradients"][1]
        assert "3 classes in the last" in found["label balance"][1]
        assert session.events[-1]["kind"] == "health" and session.events[-1]["status"] == pipeline[0]
        assert session.health_report["step"] == 150 and len(session.health_report["results"]) == 9
    finally:
        session.stop()


def test_nan_gradients_fail_naming_the_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), SqrtOfZero(), nn.Linear(16, 3))
    session = session_of(model, stop_on_nan=False)
    try:
        session.start(paused=True)
        session.step(1)
        found = findings(session)
        assert found["gradients"][0] == "fail" and "0.weight" in found["gradients"][1]
        assert found["parameters"][0] == "fail" and "0.weight" in found["parameters"][1]
        assert session.events[-1]["status"] == "fail"
        assert session.status == "paused", "a health check does not disturb the run"
    finally:
        session.stop()


def test_an_unused_layer_and_a_wild_learning_rate_warn():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    session = session_of(Unused(), lr=5.0)
    try:
        session.start(paused=True)
        session.step(2)
        found = findings(session)
        assert found["gradients"][0] == "warn" and "spare.weight" in found["gradients"][1]
        assert found["learning rate"] == ("warn", "lr 5")
        cards = [p for p in session.plans if p["kind"] == "lower_lr"]
        assert len(cards) == 1 and "the health check at step 2: learning rate lr 5" in cards[0]["evidence"]
        cards[0].approve(wait=True)
        assert session.optimizer.param_groups[0]["lr"] == 2.5, "the card's fix was applied"
    finally:
        session.stop()


def test_exploding_gradients_in_a_session_propose_clipping_and_a_lower_learning_rate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight.mul_(1e4)
    session = session_of(model, lr=1e-6, stop_on_nan=False)
    try:
        session.start(paused=True)
        session.step(1)
        assert findings(session)["gradients"][0] == "fail"
        kinds = {p["kind"]: p for p in session.plans}
        assert {"clip_gradients", "lower_lr"} <= set(kinds), list(kinds)
        assert kinds["clip_gradients"]["params"]["max_norm"] > 0
    finally:
        session.stop()


def test_health_before_the_first_step_and_after_the_end():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 3)))
    session.start(paused=True)
    found = findings(session)
    assert found["loss"][0] == "warn" and found["gradients"] == ("warn", "no gradients yet")
    session.stop()
    assert findings(session)["loss"][0] == "warn", "checks still run on an ended session"


# ---- checks fed by a Probe ----------------------------------------------------------------


class DivideByZero(nn.Module):
    """Infinity (or NaN where x is 0) in the middle of a model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 0.0


class SlowDataset(Dataset):
    """Each sample takes a few milliseconds to load, like a decoded image from a slow disk."""

    def __init__(self, data: TensorDataset, seconds: float) -> None:
        self.data, self.seconds = data, seconds

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.seconds)
        return self.data[index]


def probed(model: nn.Module, probe: Probe) -> dict[str, tuple[str, str]]:
    """The findings of a check with ``probe`` and no step history, by check name (in order)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = np.empty((0, len(STEP_COLUMNS)))
    return {f.check: (f.status, f.evidence) for f in check_health(model, optimizer, history, None, probe)}


def batch_of(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return classification_data(n).tensors


def test_the_old_call_adds_nothing_and_a_full_probe_adds_every_check_in_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = batch_of()
    history = np.empty((0, len(STEP_COLUMNS)))
    plain = check_health(model, torch.optim.SGD(model.parameters(), lr=0.1), history, None)
    assert [f.check for f in plain] == ["loss", "parameters", "gradients", "learning rate"]
    probe = Probe(inputs=x, targets=y, loss_fn=nn.CrossEntropyLoss(), wait_seconds=0.01, step_seconds=1.0,
                  recent_targets=y, loss_scale=65536.0)
    assert list(probed(model, probe)) == ["loss", "parameters", "gradients", "learning rate", "activations",
                                          "dead units", "data pipeline", "label balance", "loss scale"]


def test_activations_fail_naming_the_first_non_finite_layer_not_a_later_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), DivideByZero(), nn.Linear(16, 3))
    x, y = batch_of()
    found = probed(model, Probe(inputs=x, targets=y, loss_fn=nn.CrossEntropyLoss()))
    assert found["activations"] == ("fail", "first non-finite output in `3` (DivideByZero)")


def test_a_healthy_forward_pass_leaves_mode_rng_and_batchnorm_statistics_as_they_were():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = batch_of()
    model.train()
    rng, statistics = torch.get_rng_state(), model[1].running_mean.clone()
    found = probed(model, Probe(inputs=x, targets=y, loss_fn=nn.CrossEntropyLoss()))
    assert found["activations"][0] == "pass" and "all finite; loss" in found["activations"][1]
    assert all(m.training for m in model.modules()), "evaluated in the model's current (train) mode"
    assert torch.equal(torch.get_rng_state(), rng), "dropout in the check did not consume the run's RNG"
    assert torch.equal(model[1].running_mean, statistics), "the check did not move BatchNorm statistics"
    model(x)
    assert not torch.equal(torch.get_rng_state(), rng), "a plain forward pass does consume it"
    model.eval()
    assert probed(model, Probe(inputs=x))["activations"][0] == "pass" and not model.training


def test_a_non_finite_loss_or_broken_inputs_fail_with_finite_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, _ = batch_of()
    targets = torch.full((len(x), 3), float("nan"))
    status, evidence = probed(model, Probe(inputs=x, targets=targets, loss_fn=nn.MSELoss()))["activations"]
    assert status == "fail" and "loss on the batch is nan" in evidence
    x[3, 2] = float("inf")
    assert probed(model, Probe(inputs=x))["activations"] == ("fail", "the last batch's inputs hold NaN or infinite "
                                                             "values")


def test_dead_relu_units_warn_naming_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, _ = batch_of()
    assert probed(model, Probe(inputs=x))["dead units"][0] == "pass"
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    status, evidence = probed(model, Probe(inputs=x))["dead units"]
    assert status == "warn" and evidence.startswith("`1` (ReLU): 100% of 16 units")


def timed_steps(loader: DataLoader, model: nn.Module, steps: int = 4) -> tuple[float, float]:
    """Real training steps: seconds spent in ``next()`` on the loader, and seconds of whole steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = iter(loader)
    wait = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        x, y = next(batches)
        fetched = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        wait, total = wait + fetched - start, total + time.perf_counter() - start
    return wait, total


def test_a_slow_loader_is_input_bound_and_an_in_memory_one_compute_bound():
    torch.manual_seed(0)
    data = classification_data(256, dim=64)
    model = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 3))
    timed_steps(DataLoader(data, batch_size=32), model, steps=1)  # warm up the allocator
    wait, total = timed_steps(DataLoader(SlowDataset(data, 0.005), batch_size=32), model)
    status, evidence = probed(model, Probe(wait_seconds=wait, step_seconds=total))["data pipeline"]
    assert status == "warn" and evidence.startswith("input-bound: ")
    wait, total = timed_steps(DataLoader(data, batch_size=32), model)
    status, evidence = probed(model, Probe(wait_seconds=wait, step_seconds=total))["data pipeline"]
    assert status == "pass" and evidence.startswith("compute-bound: ")


def test_a_large_share_of_waits_too_short_for_workers_to_help_is_not_input_bound():
    """A tiny model on an in-memory loader can wait 40 % of its 0.3 ms steps: workers would not help."""
    found = probed(nn.Linear(8, 3), Probe(wait_seconds=0.012, step_seconds=0.03, window_steps=100))
    status, evidence = found["data pipeline"]
    assert status == "pass" and evidence.startswith("short waits: 40% ") and "0.12 ms a step" in evidence
    slow = probed(nn.Linear(8, 3), Probe(wait_seconds=0.4, step_seconds=1.0, window_steps=100))["data pipeline"]
    assert slow[0] == "warn" and "4 ms a step" in slow[1]


def test_imbalanced_or_unshuffled_labels_warn_and_balanced_ones_pass():
    labels = torch.cat([torch.zeros(300), torch.ones(30), torch.full((20,), 2)]).long()[torch.randperm(350)]
    status, evidence = probed(nn.Linear(8, 3), Probe(recent_targets=labels))["label balance"]
    assert status == "warn" and "15.0x" in evidence and "0: 300, 1: 30, 2: 20" in evidence
    data = classification_data(512)
    shuffled = torch.cat([y for _, y in DataLoader(data, batch_size=64, shuffle=True)])
    assert probed(nn.Linear(8, 3), Probe(recent_targets=shuffled))["label balance"][0] == "pass"
    few = torch.cat([torch.arange(100), torch.zeros(8, dtype=torch.long)])  # 100 classes: sampling noise
    assert probed(nn.Linear(8, 3), Probe(recent_targets=few))["label balance"][0] == "pass"
    ordered = data.tensors[1].argsort()
    by_label = TensorDataset(data.tensors[0][ordered], data.tensors[1][ordered])
    recent = torch.cat([y for _, (_, y) in zip(range(8), DataLoader(by_label, batch_size=8))])
    status, evidence = probed(nn.Linear(8, 3), Probe(recent_targets=recent.numpy()))["label balance"]
    assert status == "warn" and evidence == "only class 0 in the last 64 labels"


def scaler_after(steps: int, overflow: bool, **kwargs: float) -> float:
    """The scale of a real GradScaler after ``steps`` steps whose gradients do or do not overflow."""
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    optimizer, scaler = torch.optim.SGD(model.parameters(), lr=0.01), torch.amp.GradScaler("cpu", **kwargs)
    x, y = batch_of(16)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) * (float("inf") if overflow else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return scaler.get_scale()


def test_the_amp_loss_scale():
    def status(scale: float) -> str:
        return probed(nn.Linear(8, 3), Probe(loss_scale=scale))["loss scale"][0]

    assert status(scaler_after(3, overflow=False)) == "pass"
    assert status(scaler_after(3, overflow=True, init_scale=4.0)) == "warn", "overflows shrank it below 1"
    assert status(scaler_after(1, overflow=False, init_scale=2.0 ** 24, growth_interval=1)) == "warn"
    assert status(0.0) == "fail" and status(float("nan")) == "fail"


def test_exploding_gradients_fail_naming_the_largest_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight.mul_(1e4)  # huge activations feed the last layer, whose gradient explodes
    x, y = batch_of()
    nn.functional.cross_entropy(model(x), y).backward()
    status, evidence = probed(model, Probe())["gradients"]
    assert status == "fail" and "largest 2.weight" in evidence


class UnseededNoise(nn.Module):
    """Adds noise seeded from the operating system on every call: nondeterministic on purpose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(7), "little"))
        return x + 0.1 * torch.randn(x.shape, generator=generator)


def test_the_determinism_check_passes_on_a_deterministic_run_and_names_what_differs_otherwise():
    torch.manual_seed(0)
    steady = session_of(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)))
    torch.manual_seed(0)
    noisy = session_of(nn.Sequential(nn.Linear(8, 16), UnseededNoise(), nn.ReLU(), nn.Linear(16, 3)))
    try:
        for session in (steady, noisy):
            session.start(paused=True)
            session.step(20)
        weights = {k: v.clone() for k, v in steady.model.state_dict().items()}
        result = steady.check_determinism()
        assert result.passed and result.differing == [], result.summary()
        assert all(torch.equal(v, weights[k]) for k, v in steady.model.state_dict().items()), "the check trained"
        found = findings(steady)
        assert found["determinism"][0] == "pass" and "bit-identical" in found["determinism"][1]

        result = noisy.check_determinism()
        assert not result.passed and not result.loss_bits_equal
        assert {"grad:0.weight", "grad:3.weight", "param:0.weight"} <= set(result.differing), result.differing
        check = next(r for r in noisy.health_report["results"] if r["check"] == "determinism")
        assert check["status"] == "fail" and "grad:0.weight" in check["evidence"]
        assert noisy.events[-1]["kind"] == "determinism" and noisy.events[-1]["passed"] is False
    finally:
        steady.stop(), noisy.stop()


def test_health_is_checked_every_n_steps_by_itself():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), health_every=40)
    try:
        session.start(paused=True)
        session.step(100)
        assert session.health_report is not None and session.health_report["step"] >= 40
        assert any(e["kind"] == "health" for e in session.events)
        with pytest.raises(ConfigurationError, match="health_every must be a number of steps >= 1 or None"):
            session_of(nn.Linear(8, 3), health_every=0)
    finally:
        session.stop()


def test_deterministic_mode_turns_on_pytorchs_deterministic_algorithms():
    previous = deterministic_settings()
    try:
        session = session_of(nn.Linear(8, 3), deterministic=True, seed=3)
        assert torch.are_deterministic_algorithms_enabled()
        assert session.snapshot()["run"]["deterministic"] is True
        assert torch.initial_seed() == 3
    finally:
        disable_deterministic(previous)
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_second_check_while_paused_still_judges_the_data_pipeline():
    torch.manual_seed(0)
    session = session_of(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    try:
        session.start(paused=True)
        session.step(30)
        first = findings(session)["data pipeline"]
        assert findings(session)["data pipeline"] == first, "no steps since: the same window is judged again"
    finally:
        session.stop()


def step_history(means: list[float]) -> np.ndarray:
    rows = np.zeros((len(means), len(STEP_COLUMNS)))
    rows[:, STEP_COLUMNS.index("step")] = np.arange(len(means))
    rows[:, STEP_COLUMNS.index("mean")] = means
    rows[:, STEP_COLUMNS.index("p50")] = means
    return rows


def test_losses_of_zero_pass_the_gap_and_trend_and_no_ratio_is_infinite():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    checks = {f.check: f for f in check_health(model, optimizer, step_history([0.0] * 200), {"loss": 0.0, "step": 200})}
    assert checks["train/validation gap"].status == "pass" and checks["loss trend"].status == "pass"
    assert "inf" not in checks["train/validation gap"].evidence
    memorised = check_health(model, optimizer, step_history([0.0] * 200), {"loss": 2.0, "step": 200})
    gap = next(f for f in memorised if f.check == "train/validation gap")
    assert gap.status == "warn" and "inf" not in gap.evidence and "memorising" in gap.explanation


def test_a_divergence_with_a_low_median_fails_the_trend_and_is_not_called_following():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    means = [0.5] * 100 + [0.0, 0.0, 1843.0] * 34  # most batches 0, the mean explodes
    checks = {f.check: f for f in check_health(model, optimizer, step_history(means), {"loss": 0.4, "step": 100})}
    assert checks["loss trend"].status == "fail" and "diverged" in checks["loss trend"].explanation
    assert "Validation follows training" not in checks["train/validation gap"].explanation


def test_a_learning_rate_a_schedule_decayed_to_zero_passes_and_a_zero_one_set_by_hand_warns():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: max(0.0, 1 - epoch / 3))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0
    rate = next(f for f in check_health(model, optimizer, step_history([1.0]), None) if f.check == "learning rate")
    assert rate.status == "pass" and "decayed it from 0.1" in rate.evidence
    by_hand = torch.optim.SGD(model.parameters(), lr=0.0)
    rate = next(f for f in check_health(model, by_hand, step_history([1.0]), None) if f.check == "learning rate")
    assert rate.status == "warn"


def test_a_small_loss_three_times_another_is_no_gap():
    """Train 0.0075, validation 0.022 after a loss of 0.69 at the start: the model generalises."""
    model = nn.Linear(4, 2)
    history = step_history([0.69] * 10 + [0.0075] * 100)
    gap = next(f for f in check_health(model, torch.optim.SGD(model.parameters(), lr=0.1), history,
                                       {"loss": 0.022, "step": 110}) if f.check == "train/validation gap")
    assert gap.status == "pass", gap
