"""Scripts written for the reference product (onthefly-ai 0.1.4) run unchanged here and train to the
same weights: every keyword of its Trainer, fit and attach_lightning is taken, and the training
semantics of 0.1.4's fit (seed 42 and a seeded training order, gradient clipping at 1.0, the
scheduler stepped per batch, validation every epoch) are compared bit for bit with a plain loop
written with those semantics. docs/reference-api.md is the table of names."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, same_weights
from jupyter_client.manager import start_new_kernel
from jupyter_helpers import run_in_kernel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import onthefly
from onthefly import Trainer, attach_lightning, quickstart
from onthefly_nb.dashboard.bridge import default_port

# The keywords of onthefly-ai 0.1.4 (read from its wheel), by function.
TRAINER_KEYWORDS = ("project", "run_name", "max_epochs", "max_steps", "do_test_after", "val_every_n_epochs",
                    "dashboard_host", "dashboard_port", "auto_connect", "connect_timeout", "reconnect_interval",
                    "backlog_limit", "session_defaults")
FIT_KEYWORDS = ("model", "optimizer", "loss_fn", "train_loader", "val_loader", "test_loader", "run_name",
                "scheduler", "device", "amp", "grad_clip_norm", "seed", "embedding_hook", "model_factory",
                "data_order_policy", "deterministic_pauses", "enforce_sampler_state", "val_every_n_epochs")
LIGHTNING_KEYWORDS = ("trainer", "model", "datamodule", "project", "run_name", "save_dir", "auto_connect",
                      "channel", "channel_kwargs", "log_every_n_steps", "train_loader", "val_loader",
                      "test_loader", "loss_fn", "model_factory", "embedding_hook", "do_test_after")
DEFAULTS = {
    Trainer.__init__: {"max_epochs": None, "max_steps": None, "do_test_after": False, "val_every_n_epochs": 1,
                       "dashboard_host": "127.0.0.1", "auto_connect": True},
    Trainer.fit: {"grad_clip_norm": 1.0, "seed": 42, "amp": True, "data_order_policy": "user",
                  "deterministic_pauses": True, "enforce_sampler_state": True, "val_every_n_epochs": None},
    attach_lightning: {"do_test_after": False, "auto_connect": True, "log_every_n_steps": 1, "loss_fn": None},
}


@pytest.mark.parametrize(("function", "names"), [(Trainer.__init__, TRAINER_KEYWORDS), (Trainer.fit, FIT_KEYWORDS),
                                                 (attach_lightning, LIGHTNING_KEYWORDS)])
def test_every_keyword_of_the_reference_is_taken_with_its_default(function, names):
    parameters = inspect.signature(function).parameters
    assert not set(names) - set(parameters), f"missing: {sorted(set(names) - set(parameters))}"
    for name, default in DEFAULTS[function].items():
        assert parameters[name].default == default, name


def test_the_reference_names_import():
    from onthefly.wrappers.lightning import attach_lightning as wrapped

    assert wrapped is attach_lightning and isinstance(onthefly.__version__, str)
    assert callable(Trainer.close)


class Net(nn.Module):
    """A model with dropout: the global RNG's draws during training count too."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def problem(seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 10, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


def reference_semantics(model, optimizer, scheduler, loss_fn, loader, *, max_epochs=None, max_steps=None,
                        clip=1.0, seed=42, seeded_order=True):
    """The plain loop onthefly-ai 0.1.4's fit runs, written out: seed after the user's objects exist,
    the training order from a generator seeded with ``seed``, clip, step, scheduler per batch."""
    torch.manual_seed(seed)
    if seeded_order:
        loader = DataLoader(loader.dataset, batch_size=loader.batch_size,
                            shuffle=isinstance(loader.sampler, torch.utils.data.RandomSampler),
                            generator=torch.Generator().manual_seed(seed))
    step, epoch = 0, 0
    while (max_epochs is None or epoch < max_epochs) and (max_steps is None or step < max_steps):
        for x, y in loader:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            (loss.mean() if loss.ndim else loss).backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            step += 1
            if scheduler is not None:
                scheduler.step()
            if max_steps is not None and step >= max_steps:
                break
        epoch += 1


def objects(shuffle: bool = True):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    return model, optimizer, scheduler, DataLoader(problem(), batch_size=32, shuffle=shuffle)


CASES = {
    "two epochs": ({"max_epochs": 2}, {}, {}),
    "max_steps alone": ({"max_steps": 7}, {}, {}),
    "max_steps within epochs": ({"max_epochs": 3, "max_steps": 10}, {}, {}),
    "no clipping, unreduced loss": ({"max_epochs": 2}, {"grad_clip_norm": None, "loss": "none"}, {"clip": None}),
    "scalar lambda loss, seed 7": ({"max_epochs": 2}, {"seed": 7, "loss": "lambda"}, {"seed": 7}),
    "no shuffle, validation every 2": ({"max_epochs": 3, "val_every_n_epochs": 2}, {"shuffle": False}, {}),
    "the user's own order": ({"max_epochs": 2}, {"deterministic_pauses": False}, {"seeded_order": False}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_reference_script_trains_to_the_weights_of_the_reference_semantics(case):
    trainer_options, fit_options, loop_options = CASES[case]
    fit_options = dict(fit_options)
    losses = {"none": nn.CrossEntropyLoss(reduction="none"), "lambda": lambda out, y: nn.functional.cross_entropy(
        out, y) * 2.0}
    loss_fn = losses.get(fit_options.pop("loss", ""), nn.CrossEntropyLoss())
    shuffle = fit_options.pop("shuffle", True)

    model, optimizer, scheduler, loader = objects(shuffle)
    val = DataLoader(problem(2), batch_size=100)
    trainer = Trainer(project="compat", run_name=case.replace(" ", "-"), **trainer_options)
    session = trainer.fit(model=model, optimizer=optimizer, loss_fn=loss_fn, train_loader=loader, val_loader=val,
                          scheduler=scheduler, device="cpu", recluster_seconds=None, health_every=None, **fit_options)

    twin, twin_optimizer, twin_scheduler, twin_loader = objects(shuffle)
    limits = {k: v for k, v in trainer_options.items() if k in ("max_epochs", "max_steps")}
    reference_semantics(twin, twin_optimizer, twin_scheduler, loss_fn, twin_loader, **limits, **loop_options)

    assert session.status == "finished"
    for (name, ours), theirs in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(ours, theirs), f"{name} differs"
    assert optimizer.param_groups[0]["lr"] == twin_optimizer.param_groups[0]["lr"]
    epochs = session.parts.run.loop.epoch
    every = trainer_options.get("val_every_n_epochs", 1)
    assert len(session.metrics["validation"]) == epochs // every


def test_quickstart_trains_with_the_same_semantics():
    model, optimizer, _, loader = objects()
    session = quickstart(project="compat", run_name="quick", model=model, optimizer=optimizer,
                         loss_fn=nn.CrossEntropyLoss(), train_loader=loader, max_epochs=2, recluster_seconds=None)
    twin, twin_optimizer, _, twin_loader = objects()
    reference_semantics(twin, twin_optimizer, None, nn.CrossEntropyLoss(), twin_loader, max_epochs=2)
    assert session.status == "finished"
    assert same_weights(model, twin)


@pytest.mark.parametrize(("policy", "fixed"), [("epoch_reseed", False), ("fixed_order", True)])
def test_epoch_seeded_orders_follow_the_policy(policy, fixed):
    """0.1.4's data_order_policy: epoch e trains in the order randperm(n) seeded with 42 + e (42 if fixed)."""
    model, optimizer, _, loader = objects()
    session = Trainer(project="compat", run_name=policy, max_epochs=2).fit(
        model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader, device="cpu",
        data_order_policy=policy, recluster_seconds=None)
    assert session.status == "finished"
    order = torch.randperm(300, generator=torch.Generator().manual_seed(42 + (0 if fixed else 1))).tolist()
    last_step = session.store.last_step  # the step each sample was last trained at: in the second epoch
    batches = [set(order[i:i + 32]) for i in range(0, 300, 32)]
    trained = [{i for i in range(300) if last_step[i] == step} for step in range(len(loader), 2 * len(loader))]
    assert trained == batches


def test_an_unknown_order_policy_is_refused():
    model, optimizer, _, loader = objects()
    with pytest.raises(ValueError, match="data_order_policy must be one of"):
        Trainer(project="compat", run_name="bad", max_epochs=1).fit(
            model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader,
            data_order_policy="random")


def test_unbounded_runs_go_on_until_stopped():
    model, optimizer, _, loader = objects()
    session = Trainer(project="compat", run_name="forever", background=True).fit(
        model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader, device="cpu",
        recluster_seconds=None)
    try:
        session.wait_for(step=3 * len(loader) + 1, timeout=60)
        assert session.status == "running" and session.total_steps is None
        assert "?" in repr(session)
    finally:
        session.stop(timeout=30)
    assert session.status == "stopped"


def test_connection_keywords_are_taken_and_the_port_follows_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("ONTHEFLY_DASHBOARD_PORT", "0")
    assert default_port() == 47621  # not a port: the default
    monkeypatch.setenv("ONTHEFLY_DASHBOARD_PORT", "47733")
    assert default_port() == 47733
    with pytest.warns(UserWarning, match="127.0.0.1 only"):
        trainer = Trainer(project="compat", run_name="ports", max_steps=2, dashboard_host="0.0.0.0",
                          connect_timeout=3, reconnect_interval=1, backlog_limit=10, auto_connect=True)
    model, optimizer, _, loader = objects()
    session = trainer.fit(model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader,
                          device="cpu", recluster_seconds=None)
    assert "onthefly dashboard: http://127.0.0.1:47733/?token=" in capsys.readouterr().out
    assert session.parts.hosting.server.port == 47733
    trainer.close()
    quiet = Trainer(project="compat", run_name="quiet", max_steps=2, auto_connect=False)
    model, optimizer, _, loader = objects()
    quiet.fit(model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader, device="cpu")
    assert "onthefly dashboard" not in capsys.readouterr().out
    with pytest.raises(TypeError, match="unexpected keyword"):
        quiet.fit(model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader,
                  no_such_option=1)


def test_a_test_pass_is_labelled_and_session_defaults_give_the_save_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("ONTHEFLY_TEST_LABEL", raising=False)
    model, optimizer, _, loader = objects()
    trainer = Trainer(project="compat", run_name="tested", max_epochs=1, do_test_after=True,
                      session_defaults={"save_dir": str(tmp_path / "ckpt")}, auto_connect=False)
    session = trainer.fit(model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader,
                          test_loader=DataLoader(problem(3), batch_size=64), device="cpu")
    assert os.environ["ONTHEFLY_TEST_LABEL"] == "test_1" and session.metrics["test"]
    assert session.default_export_path().parent == tmp_path / "ckpt"
    session.test()
    assert os.environ["ONTHEFLY_TEST_LABEL"] == "test_2"
    with pytest.raises(TypeError, match="session_defaults got unexpected keys: amp"):
        Trainer(project="compat", run_name="x", session_defaults={"amp": False})


FIT_IN_A_KERNEL = """
import json, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly import Trainer
x = torch.randn(512, 8); y = (x[:, 0] > 0).long()
def objects():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(TensorDataset(x, y), batch_size=32,
                                                                         shuffle=True)
model, optimizer, loader = objects()
session = Trainer(project="kernel", run_name="blocking", max_epochs=3).fit(
    model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader, recluster_seconds=None)
blocked = [session.status, session.global_step]
model, optimizer, loader = objects()
later = Trainer(project="kernel", run_name="later", max_epochs=3, background=True).fit(
    model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(), train_loader=loader, recluster_seconds=None)
print(json.dumps([blocked, later.status in ("running", "idle")]))
"""


def test_in_a_notebook_fit_blocks_until_the_run_ends_and_background_returns_at_once():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        out = run_in_kernel(kc, FIT_IN_A_KERNEL, timeout=120)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert out.strip().splitlines()[-1] == '[["finished", 48], true]'


README_SCRIPT = """
import torch, torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly import Trainer

torch.manual_seed(0)
X = torch.randn(1024, 20); y = (X[:, :5].sum(dim=1) > 0).long()
train_loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)
val_loader = DataLoader(TensorDataset(X, y), batch_size=256)
model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()

trainer = Trainer(project="demo", run_name="baseline", max_epochs=3, val_every_n_epochs=1)
trainer.fit(
    model=model,
    optimizer=optimizer,
    loss_fn=loss_fn,
    train_loader=train_loader,
    val_loader=val_loader,
)
print("done", trainer.session.status, trainer.session.global_step)
"""


def test_the_reference_readme_script_runs_unchanged(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(README_SCRIPT))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done finished 48" in done.stdout and "onthefly dashboard: http://127.0.0.1:" in done.stdout
