"""The training order onthefly-ai 0.1.4's ``fit`` gives a loader, so that a reference script draws
the same batches here as there.

``seeded_loader`` is its ``deterministic_pauses`` (the default): a loader that shuffles (or not)
through the default samplers is redrawn from a generator seeded with ``seed``, and loader workers
are seeded with ``seed + worker_id``. Unlike 0.1.4 it leaves loaders with a custom sampler or
batch sampler as they are (0.1.4 silently replaces them with a plain shuffle). ``ordered_loader``
is its ``data_order_policy="epoch_reseed"`` / ``"fixed_order"``: each epoch's order is
``torch.randperm(n)`` from a generator seeded with ``seed + epoch`` (or ``seed`` every epoch).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler

ORDER_POLICIES = ("user", "epoch_reseed", "fixed_order")


def seeded_loader(loader: DataLoader, seed: int) -> DataLoader:
    """``loader`` drawing its order from a generator seeded with ``seed`` (0.1.4's clone)."""
    sampler = getattr(loader, "sampler", None)
    default = isinstance(sampler, (RandomSampler, SequentialSampler)) and type(loader.batch_sampler) is BatchSampler
    if not default or (isinstance(sampler, RandomSampler) and sampler.replacement):
        return loader
    generator = torch.Generator().manual_seed(seed)
    return _rebuilt(loader, seed, shuffle=isinstance(sampler, RandomSampler), generator=generator)


def ordered_loader(loader: DataLoader, seed: int, fixed: bool) -> DataLoader:
    """``loader`` whose order each epoch is a permutation seeded by ``seed`` and the epoch."""
    return _rebuilt(loader, seed, sampler=EpochSeededSampler(len(loader.dataset), seed, fixed))  # type: ignore[arg-type]


def _rebuilt(loader: DataLoader, seed: int, **order: Any) -> DataLoader:
    options: dict[str, Any] = dict(
        batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
        persistent_workers=loader.persistent_workers, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, **order)
    if loader.num_workers > 0:
        options["worker_init_fn"] = functools.partial(seed_worker, seed=seed, then=loader.worker_init_fn)
        options["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, **options)


def seed_worker(worker_id: int, seed: int, then: Callable[[int], None] | None) -> None:
    """Seed a loader worker's Python, numpy and torch RNGs with ``seed + worker_id``, then the user's own."""
    random.seed(seed + worker_id)
    np.random.seed(seed + worker_id)
    torch.manual_seed(seed + worker_id)
    if then is not None:
        then(worker_id)


class EpochSeededSampler(Sampler[int]):
    """A permutation of ``size`` indices per epoch, from ``seed + epoch`` (``seed`` alone if ``fixed``).
    The loop calls ``set_epoch`` before each epoch, as for a DistributedSampler."""

    def __init__(self, size: int, seed: int, fixed: bool) -> None:
        self.size, self.seed, self.fixed = size, seed, fixed
        self.epoch = 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + (0 if self.fixed else self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())
