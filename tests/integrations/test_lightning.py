"""attach_lightning: per-sample losses keyed by index from Lightning's own forward pass, and the
session's controls at Lightning's batch boundaries."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session, attach_lightning
from onthefly_nb.errors import ConfigurationError

pl = pytest.importorskip("lightning.pytorch")


class Classifier(pl.LightningModule):
    """A small classifier as the reference README writes one: a ``loss`` attribute and self(x) in training_step."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.loss = nn.CrossEntropyLoss()
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def data(n: int = 480) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long())


def lightning_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_the_reference_snippet_records_every_samples_loss_under_its_index(tmp_path):
    """With lr=0 the model never changes, so each sample's recorded loss must equal its loss
    under that model: the values are keyed by the right dataset index, under shuffling."""
    torch.manual_seed(0)
    model = Classifier(lr=0.0)
    train_loader = DataLoader(data(), batch_size=32, shuffle=True)
    val_loader = DataLoader(data(), batch_size=128)
    trainer = lightning_trainer(tmp_path, max_epochs=2)
    session = attach_lightning(trainer=trainer, model=model, project="demo", run_name="lightning-baseline",
                               train_loader=train_loader, val_loader=val_loader, loss_fn=model.loss,
                               recluster_seconds=None)
    trainer.fit(model, train_loader, val_loader)

    assert session.status == "finished" and session.global_step == 2 * len(train_loader) == trainer.global_step
    frame = session.slice(features=False).set_index("index").sort_index()
    assert (frame["seen"] == 2).all(), "every sample seen once an epoch"
    x, y = data().tensors
    with torch.no_grad():
        expected = nn.CrossEntropyLoss(reduction="none")(model(x), y)
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), expected, rtol=1e-5, atol=1e-6)
    validations = session.metrics["validation"]
    assert len(validations) == 2 and {"val_loss", "val_acc"} <= set(validations[-1])
    assert validations[-1]["loss"] == pytest.approx(validations[-1]["val_loss"])
    assert session.optimizer is trainer.optimizers[0]
    assert [e["kind"] for e in session.events].count("epoch_end") == 2


def test_pause_and_resume_a_lightning_fit_from_the_session(tmp_path):
    torch.manual_seed(0)
    model = Classifier()
    train_loader = DataLoader(data(), batch_size=16, shuffle=True, num_workers=2)
    trainer = lightning_trainer(tmp_path, max_epochs=500)
    session = attach_lightning(trainer=trainer, model=model, train_loader=train_loader, loss_fn=model.loss,
                               recluster_seconds=None)
    session.start()  # trainer.fit on the session's thread: the caller stays free
    try:
        while session.global_step < 20:
            time.sleep(0.01)
        session.pause()
        frozen = (session.global_step, trainer.global_step)
        time.sleep(0.5)
        assert (session.global_step, trainer.global_step) == frozen and session.status == "paused"
        session.step(7)
        assert session.global_step == frozen[0] + 7 and trainer.global_step == frozen[1] + 7
        session.resume()
        deadline = time.monotonic() + 30
        while session.global_step < frozen[0] + 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.global_step >= frozen[0] + 60, "training resumed"
    finally:
        session.stop()
    assert session.status == "stopped" and trainer.should_stop
    assert not [t for t in threading.enumerate() if t.name.startswith("onthefly-train-") and t.is_alive()]
    assert session.slice(features=False)["seen"].sum() == session.global_step * 16, "every step recorded"


def test_a_failing_training_step_fails_the_session_with_its_traceback(tmp_path):
    class Broken(Classifier):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                raise ValueError("bad batch")
            return super().training_step(batch, batch_idx)

    model = Broken()
    train_loader = DataLoader(data(), batch_size=32)
    trainer = lightning_trainer(tmp_path, max_epochs=1)
    session = attach_lightning(trainer=trainer, model=model, train_loader=train_loader, loss_fn=model.loss)
    with pytest.raises(ValueError, match="bad batch"):
        trainer.fit(model, train_loader)
    assert session.status == "failed" and "bad batch" in session.traceback and session.global_step == 3
    with pytest.raises(ValueError, match="bad batch"):
        session.wait()


def test_attach_lightning_says_what_it_needs(tmp_path):
    model = Classifier()
    loader = DataLoader(data(), batch_size=32)
    with pytest.raises(ConfigurationError, match="trainer must be a lightning.pytorch.Trainer"):
        attach_lightning(trainer=object(), model=model, train_loader=loader, loss_fn=model.loss)
    with pytest.raises(ConfigurationError, match="model must be a lightning.pytorch.LightningModule"):
        attach_lightning(trainer=lightning_trainer(tmp_path), model=nn.Linear(8, 3), train_loader=loader,
                         loss_fn=model.loss)
    with pytest.raises(ConfigurationError, match="no optimizer to train with"):
        Session(nn.Linear(8, 3), None, nn.CrossEntropyLoss(), loader).start()


def test_a_non_finite_loss_in_the_last_batch_fails_the_session_instead_of_leaving_it_running(tmp_path):
    dataset = data(64)
    dataset.tensors[0][-1] = float("inf")  # the last sample of the last batch (no shuffling)
    model = Classifier()
    train_loader = DataLoader(dataset, batch_size=32)
    trainer = lightning_trainer(tmp_path, max_epochs=1)
    session = attach_lightning(trainer=trainer, model=model, train_loader=train_loader, loss_fn=model.loss,
                               recluster_seconds=None)
    trainer.fit(model, train_loader)
    assert session.status == "failed" and session.done and "NonFiniteLossError" in session.traceback


class Data(pl.LightningDataModule):
    """A datamodule as the reference's users write one: datasets made in setup, loaders on request."""

    def __init__(self) -> None:
        super().__init__()
        self.setups = 0

    def setup(self, stage: str) -> None:
        self.setups += 1
        self.train_data, self.val_data, self.test_data = data(480), data(96), data(64)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_data, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_data, batch_size=96)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_data, batch_size=64)


class Criterion(Classifier):
    """The module holds its loss as ``criterion``; training_step logs test metrics too."""

    def __init__(self) -> None:
        super().__init__(lr=0.0)
        self.criterion = self.loss
        del self.loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.criterion(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", self.criterion(self(x), y))


def frozen_losses(model: nn.Module, dataset: TensorDataset) -> torch.Tensor:
    x, y = dataset.tensors
    with torch.no_grad():
        return nn.CrossEntropyLoss(reduction="none")(model(x), y)


def test_a_datamodule_trains_with_losses_keyed_by_index_and_the_test_runs_after(tmp_path, monkeypatch):
    """``trainer.fit(model, datamodule=dm)``, the reference's Lightning form: no loaders passed to
    attach_lightning, the loss found on the module, a test pass after the fit."""
    monkeypatch.delenv("ONTHEFLY_TEST_LABEL", raising=False)
    torch.manual_seed(0)
    model, dm = Criterion(), Data()
    trainer = lightning_trainer(tmp_path, max_epochs=2)
    session = attach_lightning(trainer=trainer, model=model, datamodule=dm, project="demo", run_name="dm",
                               do_test_after=True, recluster_seconds=None)
    trainer.fit(model, datamodule=dm)
    assert session.status == "finished" and session.global_step == 2 * 15 == trainer.global_step
    frame = session.slice(features=False).set_index("index").sort_index()
    assert (frame["seen"] == 2).all()
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), frozen_losses(model, dm.train_data),
                               rtol=1e-5, atol=1e-6)
    assert len(session.metrics["validation"]) == 2
    assert os.environ["ONTHEFLY_TEST_LABEL"] == "test_1" and "test_loss" in trainer.callback_metrics


def test_loaders_built_inline_in_fit_are_keyed_too(tmp_path):
    """The loader Lightning iterates is not the one given to attach_lightning: its indices count."""
    torch.manual_seed(0)
    model = Classifier(lr=0.0)
    shown = DataLoader(data(), batch_size=32)
    trainer = lightning_trainer(tmp_path, max_epochs=1)
    session = attach_lightning(trainer=trainer, model=model, train_loader=shown, loss_fn=model.loss,
                               recluster_seconds=None)
    trainer.fit(model, DataLoader(data(), batch_size=16, shuffle=True), DataLoader(data(96), batch_size=32))
    assert session.status == "finished" and session.global_step == 30
    frame = session.slice(features=False).set_index("index").sort_index()
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), frozen_losses(model, data()),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigurationError, match="dataset of 64 samples, but the session was made for one of 480"):
        trainer2 = lightning_trainer(tmp_path, max_epochs=1)
        attach_lightning(trainer=trainer2, model=Classifier(), train_loader=shown, recluster_seconds=None)
        trainer2.fit(Classifier(), DataLoader(data(64), batch_size=16))


def test_a_module_without_a_loss_attribute_needs_loss_fn(tmp_path):
    class Bare(Classifier):
        def __init__(self) -> None:
            super().__init__()
            del self.loss

    with pytest.raises(ConfigurationError, match="pass loss_fn=.*loss_fn or criterion attribute"):
        attach_lightning(trainer=lightning_trainer(tmp_path), model=Bare(),
                         train_loader=DataLoader(data(), batch_size=32))


def test_a_scalar_loss_fn_gives_per_sample_values(tmp_path):
    torch.manual_seed(0)
    model = Classifier(lr=0.0)
    loader = DataLoader(data(), batch_size=32, shuffle=True)
    trainer = lightning_trainer(tmp_path, max_epochs=1)
    session = attach_lightning(trainer=trainer, model=model, train_loader=loader, recluster_seconds=None,
                               loss_fn=lambda outputs, targets: nn.functional.cross_entropy(outputs, targets))
    trainer.fit(model, loader)
    frame = session.slice(features=False).set_index("index").sort_index()
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), frozen_losses(model, data()),
                               rtol=1e-5, atol=1e-6)
