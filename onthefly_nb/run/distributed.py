"""Runs launched with ``torchrun`` on PyTorch's own ``torch.distributed``: one session per rank.

Every rank records its shard's per-sample values; rank 0 alone keeps the store and hosts the
dashboard. After each step rank 0 broadcasts one small word (flush now? anything asked?); at a
flush every rank hands its pending visits to rank 0 in fixed-size tensors (no Python objects per
sample), and rank 0 joins the ranks' batches of each step into one global batch, so the store
(hardness included) is what one process training on the global batches would keep. When
something was asked, rank 0 serves it at its step boundary and broadcasts the verdict: go, stop,
or paused (repeated every second while paused, so no collective times out), so every rank
pauses and stops at the same step. Works with gloo on CPU and NCCL on GPUs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

GO, STOP, PAUSED = 0, 1, 2


class Ranks:
    """This process's place in the launch and the collectives the session needs."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    @classmethod
    def current(cls) -> Ranks | None:
        """The launch this process belongs to, if it has more than one rank."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls()
        return None

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def _broadcast(self, values: list[int]) -> list[int]:
        word = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.broadcast(word, src=0)
        return word.tolist()

    def word(self, flush: bool, attention: bool) -> tuple[bool, bool]:
        """Rank 0's (flush now, something asked) for this step, on every rank."""
        flush_now, asked = self._broadcast([int(flush), int(attention)])
        return bool(flush_now), bool(asked)

    def verdict(self, value: int = GO) -> int:
        """Rank 0's verdict after serving its boundary (GO, STOP or PAUSED), on every rank."""
        return self._broadcast([value])[0]

    def gather_visits(self, columns: np.ndarray, indices: np.ndarray, sizes: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every rank's pending visits, joined step by step into global batches on rank 0 (columns
        [C, n], dataset indices [n], samples per step [k]); None on the other ranks."""
        count = torch.tensor([len(indices)], dtype=torch.int64, device=self.device)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        width = int(max(c.item() for c in counts))
        packed = torch.full((columns.shape[0] + 1, width), float("nan"), dtype=torch.float64, device=self.device)
        packed[0, : len(indices)] = torch.from_numpy(indices.astype(np.float64))
        packed[1:, : len(indices)] = torch.from_numpy(columns.astype(np.float64))
        step_sizes = torch.from_numpy(sizes.astype(np.int64)).to(self.device)
        everything = [torch.empty_like(packed) for _ in range(self.world)]
        every_size = [torch.empty_like(step_sizes) for _ in range(self.world)]
        dist.all_gather(everything, packed)
        dist.all_gather(every_size, step_sizes)
        if not self.lead:
            return None
        parts = []
        for block, n, step_size in zip(everything, counts, every_size):
            block = block[:, : int(n.item())].cpu().numpy()
            parts.append(np.split(block, np.cumsum(step_size.cpu().numpy())[:-1], axis=1))
        steps = [np.concatenate([rank_parts[k] for rank_parts in parts], axis=1) for k in range(len(sizes))]
        joined = np.concatenate(steps, axis=1)
        return (joined[1:].astype(columns.dtype), joined[0].astype(np.int64),
                np.array([s.shape[1] for s in steps], dtype=np.int64))


def unwrapped(model: Any) -> Any:
    """The module inside a DistributedDataParallel wrapper (evaluations on rank 0 alone must not
    run the wrapper's collectives), or the model itself."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
