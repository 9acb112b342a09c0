"""Batches keyed by dataset index: a loader wrapper, batch unpacking and device moves.

The training loader is rebuilt around :class:`IndexedDataset`, whose ``__getitems__``
hands the batch's dataset indices to :class:`IndexedCollate` alongside the samples.
The index therefore travels with its batch through shuffling, worker processes and
custom ``collate_fn`` functions, at the cost of one extra call per batch. Its batch
sampler is a :class:`SteerableBatchSampler`: the user's, unless sampling weights are set.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    Sampler,
    WeightedRandomSampler,
    default_collate,
)

from ..errors import BatchFormatError, ConfigurationError, EmptyLoaderError
from ..run.determinism import capture_rng, restore_rng

INPUT_KEYS = ("inputs", "input", "x", "features", "image", "images", "pixel_values", "input_ids")
TARGET_KEYS = ("targets", "target", "labels", "label", "y")

Unpack = Callable[[Any], tuple[Any, Any]]


class IndexedItems(NamedTuple):
    """The samples of one batch and their dataset indices, before collation."""

    indices: list[int]
    items: list[Any]


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that each fetched batch carries its indices."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> IndexedItems:
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        return IndexedItems(indices, items)


class IndexedCollate:
    """Collates samples with the user's ``collate_fn`` and returns ``(indices, batch)``.

    The indices stay a plain list: the recorder converts a whole flush of them at once.
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, fetched: IndexedItems) -> tuple[list[int], Any]:
        try:
            return fetched.indices, self.collate_fn(fetched.items)
        except RuntimeError as exc:
            if self.collate_fn is not default_collate or "equal size" not in str(exc):
                raise
            raise BatchFormatError(
                f"the samples of a batch have different shapes, so they cannot be stacked into one tensor "
                f"(indices {fetched.indices[:4]}...: {exc}). Give the DataLoader a collate_fn that pads them "
                f"(e.g. torch.nn.utils.rnn.pad_sequence), or resize the samples to one shape."
            ) from None


RngStates = dict[str, Any]  # capture_rng() and the states of the loader's own generators
EpochDraw = dict[str, Any]  # the RNG states an epoch's order was drawn from, and the weights it was drawn with


class SteerableBatchSampler(Sampler[list[int]]):
    """The loader's own batch sampler, which can be steered between epochs: ``weights`` (one per
    sample) make each epoch draw as many batches with replacement in those proportions, and
    :meth:`replay` restarts an epoch part-way, in the order it was first drawn (resuming a saved
    session). ``epoch_draw`` is how the epoch under way drew its order."""

    def __init__(self, batches: Any, batch_size: int, generator: torch.Generator | None) -> None:
        self.batches = batches
        self.batch_size = batch_size
        self.generator = generator
        own = [generator, getattr(batches, "generator", None), getattr(getattr(batches, "sampler", None),
                                                                      "generator", None)]
        self.generators = list({id(g): g for g in own if g is not None}.values())
        self.weights: torch.Tensor | None = None
        self.epoch_draw: EpochDraw | None = None  # None until the epoch under way has drawn its order
        self._replay: tuple[EpochDraw, int, Callable[[], None]] | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return self._drawn()

    def _drawn(self) -> Iterator[list[int]]:
        """The epoch's batches. This body starts at the first ``next()``, the moment the inner
        sampler draws its order: the RNG states are kept then (or, replaying, put back for the
        draw and followed by the saved step's). A DataLoader may call ``iter()`` and drop the
        result unstarted."""
        replay, self._replay = self._replay, None
        if replay is None:
            draw, skip, then = {"rng": self.rng_states(), "weights": self.weights}, 0, None
        else:
            draw, skip, then = replay
            self.set_rng_states(draw["rng"])
        self.epoch_draw = draw
        batches = iter(self._source(draw["weights"]))
        first = next(batches, None)  # the order is drawn here
        if then is not None:
            then()
        if first is not None:
            yield from itertools.islice(itertools.chain([first], batches), skip, None)

    def _source(self, weights: torch.Tensor | None) -> Any:
        if weights is None:
            return self.batches
        draws = WeightedRandomSampler(weights, len(self.batches) * self.batch_size, generator=self.generator)
        return BatchSampler(draws, self.batch_size, drop_last=False)

    def replay(self, draw: EpochDraw, skip: int, then: Callable[[], None]) -> None:
        """Make the next epoch the one drawn by ``draw``, less its first ``skip`` batches; ``then``
        runs right after the order is drawn (before any batch is fetched)."""
        self._replay = (draw, skip, then)

    @property
    def draw_in_effect(self) -> EpochDraw | None:
        """How the epoch under way drew (or, resuming, will draw) its order."""
        return self._replay[0] if self._replay is not None else self.epoch_draw

    def rng_states(self) -> RngStates:
        """Every RNG an order can be drawn from: Python's, numpy's, torch's and the loader's own generators."""
        return {"global": capture_rng(), "generators": [g.get_state() for g in self.generators]}

    def set_rng_states(self, states: RngStates) -> None:
        restore_rng(states["global"])
        for generator, state in zip(self.generators, states["generators"]):
            generator.set_state(state)

    def reweight(self, weights: np.ndarray | None) -> None:
        """Sample in proportion to ``weights`` from the next epoch on (None: the loader's own order)."""
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)


class IndexTape(Sampler[list[int]]):
    """A loader's batch sampler that remembers the index lists it hands out, in order, so that a
    trainer onthefly does not drive (Lightning, Hugging Face) still yields batches whose dataset
    indices are known: the loader's iterator fetches batches in the order the sampler drew them."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches
        self._drawn: deque[list[int]] = deque()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        self._drawn.clear()  # a new epoch: what the last one prefetched was never trained on
        for batch in self.batches:
            indices = list(batch)
            self._drawn.append(indices)
            yield indices

    def pop(self) -> list[int]:
        """The dataset indices of the next batch the trainer trains on."""
        return self._drawn.popleft()

    @classmethod
    def install(cls, loader: DataLoader) -> IndexTape:
        """Put a tape around ``loader``'s batch sampler, in place (the trainer keeps the same loader)."""
        if isinstance(loader.batch_sampler, IndexTape):
            return loader.batch_sampler
        tape = cls(loader.batch_sampler)
        object.__setattr__(loader, "batch_sampler", tape)  # DataLoader forbids it after __init__; we keep its batches
        return tape


def check_loader(loader: Any, name: str) -> DataLoader:
    """Check that ``loader`` is a batched DataLoader over a non-empty, sized dataset."""
    if not isinstance(loader, DataLoader):
        raise ConfigurationError(
            f"{name} must be a torch.utils.data.DataLoader, got {type(loader).__name__}. "
            f"Wrap your dataset: DataLoader(dataset, batch_size=..., shuffle=...)."
        )
    if isinstance(loader.dataset, IterableDataset):
        raise ConfigurationError(
            f"{name}'s dataset ({type(loader.dataset).__name__}) is an IterableDataset. Per-sample losses "
            f"are keyed by dataset index, so onthefly_nb needs a map-style dataset with __len__ and "
            f"__getitem__; wrap the samples in one (e.g. a list, a TensorDataset, or a Dataset subclass)."
        )
    try:
        size = len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(
            f"{name}'s dataset ({type(loader.dataset).__name__}) has no length. Per-sample "
            f"losses are keyed by dataset index, so onthefly_nb needs a map-style dataset "
            f"with __len__ and __getitem__ (not an IterableDataset)."
        ) from None
    if loader.batch_sampler is None:
        raise ConfigurationError(
            f"{name} was built with batch_size=None; per-sample losses need batches. "
            f"Pass batch_size=... (or a batch_sampler) to the DataLoader."
        )
    if size == 0 or len(loader) == 0:
        raise EmptyLoaderError(
            f"{name} yields no batches (dataset of {size} samples, batch_size="
            f"{loader.batch_size}, drop_last={loader.drop_last}). Give it data, or lower "
            f"batch_size / set drop_last=False."
        )
    return loader


def indexed_loader(loader: DataLoader) -> DataLoader:
    """A DataLoader like ``loader`` whose batches come as ``(indices, batch)``.

    It draws from the original batch sampler (so shuffling, its generator and drop_last
    are unchanged) through a :class:`SteerableBatchSampler`, and keeps workers, pinning,
    timeouts and worker init functions.
    """
    batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None) or 1
    options: dict[str, Any] = {
        "batch_sampler": SteerableBatchSampler(loader.batch_sampler, batch_size, loader.generator),
        "num_workers": loader.num_workers,
        "collate_fn": IndexedCollate(loader.collate_fn),
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    for optional in ("pin_memory_device", "in_order"):
        if hasattr(loader, optional):
            options[optional] = getattr(loader, optional)
    return DataLoader(IndexedDataset(loader.dataset), **options)


def default_unpack(batch: Any) -> tuple[Any, Any]:
    """Split a batch into ``(inputs, targets)``: a pair, a longer tuple, or a dict."""
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        inputs = next((batch[k] for k in INPUT_KEYS if k in batch), None)
        targets = next((batch[k] for k in TARGET_KEYS if k in batch), None)
        if inputs is not None and targets is not None:
            return inputs, targets
        raise BatchFormatError(
            f"cannot find inputs and targets in a dict batch with keys {sorted(batch)}. "
            f"Name them one of {INPUT_KEYS} and {TARGET_KEYS}, or pass "
            f"unpack=lambda batch: (batch['my_inputs'], batch['my_targets'])."
        )
    raise BatchFormatError(
        f"cannot split a batch of type {type(batch).__name__} into inputs and targets. "
        f"Yield (inputs, targets) pairs, or pass unpack=lambda batch: (inputs, targets)."
    )


def to_device(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in a (nested) tuple, list or dict to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in value]
        return type(value)(*moved) if hasattr(value, "_fields") else type(value)(moved)
    return value
