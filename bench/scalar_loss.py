"""What a loss that returns one scalar costs: its per-sample values are found at each flush, batched
with ``torch.func.vmap`` where the loss allows, else one call per sample. Measured against the plain
loop with the same loss and against a session with the unreduced built-in loss, interleaved round
by round in one process, on the reference quickstart's model and data.

    .venv/bin/python bench/scalar_loss.py [--rounds 10] [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time

import torch
from overhead import make_problem, plain_loop
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session


def vmappable(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets)


def eager(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same loss with a host read, which vmap cannot batch: one call per sample at the flush."""
    return nn.functional.cross_entropy(outputs, targets) * (1.0 if float(targets.sum()) >= 0 else 2.0)


def session_loop(model: nn.Module, loader: DataLoader, epochs: int, loss_fn) -> float:
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn, loader, max_epochs=epochs,
                      recluster_seconds=None, health_every=None)
    started = time.perf_counter()
    session.run()
    return (time.perf_counter() - started) / session.global_step


RUNS = {
    "plain loop, scalar loss": lambda model, loader, epochs: plain_loop(model, loader, epochs, torch.device("cpu")),
    "session, nn.CrossEntropyLoss": lambda model, loader, epochs: session_loop(model, loader, epochs,
                                                                                nn.CrossEntropyLoss()),
    "session, scalar loss (vmap)": lambda model, loader, epochs: session_loop(model, loader, epochs, vmappable),
    "session, scalar loss (per call)": lambda model, loader, epochs: session_loop(model, loader, epochs, eager),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    dataset, base = make_problem(4096)
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    for round_ in range(args.rounds + 1):
        for name in RUNS if round_ % 2 == 0 else reversed(list(RUNS)):
            model = copy.deepcopy(base)
            gc.collect()
            seconds = RUNS[name](model, DataLoader(dataset, batch_size=128, shuffle=True), args.epochs)
            if round_:
                times[name].append(seconds)
    plain = times["plain loop, scalar loss"]
    print(f"4096 samples, batch 128, {args.epochs} epochs x {args.rounds} rounds, torch {torch.__version__}")
    for name, values in times.items():
        ratio = statistics.median(v / p for v, p in zip(values, plain))
        print(f"  {name:34s} median {statistics.median(values) * 1e6:8.1f} us/step  ratio {ratio:.3f}x")


if __name__ == "__main__":
    main()
