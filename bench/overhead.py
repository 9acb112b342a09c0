"""Overhead of onthefly_nb against a plain PyTorch loop on the reference quickstart.

Both train the same tiny MLP on the same data with the same loader settings, interleaved
round by round in one process, so machine noise hits both alike. Each round trains
``--epochs`` epochs; the printed figure is the median time per optimizer step over rounds.

    .venv/bin/python bench/overhead.py [--device cuda] [--rounds 15] [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session


def make_problem(samples: int, seed: int = 0) -> tuple[TensorDataset, nn.Module]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 28 * 28, generator=generator)
    y = (x[:, :50].sum(dim=1) > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 2))
    return TensorDataset(x, y), model


def plain_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> int:
    """The loop a user writes by hand: the baseline."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps


def onthefly_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> int:
    """The same training through a Session, recording every sample's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), loader, max_epochs=epochs, device=device)
    session.start().wait()
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert int(session.store.seen.sum()) == epochs * len(loader.dataset)
    return session.global_step


def timed(run, *args) -> float:
    start = time.perf_counter()
    steps = run(*args)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)
    dataset, base = make_problem(args.samples)
    times: dict[str, list[float]] = {"plain": [], "onthefly": []}
    runs = {"plain": plain_loop, "onthefly": onthefly_loop}
    for round_ in range(args.rounds + 1):
        order = ("plain", "onthefly") if round_ % 2 == 0 else ("onthefly", "plain")
        for name in order:
            loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
            seconds = timed(runs[name], copy.deepcopy(base).to(device), loader, args.epochs, device)
            if round_ > 0:  # round 0 warms up both
                times[name].append(seconds)
    plain, ours = (statistics.median(times[k]) for k in ("plain", "onthefly"))
    print(f"device {device}, {args.samples} samples, batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.rounds} rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"plain loop      median {plain * 1e6:8.1f} us/step")
    print(f"onthefly_nb     median {ours * 1e6:8.1f} us/step")
    print(f"ratio           {ours / plain:.3f}x")


if __name__ == "__main__":
    main()
