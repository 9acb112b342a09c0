"""Overhead of onthefly_nb against a plain PyTorch loop on the reference quickstart.

Both train the same tiny MLP on the same data with the same loader settings, interleaved
round by round in one process, so machine noise hits both alike. Each round trains
``--epochs`` epochs; the printed figure is the median time per optimizer step over rounds.

Three pairs are measured:
- script: the plain loop and ``Session.run()`` on the calling thread (``python train.py``);
- notebook: the plain loop on a background thread and ``Session.start()`` (what a kernel does);
- own loop: the plain loop as the user writes it, and the same loop under ``session.track()``;
- lightning: the same model as a LightningModule under plain ``lightning.Trainer.fit`` and under
  ``fit`` with ``attach_lightning`` (skipped when Lightning is not installed).
The notebook pair compares like with like: with GNU OpenMP, once the main thread has run
parallel torch work, parallel work on any other thread is throttled, whoever runs it; the
printed thread penalty (plain loop on a thread / on the calling thread) shows that cost.

    .venv/bin/python bench/overhead.py [--device cuda] [--model conv --batch-size 256] [--rounds 20]
        [--epochs 2] [--pairs script,lightning]
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import logging
import statistics
import threading
import time

import torch
from problems import PROBLEMS, make_problem  # bench/problems.py, beside this script
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session, attach_lightning


def plain_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> float:
    """The loop a user writes by hand (the baseline); returns seconds per step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    start = time.perf_counter()
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
    return (time.perf_counter() - start) / steps


def plain_on_thread(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> float:
    """The plain loop on a background thread, as a kernel would have to run it."""
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.append(plain_loop(model, loader, epochs, device)))
    thread.start()
    thread.join()
    return result[0]


def onthefly_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device,
                  background: bool) -> float:
    """The same training through a Session, recording every sample's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    session = Session(model, optimizer, nn.CrossEntropyLoss(), loader, max_epochs=epochs, device=device)
    start = time.perf_counter()
    session.start().wait() if background else session.run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert int(session.store.seen.sum()) == epochs * len(loader.dataset)
    return seconds / session.global_step


def tracked_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> float:
    """The plain loop, unchanged but for ``session.track()``: its batches, one ``run.record`` a step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    session = Session(model, optimizer, loss_fn, loader, max_epochs=epochs, device=device)
    start = time.perf_counter()
    with session.track() as run:
        for indices, (x, y) in run.batches():
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            outputs = model(x)
            loss_fn(outputs, y).backward()
            optimizer.step()
            run.record(indices, outputs, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert int(session.store.seen.sum()) == epochs * len(loader.dataset)
    return seconds / session.global_step


def lightning_loop(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device, attached: bool) -> float:
    """The model as a LightningModule trained by ``lightning.Trainer.fit``, with or without onthefly."""
    import lightning.pytorch as pl

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no tips or "fit stopped" lines

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.loss = model, nn.CrossEntropyLoss()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self.loss(self(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    module = Module()
    trainer = pl.Trainer(max_epochs=epochs, accelerator=device.type, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    if attached:
        attach_lightning(trainer=trainer, model=module, train_loader=loader, loss_fn=module.loss, display=False,
                         recluster_seconds=None, health_every=None)
    start = time.perf_counter()
    trainer.fit(module, loader)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / trainer.global_step


PAIRS = {
    "script": {"plain (calling thread)": plain_loop,
               "onthefly_nb run()": lambda *a: onthefly_loop(*a, background=False)},
    "notebook": {"plain (background thread)": plain_on_thread,
                 "onthefly_nb start()": lambda *a: onthefly_loop(*a, background=True)},
    "own loop": {"plain (calling thread)": plain_loop, "the same loop, session.track()": tracked_loop},
    "lightning": {"plain Lightning fit": lambda *a: lightning_loop(*a, attached=False),
                  "Lightning + attach_lightning": lambda *a: lightning_loop(*a, attached=True)},
}


def measure(runs: dict, base: nn.Module, dataset: TensorDataset, args: argparse.Namespace,
            device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each run in each round, interleaved round by round (round 0 warms up)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds + 1):
        names = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in names:
            loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
            model = copy.deepcopy(base).to(device)
            gc.collect()  # leave no garbage from the previous run to be collected inside this one
            seconds = runs[name](model, loader, args.epochs, device)
            if round_ > 0:
                times[name].append(seconds)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", choices=PROBLEMS, default="mlp", help="mlp (the reference quickstart) or conv")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"which of {', '.join(PAIRS)} to measure "
                        "(comma-separated)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset, base = make_problem(args.model, args.samples)
    print(f"{args.model}, device {device}, {args.samples} samples, batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.rounds} rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    median: dict[str, float] = {}
    pairs = [p for p in args.pairs.split(",") if p != "lightning" or importlib.util.find_spec("lightning")]
    for pair in pairs:
        runs = PAIRS[pair]
        times = measure(runs, base, dataset, args, device)
        plain, ours = runs
        for name in runs:
            median[name] = statistics.median(times[name])
            print(f"{pair:9s} {name:27s} median {median[name] * 1e6:8.1f} us/step, "
                  f"best {min(times[name]) * 1e6:8.1f}")
        paired = statistics.median(o / p for o, p in zip(times[ours], times[plain]))
        best = min(times[ours]) / min(times[plain])
        print(f"{pair:9s} ratio {paired:.3f}x (median of per-round ratios; best of rounds {best:.3f}x)")
    if {"script", "notebook"} <= set(pairs):
        penalty = median["plain (background thread)"] / median["plain (calling thread)"]
        print(f"thread penalty (plain loop on a background thread / on the calling thread): {penalty:.3f}x")


if __name__ == "__main__":
    main()
