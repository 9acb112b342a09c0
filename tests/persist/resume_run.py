"""A small run for the resume test: ``full`` trains to N steps in one go; ``part`` trains to K
and exports; ``reexport`` loads that export and exports it again before any step; ``resume``
loads the latest export in this fresh process and trains on to N. With the case ``reweight``
every run samples the first 100 samples 3x as often from step 40 on (mid-epoch). Each saves its
final weights, optimizer state and per-sample store for comparison."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session

K, N = 45, 130  # 32 batches an epoch: K stops part-way through the second, N in the fifth
mode, out, workers, persistent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
case = sys.argv[5] if len(sys.argv) > 5 else "plain"
REWEIGHT_AT = 40
g = torch.Generator().manual_seed(1)
x = torch.randn(1000, 8, generator=g)
data = TensorDataset(x, (x[:, 0] + 0.3 * torch.randn(1000, generator=g) > 0).long())


def build() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return {"model": model, "optimizer": optimizer, "loss_fn": nn.CrossEntropyLoss(),
            "scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5),
            "train_loader": DataLoader(data, batch_size=32, shuffle=True, num_workers=workers,
                                       persistent_workers=persistent),
            "val_loader": DataLoader(data, batch_size=250)}


if __name__ == "__main__":
    if mode in ("resume", "reexport"):
        again = Path(f"{out}/session-again.zip")
        session = Session.load(again if again.exists() else f"{out}/session.zip", **build(), recluster_seconds=None)
        if mode == "reexport":
            session.start(paused=True)
            session.export(again)
            session.stop()
            sys.exit(0)
        session.run()
    else:
        torch.manual_seed(123)
        session = Session(**build(), max_epochs=100, max_steps=N, recluster_seconds=None)
        session.start(paused=True)
        if case == "reweight":
            session.step(REWEIGHT_AT)
            session.reweight(list(range(100)), factor=3)
        session.step(K - session.global_step)
        if mode == "part":
            session.export(f"{out}/session.zip")
            session.stop()
            sys.exit(0)
        session.resume().wait()
    torch.save({"model": session.model.state_dict(), "optimizer": session.optimizer.state_dict(),
                "store": torch.from_numpy(session.store.block.copy()), "step": session.global_step,
                "epoch": session.epoch, "events": [e["kind"] for e in session.events]}, f"{out}/{mode}.pt")
