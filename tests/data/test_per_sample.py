"""Every stored loss belongs to the sample whose dataset index keys it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

from onthefly_nb import PerSampleLossError, Session


def direct_losses(model: nn.Module, data, loss=nn.CrossEntropyLoss(reduction="none")) -> np.ndarray:
    x, y = data.tensors
    with torch.no_grad():
        return loss(model(x), y).numpy()


def frozen_session(loader: DataLoader, model: nn.Module, **kwargs) -> Session:
    """lr=0: the weights never move, so a stored loss must equal the direct loss of its sample."""
    return Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(), loader,
                   max_epochs=2, **kwargs)


def test_shuffled_loader_with_two_workers_keys_losses_by_index():
    data = classification_data(n=300, seed=1)
    model = small_model(seed=3)
    loader = DataLoader(data, batch_size=16, shuffle=True, num_workers=2, drop_last=False)
    session = frozen_session(loader, model).start().wait(timeout=120)
    expected = direct_losses(model, data)
    assert (session.store.seen == 2).all()
    np.testing.assert_allclose(session.store.loss, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(session.store.loss_mean, expected, rtol=1e-5, atol=1e-6)
    frame = session.slice()
    assert list(frame["index"]) == list(range(300))
    np.testing.assert_array_equal(frame["label"], data.tensors[1].numpy())
    with torch.no_grad():
        logits = model(data.tensors[0])
    np.testing.assert_array_equal(frame["prediction"], logits.argmax(1).numpy())
    true = logits.gather(1, data.tensors[1][:, None]).squeeze(1)
    best_other = logits.scatter(1, data.tensors[1][:, None], float("-inf")).amax(1)
    np.testing.assert_allclose(frame["margin"], (true - best_other).numpy(), rtol=1e-5, atol=1e-6)
    assert (frame["correct"] == (frame["prediction"] == frame["label"])).all()


class DictDataset(Dataset):
    def __init__(self, data):
        self.x, self.y = data.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.x[i], "label": self.y[i], "name": f"s{i}"}


def test_dict_batches_and_a_custom_collate_fn_keep_their_keys():
    data = classification_data(n=120, seed=2)
    model = small_model(seed=4)

    def collate(items: list[dict]) -> dict:
        return {"x": torch.stack([it["features"] for it in items]),
                "labels": torch.stack([it["label"] for it in items]),
                "names": [it["name"] for it in items]}

    loader = DataLoader(DictDataset(data), batch_size=7, shuffle=True, collate_fn=collate, num_workers=2)
    session = frozen_session(loader, model).start().wait(timeout=120)
    np.testing.assert_allclose(session.store.loss, direct_losses(model, data), rtol=1e-5, atol=1e-6)


def test_default_collate_of_dicts_and_an_unpack_function():
    data = classification_data(n=50, seed=5)
    model = small_model(seed=6)
    loader = DataLoader(DictDataset(data), batch_size=8, shuffle=True)
    session = frozen_session(loader, model, unpack=lambda b: (b["features"], b["label"]))
    session.start().wait(timeout=60)
    np.testing.assert_allclose(session.store.loss, direct_losses(model, data), rtol=1e-5, atol=1e-6)


def test_regression_losses_are_averaged_over_output_dimensions():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 3, generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss(),
                      DataLoader(data, batch_size=10, shuffle=True), max_epochs=1)
    session.start().wait(timeout=60)
    with torch.no_grad():
        expected = ((model(x) - y) ** 2).mean(1).numpy()
    np.testing.assert_allclose(session.store.loss, expected, rtol=1e-5, atol=1e-6)
    assert session.store.label is None
    assert "label" not in session.slice().columns


def test_functional_loss_gets_reduction_none_bound():
    data = classification_data(n=40)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.functional.cross_entropy,
                      DataLoader(data, batch_size=8), max_epochs=1).start().wait(timeout=60)
    np.testing.assert_allclose(session.store.loss, direct_losses(model, data), rtol=1e-5, atol=1e-6)


def test_running_mean_and_variance_across_epochs_match_numpy():
    data = classification_data(n=32)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.5), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32, shuffle=False), max_epochs=6)
    per_epoch = []
    session.start(paused=True)
    for _ in range(6):
        per_epoch.append(direct_losses(model, data))
        session.step(1)
    session.stop()
    stacked = np.stack(per_epoch)
    np.testing.assert_allclose(session.store.loss_mean, stacked.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(session.store.loss_std(), stacked.std(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(session.store.loss, stacked[-1], rtol=1e-5, atol=1e-6)


def test_a_scalar_loss_fails_the_run_with_a_fix():
    data = classification_data(n=40)
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      lambda out, y: nn.functional.cross_entropy(out, y),  # reduced: cannot be per-sample
                      DataLoader(data, batch_size=8))
    session.start()
    with pytest.raises(PerSampleLossError, match="reduction='none'"):
        session.wait(timeout=30)
    assert session.status == "failed"
    assert session.global_step == 0, "a step ran with a loss that is not per sample"


def test_training_is_bit_identical_to_the_plain_loop():
    """Built-in losses are backpropagated as given (class weights included); recording changes nothing."""
    data = classification_data(n=200, seed=7)
    weights = torch.tensor([0.2, 1.0, 3.0])

    def fresh():
        torch.manual_seed(11)
        model = small_model(seed=5)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2), DataLoader(data, batch_size=16, shuffle=True)

    model, optimizer, loader = fresh()
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    for _ in range(3):
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()

    ours, ours_optimizer, ours_loader = fresh()
    Session(ours, ours_optimizer, nn.CrossEntropyLoss(weight=weights), ours_loader, max_epochs=3).run()
    for a, b in zip(model.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_large_or_structured_outputs_are_reduced_per_step():
    """Per-token outputs [N, C, L] are not kept between flushes; each sample's loss is its mean over L."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 4, 10, generator=g)
    y = torch.randint(0, 3, (48, 10), generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    torch.manual_seed(0)
    model = nn.Conv1d(4, 3, kernel_size=1)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=8, shuffle=True)).start().wait(timeout=60)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x), y, reduction="none").mean(1).numpy()
    np.testing.assert_allclose(session.store.loss, expected, rtol=1e-5, atol=1e-6)
    assert not session.store.is_classification
