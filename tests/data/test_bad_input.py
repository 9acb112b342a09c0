"""Bad input gets a clear error naming what is wrong and how to fix it; no thread hangs."""

from __future__ import annotations

import pytest
import torch
from conftest import classification_data, no_training_threads, small_model
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from onthefly_nb import (
    BatchFormatError,
    ConfigurationError,
    EmptyLoaderError,
    NonFiniteLossError,
    Session,
    SliceQueryError,
)


def args(**override):
    model = small_model()
    base = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                loss_fn=nn.CrossEntropyLoss(), train_loader=DataLoader(classification_data(32), batch_size=8))
    base.update(override)
    return base


def test_model_must_be_a_module():
    with pytest.raises(ConfigurationError, match=r"model must be a torch.nn.Module, got function"):
        Session(**args(model=lambda x: x))


def test_optimizer_must_be_an_optimizer():
    with pytest.raises(ConfigurationError, match=r"optimizer must be a torch.optim.Optimizer.*Adam"):
        Session(**args(optimizer="adam"))


def test_empty_loader_is_refused():
    empty = DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0).long()), batch_size=4)
    with pytest.raises(EmptyLoaderError, match="train_loader yields no batches"):
        Session(**args(train_loader=empty))
    short = DataLoader(classification_data(3), batch_size=4, drop_last=True)
    with pytest.raises(EmptyLoaderError, match="drop_last=True"):
        Session(**args(train_loader=short))


class Stream(IterableDataset):
    def __iter__(self):
        yield from zip(torch.randn(10, 8), torch.zeros(10).long())


class SizedStream(Stream):
    def __len__(self) -> int:
        return 10


@pytest.mark.parametrize("stream", [Stream, SizedStream])
def test_an_iterable_dataset_is_refused_naming_the_fix(stream):
    with pytest.raises(ConfigurationError, match="is an IterableDataset.*map-style dataset"):
        Session(**args(train_loader=DataLoader(stream(), batch_size=2)))


def test_unbatched_loader_and_non_loader_are_refused():
    with pytest.raises(ConfigurationError, match="batch_size=None"):
        Session(**args(train_loader=DataLoader(classification_data(8), batch_size=None)))
    with pytest.raises(ConfigurationError, match="must be a torch.utils.data.DataLoader, got list"):
        Session(**args(train_loader=[1, 2, 3]))
    with pytest.raises(ConfigurationError, match="val_loader must be"):
        Session(**args(), val_loader=classification_data(8))


def test_loss_must_be_callable_and_settings_sane():
    with pytest.raises(ConfigurationError, match="loss_fn must be callable"):
        Session(**args(loss_fn="cross_entropy"))
    with pytest.raises(ConfigurationError, match=r"loss_fn is the class CrossEntropyLoss, not a loss: pass an "
                                                 r"instance, CrossEntropyLoss\(\)"):
        Session(**args(loss_fn=nn.CrossEntropyLoss))
    with pytest.raises(ConfigurationError, match="max_epochs must be None or a whole number"):
        Session(**args(), max_epochs=0)
    with pytest.raises(ConfigurationError, match="scheduler_interval"):
        Session(**args(), scheduler_interval="batch")


def test_nan_loss_fails_the_run_naming_the_step():
    data = classification_data(64)
    data.tensors[0][17] = float("nan")
    session = Session(**args(train_loader=DataLoader(data, batch_size=8)), max_epochs=3).start()
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 2 \(samples \[17"):
        session.wait(timeout=30)
    assert session.status == "failed"
    assert "NonFiniteLossError" in session.traceback
    assert session.events[-1]["kind"] == "failed"
    assert no_training_threads()


def test_nan_loss_is_kept_when_asked():
    data = classification_data(64)
    data.tensors[0][17] = float("nan")
    session = Session(**args(train_loader=DataLoader(data, batch_size=8)), stop_on_nan=False)
    session.start().wait(timeout=30)
    assert session.status == "finished"
    assert torch.isnan(torch.tensor(session.store.loss[17]))


def test_an_exception_in_user_code_fails_the_run_and_is_reraised():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(8, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 5:
                raise RuntimeError("boom in forward")
            return self.layer(x)

    model = Broken()
    session = Session(**args(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)), max_epochs=5)
    session.start()
    with pytest.raises(RuntimeError, match="boom in forward"):
        session.wait(timeout=30)
    assert session.status == "failed"
    assert session.global_step == 4
    assert "boom in forward" in session.traceback and "forward" in session.traceback
    assert session.snapshot()["run"]["error"] == session.traceback
    session.stop()  # stopping a failed run is harmless
    assert no_training_threads()


def test_batches_that_cannot_be_split_fail_with_a_fix():
    class Singles(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"pixels": torch.randn(8), "cls": i % 3}

    session = Session(**args(train_loader=DataLoader(Singles(), batch_size=4))).start()
    with pytest.raises(BatchFormatError, match=r"keys \['cls', 'pixels'\].*unpack="):
        session.wait(timeout=30)


def test_bad_slice_query_names_the_columns():
    session = Session(**args()).start().wait(timeout=30)
    with pytest.raises(SliceQueryError, match="Columns available: index, loss"):
        session.slice("los > 1")
    with pytest.raises(SliceQueryError, match="non-empty string"):
        session.slice("")
    assert len(session.slice("loss >= 0")) == 32


def test_validate_without_a_val_loader_says_how():
    session = Session(**args())
    with pytest.raises(ConfigurationError, match="no val_loader; pass val_loader="):
        session.validate()
