"""The health checks against planted faults and healthy runs: which check says what on each.

Every scenario trains a small model on data made here with ``Session`` (validation on a held-out
split), or with Lightning's or Hugging Face's own trainer attached to a session (when those are
installed; ``pip install -e '.[dev]'``), then calls ``session.health()``. A fault counts as
caught when the check named for it warns or fails; a healthy run counts as a false alarm when
any check warns or fails. The table (one row per scenario, one column per check, P/W/F for
pass/warn/fail, . when it did not run) goes into docs/benchmarks.md.

    .venv/bin/python bench/health_faults.py
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from onthefly_nb import Session


def rule_data(n: int, seed: int, dim: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return TensorDataset(x, (x[:, :3].sum(1) > 0).long())


def mlp(dim: int = 10, hidden: int = 32, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))


class Slow(Dataset):
    """A dataset whose every sample takes 2 ms to load (an input-bound pipeline)."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        time.sleep(0.002)
        return self.data[i]


@dataclass
class Scenario:
    name: str
    expect: str | None  # the check that must warn or fail; None for a healthy run
    build: Callable[[], Session]


def session(model: nn.Module, train: Dataset, optimizer: torch.optim.Optimizer | None = None, epochs: int = 20,
            val: Dataset | None = None, **kwargs) -> Session:
    torch.manual_seed(0)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    return Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(train, batch_size=32, shuffle=True),
                   DataLoader(val if val is not None else rule_data(512, 1), batch_size=256), max_epochs=epochs,
                   recluster_seconds=None, health_every=None, **kwargs)


def healthy() -> Session:
    torch.manual_seed(0)
    return session(mlp(), rule_data(2048, 0))


def healthy_dropout() -> Session:
    torch.manual_seed(0)
    return session(mlp(hidden=64, dropout=0.5), rule_data(2048, 0))


def healthy_decayed() -> Session:
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    steps = 20 * 64
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    return session(model, rule_data(2048, 0), optimizer, scheduler=scheduler, scheduler_interval="step")


def nan_from_step() -> Session:
    data = rule_data(2048, 0)
    x = data.tensors[0].clone()
    x[::7, 0] = float("nan")  # from the first epoch on, every few batches hold a NaN input
    torch.manual_seed(0)
    return session(mlp(), TensorDataset(x, data.tensors[1]), epochs=3, stop_on_nan=False)


def too_high_lr() -> Session:
    torch.manual_seed(0)
    model = mlp()
    return session(model, rule_data(2048, 0), torch.optim.SGD(model.parameters(), lr=20.0), epochs=5)


def growing_lr() -> Session:
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.03 ** step)  # x2 every 23 steps
    return session(model, rule_data(2048, 0), optimizer, epochs=5, stop_on_nan=False, scheduler=scheduler,
                   scheduler_interval="step")


def dead_relus() -> Session:
    torch.manual_seed(0)
    model = mlp(hidden=64)
    with torch.no_grad():
        model[0].bias[:48] = -20.0  # three quarters of the hidden units never fire
    return session(model, rule_data(2048, 0), epochs=5)


def vanishing() -> Session:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(10, 16)]
    for _ in range(30):
        layers += [nn.Sigmoid(), nn.Linear(16, 16)]
    model = nn.Sequential(*layers, nn.Sigmoid(), nn.Linear(16, 2))
    return session(model, rule_data(2048, 0), torch.optim.SGD(model.parameters(), lr=0.01), epochs=3)


def input_bound() -> Session:
    torch.manual_seed(0)
    return session(mlp(), Slow(rule_data(512, 0)), epochs=2)


def overfitting() -> Session:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g)
    noisy = TensorDataset(x, torch.randint(0, 2, (64,), generator=g))  # labels unrelated to the inputs
    torch.manual_seed(0)
    model = mlp(hidden=256)
    return session(model, noisy, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=300)


def memorised_to_zero() -> Session:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 10, generator=g) * 10
    train = TensorDataset(x, torch.randint(0, 2, (32,), generator=g))
    torch.manual_seed(0)
    model = mlp(hidden=512)
    return session(model, train, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=800)


def lightning_module(lr: float) -> nn.Module:
    """A LightningModule over :func:`mlp` with SGD at ``lr`` (defined here: Lightning is optional)."""
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.loss = mlp(), nn.CrossEntropyLoss()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return self.loss(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    return Module()


def lightning_run(lr: float, epochs: int) -> Session:
    import lightning.pytorch as pl

    from onthefly_nb import attach_lightning

    torch.manual_seed(0)
    model = lightning_module(lr)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_epochs=epochs,
                         default_root_dir=tempfile.mkdtemp())
    loader = DataLoader(rule_data(2048, 0), batch_size=32, shuffle=True)
    return attach_lightning(trainer, model, train_loader=loader, val_loader=DataLoader(rule_data(512, 1), 256),
                            recluster_seconds=None, health_every=None, display=False)


def huggingface_run(lr: float, epochs: int) -> Session:
    import transformers

    from onthefly_nb.integrations.huggingface import attach_huggingface

    class Rule(Dataset):
        def __init__(self, data: TensorDataset) -> None:
            self.x, self.y = data.tensors

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": self.x[i], "labels": self.y[i]}

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = nn.functional.cross_entropy(logits, labels)
            return out

    torch.manual_seed(0)
    args = transformers.TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32,
                                          num_train_epochs=epochs, learning_rate=lr, report_to=[],
                                          save_strategy="no", logging_strategy="no", use_cpu=True,
                                          disable_tqdm=True, seed=0, optim="sgd")
    trainer = transformers.Trainer(model=Classifier(), args=args, train_dataset=Rule(rule_data(2048, 0)),
                                   eval_dataset=Rule(rule_data(512, 1)))
    return attach_huggingface(trainer, recluster_seconds=None, health_every=None, display=False)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


SCENARIOS = [
    Scenario("healthy", None, healthy),
    Scenario("healthy, dropout 0.5", None, healthy_dropout),
    Scenario("healthy, lr decayed to 0", None, healthy_decayed),
    Scenario("NaN inputs from step 0", "loss", nan_from_step),
    Scenario("lr 20 (stops on a NaN loss)", "learning rate", too_high_lr),
    Scenario("lr growing without bound", "loss trend", growing_lr),
    Scenario("dead ReLUs (3/4 of a layer)", "dead units", dead_relus),
    Scenario("vanishing gradients (31 sigmoids)", "gradients", vanishing),
    Scenario("input-bound loader", "data pipeline", input_bound),
    Scenario("overfitting (random labels)", "train/validation gap", overfitting),
    Scenario("memorised to zero loss", "train/validation gap", memorised_to_zero),
]
if installed("lightning"):
    SCENARIOS += [Scenario("Lightning, healthy", None, lambda: lightning_run(0.1, 10)),
                  Scenario("Lightning, lr 20", "learning rate", lambda: lightning_run(20.0, 3))]
if installed("transformers") and installed("accelerate"):
    SCENARIOS += [Scenario("Hugging Face, healthy (linear decay to 0)", None, lambda: huggingface_run(0.1, 10)),
                  Scenario("Hugging Face, lr 20", "learning rate", lambda: huggingface_run(20.0, 3))]


def main() -> None:
    logging.getLogger("onthefly_nb").setLevel(logging.ERROR)
    rows, verdicts = {}, []
    for scenario in SCENARIOS:
        run = scenario.build()
        try:
            run.run()
        except FloatingPointError:
            pass
        findings = run.health()
        rows[scenario.name] = dict(zip(findings["check"], findings["status"].str[0].str.upper()))
        alarms = set(findings.loc[findings["status"] != "pass", "check"])
        if scenario.expect is None:
            verdicts.append((scenario.name, "healthy", "no alarm" if not alarms else f"FALSE ALARM: {sorted(alarms)}"))
        else:
            caught = scenario.expect in alarms
            verdicts.append((scenario.name, scenario.expect, "caught" if caught else "MISSED"))
    table = pd.DataFrame(rows).T.fillna(".")
    print(table.to_string())
    print()
    print(pd.DataFrame(verdicts, columns=["scenario", "its check", "verdict"]).to_string(index=False))


if __name__ == "__main__":
    main()
