"""Dashboard traffic at scale: bytes per update and updates per second while a run with a
10,000,000-sample store trains, and the one-off size of the sample map after a clustering.

The kernel comm is replaced by one that records what would go over the wire (the JSON state
plus the binary buffers); everything else (session, training, publisher) is real.

    .venv/bin/python bench/payload.py [--samples 10000000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import time

import ipywidgets.widgets.widget as widget_module
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session


class RecordingComm:
    """Stands in for the kernel comm: keeps (time, bytes) of every update message."""

    comm_id = "bench"
    kernel = "present"

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.updates: list[tuple[float, int, list[str]]] = []

    def open(self, *args: object, **kwargs: object) -> None:
        pass

    def on_msg(self, *args: object, **kwargs: object) -> None:
        pass

    def close(self, *args: object, **kwargs: object) -> None:
        pass

    def send(self, data: dict | None = None, metadata: object = None, buffers: list | None = None) -> None:
        if data and data.get("method") == "update":
            size = len(json.dumps(data["state"], default=str)) + sum(memoryview(b).nbytes for b in buffers or [])
            self.updates.append((time.monotonic(), size, sorted(data["state"])))


def measure(samples: int, seconds: float) -> dict[str, float]:
    widget_module.comm.create_comm = lambda **kwargs: RecordingComm()
    torch.manual_seed(0)
    x = torch.randn(samples, 2)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=256, shuffle=True), max_epochs=1, recluster_seconds=None)
    comm: RecordingComm = session.dashboard().comm  # type: ignore[assignment]
    session.start()
    time.sleep(seconds)
    steady = list(comm.updates)
    session.pause()
    started = time.monotonic()
    session.cluster()
    cluster_seconds = time.monotonic() - started
    time.sleep(0.5)
    map_updates = [size for _, size, keys in comm.updates[len(steady):] if "points" in keys]
    session.stop()
    times = np.array([t for t, _, _ in steady])
    sizes = np.array([s for _, s, _ in steady])
    window = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "samples": samples, "updates": len(steady), "updates_per_sec": (len(steady) - 1) / window,
        "median_bytes": float(np.median(sizes)), "max_bytes": float(sizes.max()),
        "map_bytes": float(map_updates[0]) if map_updates else float("nan"), "cluster_seconds": cluster_seconds,
    }


def report(result: dict[str, float]) -> None:
    print(f"store of {result['samples']:,} samples, {result['updates']} updates while training")
    print(f"  steady state: {result['updates_per_sec']:.1f} updates/s, median {result['median_bytes'] / 1024:.1f} KB,"
          f" max {result['max_bytes'] / 1024:.1f} KB per update (aim: under 64 KB, at most 10/s)")
    print(f"  sample map after a clustering ({result['cluster_seconds']:.1f} s): one update of "
          f"{result['map_bytes'] / 2**20:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    report(measure(args.samples, args.seconds))


if __name__ == "__main__":
    main()
