"""Every stored loss belongs to the sample whose dataset index keys it."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from conftest import classification_data, same_weights, small_model, train_plainly
from torch import nn
from torch.utils.data import DataLoader, Dataset

from onthefly_nb import PerSampleLossError, Session
from onthefly_nb.errors import BatchFormatError, ConfigurationError


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


def scalar_loss(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets) * 2.0  # one number for the batch


def eager_loss(outputs, targets):
    """A scalar loss vmap cannot batch (it reads a value on the host)."""
    scale = 2.0 if float(targets.float().mean()) >= 0 else 1.0
    return nn.functional.cross_entropy(outputs, targets) * scale


@pytest.mark.parametrize("loss", [scalar_loss, eager_loss])
def test_a_scalar_loss_trains_as_given_and_is_split_per_sample(loss):
    """The backward pass uses the scalar as given (the weights match a plain loop bit for bit);
    per-sample values are the loss of each sample alone (vmap, or one call per sample)."""
    data = classification_data(n=96)
    model, twin = small_model(), small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), loss, DataLoader(data, batch_size=8),
                      max_epochs=2, recluster_seconds=None)
    slow = pytest.warns(UserWarning, match="one call per sample, which is slow")
    with slow if loss is eager_loss else contextlib.nullcontext():
        session.run()
    train_plainly(twin, torch.optim.SGD(twin.parameters(), lr=0.1), loss, DataLoader(data, batch_size=8), epochs=2)
    assert same_weights(model, twin)

    frozen = small_model()
    session = Session(frozen, torch.optim.SGD(frozen.parameters(), lr=0.0), loss,
                      DataLoader(data, batch_size=8, shuffle=True), max_epochs=1, recluster_seconds=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session.run()
    x, y = data.tensors
    with torch.no_grad():
        alone = torch.stack([loss(frozen(x[i:i + 1]), y[i:i + 1]) for i in range(len(y))]).numpy()
    recorded = session.slice().set_index("index").sort_index()["loss"].to_numpy()
    np.testing.assert_allclose(recorded, alone, rtol=1e-5, atol=1e-6)


def test_a_scalar_loss_that_cannot_be_split_trains_with_per_sample_views_off():
    def batch_only(outputs, targets):
        if len(targets) < 2:
            raise ValueError("needs pairs")
        return nn.functional.cross_entropy(outputs, targets)

    model, twin = small_model(), small_model()
    data = classification_data(n=40)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_only,
                      DataLoader(data, batch_size=8), DataLoader(data, batch_size=20), max_epochs=2,
                      recluster_seconds=None)
    with pytest.warns(UserWarning, match="per-sample views are off.*cannot be evaluated on single samples"):
        session.run()
    assert session.status == "finished" and session.global_step == 10
    train_plainly(twin, torch.optim.SGD(twin.parameters(), lr=0.1), batch_only, DataLoader(data, batch_size=8),
                  epochs=2)
    assert same_weights(model, twin)
    off = [e for e in session.events if e["kind"] == "per_sample_off"]
    assert len(off) == 1 and "needs pairs" in off[0]["reason"]
    assert session.parts.view.snapshot()["run"]["per_sample_off"] == off[0]["reason"]
    assert len(session.slice()) == 0 and session.store.seen.sum() == 0
    assert session.metrics["validation"][-1]["loss"] is not None  # the scalar still validates


def test_training_is_bit_identical_to_the_plain_loop():
    """Built-in losses are backpropagated as given (class weights included); recording changes nothing."""
    data = classification_data(n=200, seed=7)
    weights = torch.tensor([0.2, 1.0, 3.0])

    def fresh():
        torch.manual_seed(11)
        model = small_model(seed=5)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2), DataLoader(data, batch_size=16, shuffle=True)

    model, optimizer, loader = fresh()
    train_plainly(model, optimizer, nn.CrossEntropyLoss(weight=weights), loader, epochs=3)

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


def test_masked_labels_train_and_have_no_margin():
    """Labels of ``ignore_index`` (-100) train as the loss says and are recorded without a margin."""
    data = classification_data(n=128)
    x, y = data.tensors
    y = y.clone()
    y[::10] = -100
    model = small_model()
    session = frozen_session(DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32), model,
                             recluster_seconds=None)
    session.run()
    frame = session.slice().set_index("index").sort_index()
    masked = (y == -100).numpy()
    assert session.status == "finished"
    assert frame["margin"][masked].isna().all() and frame["margin"][~masked].notna().all()
    assert (frame["label"][masked] == -100).all()
    np.testing.assert_allclose(frame["loss"], direct_losses(model, torch.utils.data.TensorDataset(x, y)), atol=1e-6)


class Tokens(nn.Module):
    """A per-token classifier whose outputs are [N, V, T], as cross_entropy wants them."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed, self.out = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x)).transpose(1, 2)


@pytest.mark.parametrize("weighted", [False, True])
def test_a_padded_sequence_loss_is_the_mean_over_its_real_tokens(weighted):
    torch.manual_seed(0)
    n, t, vocab = 64, 8, 5
    xs, ys = torch.randint(0, vocab, (n, t)), torch.randint(0, vocab, (n, t))
    lengths = torch.randint(1, t + 1, (n,))
    ys[torch.arange(t)[None] >= lengths[:, None]] = -100
    weight = torch.rand(vocab) + 0.5 if weighted else None
    model = Tokens(vocab)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(weight=weight),
                      DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=16), max_epochs=1,
                      recluster_seconds=None)
    session.run()
    with torch.no_grad():
        tokens = nn.functional.cross_entropy(model(xs), ys, weight=weight, reduction="none")
    counts = (ys != -100).float() if weight is None else torch.where(ys != -100, weight[ys.clamp(min=0)], 0.0)
    expected = (tokens.sum(1) / counts.sum(1)).numpy()
    recorded = session.slice().set_index("index").sort_index()["loss"].to_numpy()
    np.testing.assert_allclose(recorded, expected, rtol=1e-5)
    assert abs(np.corrcoef(recorded, lengths.numpy())[0, 1]) < 0.5  # padding no longer makes short samples easy


def test_outputs_and_targets_that_would_broadcast_are_refused_before_training():
    x = torch.randn(400, 4)
    model = nn.Linear(4, 1)
    before = model.weight.detach().clone()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(),
                      DataLoader(torch.utils.data.TensorDataset(x, x[:, 0] * 2), batch_size=100), max_epochs=1,
                      recluster_seconds=None)
    with pytest.raises(BatchFormatError, match=r"outputs have shape \[1\] per sample and the targets \[\].*squeeze"):
        session.run()
    assert torch.equal(model.weight, before), "the broadcast step must not train"


def test_a_loss_that_takes_reduction_but_ignores_it_is_refused_naming_the_fix():
    def loss(outputs, targets, reduction="mean"):
        return nn.functional.cross_entropy(outputs, targets)  # reduction is not passed on

    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                      DataLoader(classification_data(64), batch_size=16), max_epochs=1, recluster_seconds=None)
    with pytest.raises(PerSampleLossError, match="does not pass reduction on.*reduction=reduction"):
        session.run()
    assert session.global_step == 0


class Ragged(Dataset):
    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int):
        return torch.randn(3 + i % 4), torch.tensor(0)


def test_ragged_samples_are_refused_naming_a_collate_fn():
    model = nn.Sequential(nn.LazyLinear(2))
    session = Session(model, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), nn.CrossEntropyLoss(),
                      DataLoader(Ragged(), batch_size=8), max_epochs=1, recluster_seconds=None)
    with pytest.raises(BatchFormatError, match="different shapes.*collate_fn that pads"):
        session.run()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_naming_the_fix():
    with pytest.raises(ConfigurationError, match="finds no cuda device; pass device='cpu'"):
        frozen_session(DataLoader(classification_data(32), batch_size=8), small_model(), device="cuda")
    with pytest.raises(ConfigurationError, match="is not a device"):
        frozen_session(DataLoader(classification_data(32), batch_size=8), small_model(), device="gpu0")
