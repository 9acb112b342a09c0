"""Do specialists pay? Fork + merge and fork + gate against the run trained on for the same steps,
on a test split nothing trained on or was judged with, and how often the merge card's verdict
(read on the validation samples of the slice's region) agrees with the test split.

Two tasks, 3 seeds each:
- planted: the README's task (6-d Gaussian classes split by a linear rule; 5 % of the samples in a
  far blob follow the opposite rule); a 32-unit MLP trained 150 steps; the fork is on the blob.
- digits: scikit-learn's digits (8x8) with the 3/8 pair hardened (their pixels get Gaussian noise
  of std 6 on the 0-16 scale); a 64-unit MLP trained 300 steps; the fork is on the samples labelled
  3 or 8.
Each split is a third of the data. The fork trains 150 steps, half of each batch from the whole
training set. Baselines: the run trained on for the fork's 150 steps (for the merges) and for
150 + the router's steps (for the gate).

    .venv/bin/python bench/specialists.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import logging

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from onthefly_nb import Session
from onthefly_nb.data.batches import default_unpack
from onthefly_nb.run.evaluation import evaluate

FORK_STEPS = 150


def planted(seed: int) -> tuple[TensorDataset, np.ndarray, int, int]:
    """The data, the mask of the hard region, the hidden width and the run's steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12_000, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    hard = torch.zeros(len(x), dtype=torch.bool)
    hard[torch.randperm(len(x), generator=g)[: len(x) // 20]] = True
    x[hard, 2:4] += 4.0
    y[hard] = 1 - y[hard]
    return TensorDataset(x, y), hard.numpy(), 32, 150


def digits(seed: int) -> tuple[TensorDataset, np.ndarray, int, int]:
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    hard = np.isin(y, (3, 8))
    x = x.astype(np.float32)
    x[hard] += rng.normal(0, 6, x[hard].shape).astype(np.float32)
    x = (x - 8) / 8
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y).long()), hard, 64, 300


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed + 1000).permutation(n)
    return order[: n // 3], order[n // 3: 2 * n // 3], order[2 * n // 3:]


def scores(model: nn.Module, data: TensorDataset, rows: np.ndarray, hard: np.ndarray) -> dict[str, float]:
    loss = nn.CrossEntropyLoss(reduction="none")
    cpu = torch.device("cpu")

    def on(chosen: np.ndarray) -> dict:
        return evaluate(model, DataLoader(Subset(data, chosen.tolist()), batch_size=512), loss, default_unpack, cpu)

    region, overall = on(rows[hard[rows]]), on(rows)
    return {"region loss": region["loss"], "region acc": region["accuracy"], "overall acc": overall["accuracy"]}


def weights_of(session: Session, merge) -> nn.Module:
    model = copy.deepcopy(session.model)
    model.load_state_dict(merge.weights)
    return model


def one(task: str, seed: int) -> tuple[list[dict], list[dict]]:
    data, hard, hidden, steps = {"planted": planted, "digits": digits}[task](seed)
    train, val, test = split(len(data), seed)
    torch.manual_seed(seed)
    classes = int(data.tensors[1].max()) + 1
    model = nn.Sequential(nn.Linear(data.tensors[0].shape[1], hidden), nn.ReLU(), nn.Linear(hidden, classes))
    session = Session(model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(),
                      DataLoader(Subset(data, train.tolist()), batch_size=64, shuffle=True),
                      DataLoader(Subset(data, val.tolist()), batch_size=512), max_epochs=10_000,
                      recluster_seconds=None, health_every=None, seed=seed)
    session.start(paused=True)
    try:
        session.step(steps)
        slice_rows = np.flatnonzero(hard[train])  # positions in the training subset
        session.fork(slice_rows, budget=FORK_STEPS, name="fork", general_share=0.5)
        baseline = session.baseline(steps=FORK_STEPS)
        candidates = {"run as it is": session.model, f"baseline ({FORK_STEPS} steps)": baseline.model}
        verdicts = []
        for method in ("swa", "fisher"):
            merge = session.merge(method=method)
            candidates[f"{method} merge"] = weights_of(session, merge)
            held = merge.after.get("held_out")
            said = None if held is None else held["loss"] < merge.before["held_out"]["loss"]
            verdicts.append({"task": task, "seed": seed, "merge": method, "card says it helps": said,
                             "held-out samples": None if held is None else held["samples"]})
        gate = session.gate()
        router = next(e["router_steps"] for e in reversed(session.events) if e["kind"] == "gated")
        counted = session.baseline(steps=FORK_STEPS + router)
        candidates["gate"] = gate
        candidates[f"baseline ({FORK_STEPS} + {router} router steps)"] = counted.model
        rows = [{"task": task, "seed": seed, "model": name, **scores(m, data, test, hard)}
                for name, m in candidates.items()]
        run = next(r for r in rows if r["model"] == "run as it is")
        for verdict in verdicts:
            tested = next(r for r in rows if r["model"] == f"{verdict['merge']} merge")
            verdict["test says it helps"] = tested["region loss"] < run["region loss"]
        return rows, verdicts
    finally:
        session.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("onthefly_nb").setLevel(logging.ERROR)
    rows, verdicts = [], []
    for task in ("planted", "digits"):
        for seed in range(args.seeds):
            r, v = one(task, seed)
            rows += r
            verdicts += v
    table = pd.DataFrame(rows)
    baselines = table["model"].str.startswith("baseline (150 + ")
    table.loc[baselines, "model"] = "baseline (150 + router steps)"
    summary = table.groupby(["task", "model"], sort=False)[["region loss", "region acc", "overall acc"]].mean()
    print(f"test split, mean of {args.seeds} seeds (region: the hard region's test samples)")
    print(summary.round(3).to_string())
    judged = pd.DataFrame(verdicts)
    agree = (judged["card says it helps"] == judged["test says it helps"]).mean()
    print(f"\nmerge cards whose held-out verdict agrees with the test split: {agree:.0%} of {len(judged)}")
    print(judged.to_string(index=False))


if __name__ == "__main__":
    main()
