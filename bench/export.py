"""Saving and loading a session of 1,000,000 samples: how long training pauses at the step boundary
while the state is copied, how long writing the archive takes (off the training thread), how long
Session.load takes, and the archive's size. The run trains in the background throughout.

    .venv/bin/python bench/export.py [--samples 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session


def build(samples: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(samples, 16)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
    return {"model": model, "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3),
            "loss_fn": nn.CrossEntropyLoss(), "train_loader": DataLoader(data, batch_size=256, shuffle=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    session = Session(**build(args.samples), max_epochs=1000, recluster_seconds=None, health_every=None)
    session.start()
    time.sleep(3.0)  # the store fills while it trains
    pauses, writes, loads, sizes = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            path = Path(folder) / f"session-{round_}.zip"
            session.export(path)  # the run goes on training meanwhile
            event = next(e for e in reversed(session.events) if e["kind"] == "exported")
            pauses.append(event["pause_ms"])
            writes.append(event["write_seconds"])
            sizes.append(path.stat().st_size)
        steps = session.global_step
        session.stop()
        for round_ in range(args.rounds):
            started = time.perf_counter()
            loaded = Session.load(Path(folder) / f"session-{round_}.zip", **build(args.samples),
                                  recluster_seconds=None)
            loads.append(time.perf_counter() - started)
            assert loaded.store.size == args.samples
    print(f"session of {args.samples:,} samples, {steps} steps trained, {args.rounds} exports while training")
    print(f"training paused at the boundary: median {statistics.median(pauses):.1f} ms, max {max(pauses):.1f} ms")
    print(f"archive written off the training thread: median {statistics.median(writes):.2f} s "
          f"({statistics.median(sizes) / 2**20:.0f} MiB)")
    print(f"Session.load (verify, read, restore; data building included): median {statistics.median(loads):.2f} s")


if __name__ == "__main__":
    main()
