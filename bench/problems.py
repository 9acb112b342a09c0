"""The models and data the speed benchmarks train: the reference quickstart's MLP and a small conv net.

``mlp``: 784-64-2 on 28x28 inputs flattened, the label a sign of a sum (the reference quickstart's
shape). ``conv``: two 3x3 conv layers and a linear head on 3x32x32 inputs (CIFAR-sized), three
classes from which channel is brightest in a corner, the workload to run on a GPU with batch 256.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

PROBLEMS = ("mlp", "conv")


def make_problem(name: str, samples: int, seed: int = 0) -> tuple[TensorDataset, nn.Module]:
    """The data set and a freshly seeded model of the problem called ``name``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name == "mlp":
        x = torch.randn(samples, 28 * 28, generator=generator)
        y = (x[:, :50].sum(dim=1) > 0).long()
        model = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 2))
    elif name == "conv":
        x = torch.randn(samples, 3, 32, 32, generator=generator)
        y = x[:, :, :8, :8].mean(dim=(2, 3)).argmax(dim=1)
        model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * 8 * 8, 3))
    else:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    return TensorDataset(x, y), model
