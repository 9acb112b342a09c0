"""Runs for tests/test_distributed.py. ``single``: one process trains on the global batches a
2-rank launch would train on. Under ``torchrun --nproc_per_node=2`` (gloo): ``ddp`` trains the
same with DistributedDataParallel and a DistributedSampler; ``pause`` pauses from rank 0 and
checks that rank 1 stops too. Results go to JSON/npy files in the output folder."""

import json
import os
import sys
import threading
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from onthefly_nb import Session

N, BATCH, EPOCHS, SEED = 512, 16, 3, 0
mode, out = sys.argv[1], sys.argv[2]
g = torch.Generator().manual_seed(1)
x = torch.randn(N, 8, generator=g)
data = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


class GlobalBatches(Sampler):
    """Each step's batch is rank 0's batch then rank 1's, as DistributedSampler(shuffle, seed) deals them."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return N // (2 * BATCH)

    def __iter__(self):
        order = torch.randperm(N, generator=torch.Generator().manual_seed(SEED + self.epoch)).tolist()
        shards = order[0::2], order[1::2]
        for k in range(len(self)):
            yield shards[0][k * BATCH:(k + 1) * BATCH] + shards[1][k * BATCH:(k + 1) * BATCH]


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def session_of(net: nn.Module, loader: DataLoader, epochs: int) -> Session:
    return Session(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss(), loader,
                   max_epochs=epochs, recluster_seconds=None, health_every=None)


def save_store(session: Session, name: str) -> None:
    np.save(f"{out}/{name}.npy", session.slice(features=False).set_index("index").sort_index()
            [["loss", "loss_mean", "seen", "last_step", "hardness", "margin", "label", "prediction"]].to_numpy())


def write(name: str, facts: dict) -> None:
    with open(f"{out}/{name}.tmp", "w") as f:
        json.dump(facts, f)
    os.replace(f"{out}/{name}.tmp", f"{out}/{name}.json")


def read(name: str) -> dict:
    with open(f"{out}/{name}.json") as f:
        return json.load(f)


def pause_from_rank0(session: Session) -> None:
    """Pause at step 20 or later, watch rank 1 stand still through heartbeats, resume, then stop."""
    while session.global_step < 20:
        time.sleep(0.005)
    session.pause()
    time.sleep(0.3)
    before = read("rank1")
    time.sleep(2.5)  # longer than the heartbeat: rank 1 waits in collectives meanwhile
    after = read("rank1")
    facts = {"rank0_paused_at": session.global_step, "rank1_before": before, "rank1_after": after}
    session.resume()
    while session.global_step < facts["rank0_paused_at"] + 10:
        time.sleep(0.005)
    session.stop()
    write("pause", facts)


if __name__ == "__main__":
    if mode == "single":
        session = session_of(model(), DataLoader(data, batch_sampler=GlobalBatches()), EPOCHS)
        session.run()
        save_store(session, "single")
        sys.exit(0)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    loader = DataLoader(data, batch_size=BATCH, sampler=DistributedSampler(data, shuffle=True, seed=SEED))
    session = session_of(DistributedDataParallel(model()), loader, EPOCHS if mode == "ddp" else 10_000)
    pauser = threading.Thread(target=pause_from_rank0, args=(session,), daemon=True)
    if mode == "pause" and rank == 0:
        pauser.start()
    if mode == "pause" and rank == 1:
        def report() -> None:
            while True:
                write("rank1", {"step": session.global_step, "status": session.status})
                time.sleep(0.02)
        threading.Thread(target=report, daemon=True).start()
    session.run()
    if pauser.is_alive():
        pauser.join()  # it stopped the run and writes its facts next: exiting now would cut them off
    write(f"final{rank}", {"step": session.global_step, "status": session.status})
    if mode == "ddp" and rank == 0:
        save_store(session, "ddp")
    dist.barrier()
    dist.destroy_process_group()
