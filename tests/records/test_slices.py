"""Slices to pandas: queries over per-sample columns and loss quantiles, index lists, exports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session, SliceQueryError


@pytest.fixture(scope="module")
def trained() -> Session:
    data = classification_data(400, seed=8)
    model = small_model(seed=8)
    return Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=32, shuffle=True), max_epochs=3).start().wait(timeout=60)


def test_queries_can_name_the_loss_quantiles(trained):
    everything = trained.slice()
    q95 = np.quantile(everything["loss"].astype(np.float64), 0.95)
    tail = trained.slice("loss > q95")
    assert len(tail) == (everything["loss"] > q95).sum() > 0
    assert (tail["tail"]).all()
    wrong = trained.slice("label == 1 and margin < 0")
    assert (wrong["label"] == 1).all() and (wrong["margin"] < 0).all() and not wrong["correct"].any()


def test_slice_has_the_analysis_and_feature_columns(trained):
    frame = trained.slice()
    for column in ("index", "label", "prediction", "loss", "margin", "hardness", "confidence", "variability",
                   "correctness", "forgets", "x0", "x7"):
        assert column in frame.columns, column
    x = trained.train_loader.dataset.tensors[0].numpy()
    np.testing.assert_allclose(frame[[f"x{i}" for i in range(8)]].to_numpy(), x[frame["index"]])
    assert "x0" not in trained.slice(features=False).columns


def test_a_list_of_indices_selects_those_samples_in_order(trained):
    frame = trained.slice([5, 3, 399])
    assert list(frame["index"]) == [5, 3, 399]
    np.testing.assert_allclose(frame["loss"], trained.store.loss[[5, 3, 399]])
    with pytest.raises(SliceQueryError, match=r"indices \[400\] are outside the dataset of 400"):
        trained.slice([1, 400])
    with pytest.raises(SliceQueryError, match="query string or a list of dataset indices"):
        trained.slice([0.5, 2.5])


def test_bad_queries_name_the_columns_and_the_quantiles(trained):
    with pytest.raises(SliceQueryError, match=r"Columns available: index, loss.*loss quantiles: q1, q5"):
        trained.slice("cluser == 3")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_exports_round_trip_in_chunks(trained, tmp_path, suffix):
    path = trained.export_slice(str(tmp_path / f"hard{suffix}"), "loss > q75", chunk_rows=7)
    expected = trained.slice("loss > q75")
    if suffix == ".csv":
        back = pd.read_csv(path)
    elif suffix == ".parquet":
        back = pd.read_parquet(path)
    else:
        back = pd.read_json(path, lines=True)
        assert all(json.loads(line) for line in open(path) if line.strip())
    assert len(back) == len(expected) > 7, "the export must span several chunks"
    assert list(back["index"]) == list(expected["index"])
    np.testing.assert_allclose(back["loss"], expected["loss"], rtol=1e-6)


def test_export_refuses_unknown_formats(trained, tmp_path):
    with pytest.raises(ValueError, match=r"use a path ending in \.csv, \.parquet, \.json"):
        trained.export_slice(str(tmp_path / "hard.xlsx"))


def test_queries_on_features_and_clusters(trained):
    everything = trained.slice()
    positive = trained.slice("x0 > 0")
    assert len(positive) == (everything["x0"] > 0).sum() and list(positive.columns) == list(everything.columns)
    assert len(trained.slice("cluster == -1 or cluster >= 0")) == len(everything)


def test_slices_taken_while_training_hold_only_rows_that_match_their_query(tmp_path):
    """The query and the rows it returns are read under one lock: a flush cannot come between."""
    data = classification_data(4000, seed=2)
    model = small_model()
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32, shuffle=True), max_epochs=10_000, recluster_seconds=None,
                      health_every=None)
    session.start()
    try:
        session.wait_for(step=200, timeout=60)
        median = 0.5  # about the median while it learns
        bad = 0
        for _ in range(150):
            frame = session.slice(f"loss > {median}")
            bad += int((frame["loss"] <= median).any())
        session.export_slice(str(tmp_path / "hard.parquet"), f"loss > {median}")
        exported = pd.read_parquet(tmp_path / "hard.parquet")
        assert session.status == "running"
    finally:
        session.stop(timeout=10)
    assert bad == 0, f"{bad} of 150 slices held rows that fail their own query"
    assert (exported["loss"] > median).all()


def test_when_every_loss_is_zero_no_sample_is_in_the_tail_and_no_zero_is_negative():
    model = small_model()
    zero = lambda outputs, targets: (outputs * 0.0).sum(1) * -1.0  # noqa: E731 - a loss of -0.0 per sample
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), zero,
                      DataLoader(classification_data(64), batch_size=16), max_epochs=1, recluster_seconds=None)
    frame = session.run().slice()
    assert (frame["loss"] == 0).all() and not np.signbit(frame["loss"]).any()
    assert not frame["tail"].any(), "equal losses have no tail"
