"""How the per-sample machinery scales: stores of 1M and 10M samples.

Prints, per store size: the store update per training step (batch 256, folded 64 steps at a
time, as a flush does), the dashboard tick (loss quantiles and histogram of every sample), the
time to slice 1 % of the samples into a DataFrame (by a list of indices, and by a query through
``Session.slice``), the time to cluster 100,000 hard samples with 64-dimensional features, and
peak memory.

    .venv/bin/python bench/scale.py [--sizes 1000000 10000000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session
from onthefly_nb.records.clusters import cluster
from onthefly_nb.records.store import SampleStore, Visits

BATCH, STEPS_PER_FLUSH = 256, 64


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def fill(store: SampleStore, rng: np.random.Generator) -> None:
    """Every sample seen once, folded in large flushes."""
    size = store.size
    chunk = BATCH * STEPS_PER_FLUSH * 16
    for start in range(0, size, chunk):
        idx = np.arange(start, min(size, start + chunk))
        store.update(visits(idx, rng, start))


def visits(idx: np.ndarray, rng: np.random.Generator, step: int) -> Visits:
    n = len(idx)
    return Visits(idx, rng.exponential(size=n).astype(np.float32), np.full(n, step), rng.random(n, np.float32),
                  rng.integers(0, 10, n, dtype=np.int32), rng.integers(0, 10, n, dtype=np.int32),
                  rng.normal(size=n).astype(np.float32), rng.random(n, np.float32))


def measure(size: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    model = nn.Linear(1, 10)
    data = TensorDataset(torch.zeros(size, 1), torch.zeros(size, dtype=torch.long))
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=BATCH))
    store = session.store
    fill(store, rng)
    flush = rng.permutation(size)[: BATCH * STEPS_PER_FLUSH]
    update = timed(lambda: store.update(visits(flush, rng, 1))) / STEPS_PER_FLUSH
    tick = timed(lambda: (store.quantiles(), store.histogram()))
    picked = rng.choice(size, size // 100, replace=False)
    by_indices = timed(lambda: session.slice(picked, features=False))
    by_query = timed(lambda: session.slice("loss > q99", features=False))
    assert abs(len(session.slice("loss > q99", features=False)) - size // 100) < size // 500
    return {"update per step (ms)": update * 1e3, "quantile+histogram tick (ms)": tick * 1e3,
            "slice 1% by indices (s)": by_indices, "slice 1% by query (s)": by_query,
            "store (MB)": store.nbytes / 2**20}


def cluster_time(hard: int = 100_000, dims: int = 64) -> float:
    """onthefly_nb's clustering (k by silhouette in [3, 8], fit, 2-D map, summaries) of ``hard``
    hard samples with ``dims``-dimensional features, planted in three regimes."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(hard, dims)).astype(np.float32)
    features[: hard // 10] += 3
    features[hard // 10 : hard // 4] -= 3
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(dims)])
    frame.insert(0, "index", np.arange(hard))
    frame.insert(1, "loss", rng.exponential(size=hard).astype(np.float32))
    frame.insert(2, "hardness", np.ones(hard, np.float32))  # every sample is hard
    return timed(lambda: cluster(frame, step=0), repeat=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    rows = {f"{size:,}": measure(size) for size in args.sizes}
    print(pd.DataFrame(rows).round(3).to_string())
    print(f"cluster 100,000 hard samples x 64 features: {cluster_time():.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"peak memory (RSS): {peak:.0f} MB")


if __name__ == "__main__":
    main()
