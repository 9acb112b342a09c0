"""The per-sample store and step history: vectorised, correct with repeated indices, 32 bytes a sample."""

from __future__ import annotations

import numpy as np
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from onthefly_nb import Session
from onthefly_nb.records.store import (
    QUANTILES,
    STEP_COLUMNS,
    SampleStore,
    StepHistory,
    Visits,
    occurrence_rank,
    row_quantiles,
)


def test_occurrence_rank_counts_earlier_repeats():
    assert occurrence_rank(np.array([5, 3, 5, 5, 3, 9])).tolist() == [0, 0, 1, 2, 1, 0]
    assert occurrence_rank(np.array([], dtype=np.int64)).tolist() == []


def test_repeated_indices_in_one_update_are_applied_in_order():
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 20, size=500)
    losses = rng.random(500).astype(np.float32)
    store = SampleStore(20)
    store.update(Visits(indices, losses, np.arange(500), np.full(500, 0.5, np.float32)))
    for i in range(20):
        mine = losses[indices == i]
        assert store.seen[i] == len(mine)
        if len(mine):
            assert store.loss[i] == mine[-1]
            assert store.last_step[i] == np.flatnonzero(indices == i)[-1]
            np.testing.assert_allclose(store.loss_mean[i], mine.mean(), rtol=1e-5)
            np.testing.assert_allclose(store.loss_std()[i], mine.std(), rtol=1e-3, atol=1e-6)


def test_sampler_with_replacement_records_every_draw():
    data = classification_data(40)
    model = small_model()
    sampler = RandomSampler(data, replacement=True, num_samples=400)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=16, sampler=sampler)).start().wait(timeout=60)
    assert int(session.store.seen.sum()) == 400
    assert session.store.seen.max() > 1


def test_store_costs_at_most_56_bytes_per_sample_and_summaries_match_numpy():
    store = SampleStore(1000)
    rng = np.random.default_rng(1)
    idx = rng.permutation(1000)[:800]
    losses = rng.exponential(size=800).astype(np.float32)
    store.update(Visits(idx, losses, np.zeros(800, dtype=np.int64), np.zeros(800, np.float32),
                        labels=np.zeros(800, np.int32), predictions=np.ones(800, np.int32), margins=-losses,
                        p_true=np.full(800, 0.3, np.float32)))
    assert store.nbytes / store.size <= 56
    q = store.quantiles()
    np.testing.assert_allclose([q[k] for k in ("p1", "p50", "p99")],
                               np.quantile(losses.astype(np.float64), [0.01, 0.5, 0.99]))
    assert q["max"] == losses.max() and np.isclose(q["mean"], losses.mean())
    counts, edges = store.histogram(bins=64)
    assert counts.sum() == 800 and len(edges) == 65 and edges[0] == 0 and edges[-1] == losses.max()


def test_step_history_grows_and_downsamples_keeping_the_last_row():
    history = StepHistory(capacity=4)
    rows = np.arange(5000 * 11, dtype=np.float64).reshape(5000, 11)
    for chunk in np.array_split(rows, 37):
        history.extend(chunk)
    assert len(history) == 5000
    np.testing.assert_array_equal(history.rows(), rows)
    small = history.downsampled(1000)
    assert len(small) <= 1000 and (small[-1] == rows[-1]).all() and (small[0] == rows[0]).all()


def test_a_downsampled_history_keeps_every_spike_dip_and_nan_and_the_latest_steps_whole():
    rng = np.random.default_rng(0)
    rows = rng.random((60_000, len(STEP_COLUMNS)))
    rows[:, 0] = np.arange(len(rows))
    mean = STEP_COLUMNS.index("mean")
    spikes, dips = rng.choice(59_000, 6, replace=False), rng.choice(59_000, 3, replace=False)
    rows[spikes, mean], rows[dips, mean], rows[1234, mean] = 50.0, -1.0, np.nan
    growing, fresh = StepHistory(), StepHistory()
    for chunk in np.array_split(rows, 97):  # as a run grows: full buckets' picks are kept between calls
        growing.extend(chunk)
        growing.downsampled(1000)
    fresh.extend(rows)
    small = growing.downsampled(1000)
    np.testing.assert_array_equal(small, fresh.downsampled(1000))
    assert len(small) <= 1000 and (np.diff(small[:, 0]) > 0).all()
    assert set(spikes) | set(dips) | {1234} <= set(small[:, 0].astype(int)), "no spike, dip or NaN between picks"
    np.testing.assert_array_equal(small[-400:], rows[-400:])


def test_per_step_quantiles_come_from_each_batch():
    data = classification_data(50)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=16, shuffle=False)).start().wait(timeout=60)
    history = session.history
    assert list(history["step"]) == [0, 1, 2, 3]
    with torch.no_grad():
        losses = nn.functional.cross_entropy(model(data.tensors[0]), data.tensors[1], reduction="none").numpy()
    last = losses[48:]  # the short final batch of 2 samples
    expected = np.quantile(last.astype(np.float64), QUANTILES)
    np.testing.assert_allclose(history.iloc[3][["p1", "p5", "p25", "p50", "p75", "p95", "p99"]], expected,
                               rtol=1e-5)
    np.testing.assert_allclose(history.iloc[0]["mean"], losses[:16].mean(), rtol=1e-5)


def test_row_quantiles_match_numpy_and_rank_each_value():
    rng = np.random.default_rng(2)
    block = rng.random((5, 9)).astype(np.float32)
    stats, percentiles = row_quantiles(block)
    np.testing.assert_allclose(stats[:, :7], np.quantile(block.astype(np.float64), QUANTILES, axis=1).T)
    np.testing.assert_allclose(stats[:, 7], block.max(1))
    expected = block.argsort(1).argsort(1) / 8
    np.testing.assert_allclose(percentiles, expected)


def test_data_maps_match_a_direct_computation():
    """Confidence, variability, correctness and forgetting events against a step-by-step replay."""
    data = classification_data(48, seed=3)
    model = small_model(seed=2)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=2.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=48, shuffle=False), max_epochs=8)
    x, y = data.tensors
    p_true, right = [], []
    session.start(paused=True)
    for _ in range(8):
        with torch.no_grad():
            logits = model(x)
        p_true.append(logits.softmax(1)[torch.arange(48), y].numpy())
        right.append((logits.argmax(1) == y).numpy())
        session.step(1)
    session.stop()
    p_true, right = np.stack(p_true), np.stack(right)
    store = session.store
    np.testing.assert_allclose(store.confidence(), p_true.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(store.variability(), p_true.std(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(store.correctness(), right.mean(0))
    forgets = (right[:-1] & ~right[1:]).sum(0)
    assert forgets.sum() > 0, "the run should forget something for the test to mean anything"
    np.testing.assert_array_equal(store.column("forgets"), forgets)


def test_hardness_is_the_mean_percentile_within_the_batch():
    data = classification_data(16, seed=4)
    model = small_model(seed=4)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=16, shuffle=False), max_epochs=3).start().wait(timeout=60)
    with torch.no_grad():
        losses = nn.functional.cross_entropy(model(data.tensors[0]), data.tensors[1], reduction="none").numpy()
    expected = losses.argsort().argsort() / 15
    np.testing.assert_allclose(session.store.column("hardness"), expected, atol=1e-6)
    np.testing.assert_array_equal(session.store.column("tail_count"), np.where(expected >= 0.95, 3, 0))


def test_large_store_summaries_come_from_a_fixed_subset_close_to_exact():
    from onthefly_nb.records.store import SUMMARY_SAMPLE

    size = 3 * SUMMARY_SAMPLE
    rng = np.random.default_rng(5)
    store = SampleStore(size)
    losses = rng.exponential(size=size).astype(np.float32)
    idx = np.arange(size)
    store.update(Visits(idx, losses, np.zeros(size, np.int64), np.zeros(size, np.float32)))
    q = store.quantiles()
    for name, level in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rank = (losses < q[name]).mean()
        assert abs(rank - level) < 0.005, (name, rank)
    assert store.quantiles() == q, "the subset is fixed, so repeated ticks agree"


def test_a_histogram_of_equal_losses_is_one_bin_at_that_value():
    store = SampleStore(6)
    store.update(Visits(np.arange(6), np.zeros(6, dtype=np.float32), np.zeros(6, dtype=np.int64),
                        np.zeros(6, dtype=np.float32)))
    counts, edges = store.histogram()
    assert counts.tolist() == [6] and edges.tolist() == [0.0, 0.0]
