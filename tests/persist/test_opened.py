"""A saved session opened read-only, and overlaid on a live session's loss chart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import ArchiveError, ConfigurationError, Session, open_saved
from onthefly_nb.dashboard.contract import check_traits


def trained(name: str, lr: float, steps: int = 40) -> Session:
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(),
                      DataLoader(classification_data(320), batch_size=16), max_steps=steps, max_epochs=None,
                      run_name=name, recluster_seconds=None, health_every=None)
    return session.run()


def test_a_saved_session_opens_read_only_with_its_history_events_and_scalars(tmp_path):
    session = trained("slow", 0.01)
    session.log(f1=0.5)
    session.export(tmp_path / "slow.zip")
    opened = open_saved(tmp_path / "slow.zip")
    assert opened.name == "default/slow" and "read-only" in repr(opened)
    assert opened.history.equals(session.history)
    assert [e["kind"] for e in opened.events] == [e["kind"] for e in session.events][:len(opened.events)]
    assert opened.scalars[opened.scalars["name"] == "f1"]["value"].tolist() == [0.5]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError):
        open_saved(tmp_path / "junk.zip")


def test_another_run_saved_or_live_is_overlaid_on_the_loss_chart(tmp_path):
    slow = trained("slow", 0.01)
    slow.export(tmp_path / "slow.zip")
    fast = trained("fast", 0.2)
    live = trained("live", 0.05, steps=20)
    assert live.overlay(tmp_path / "slow.zip") == "default/slow"
    assert live.overlay(fast, name="the fast one") == "the fast one"
    traits = live.parts.view.values()
    check_traits(traits)
    shown = {o["name"]: np.array(o["points"]) for o in traits["overlays"]}
    assert sorted(shown) == ["default/slow", "the fast one"]
    np.testing.assert_allclose(shown["default/slow"][:, 1], slow.history["p50"].to_numpy())
    np.testing.assert_allclose(shown["the fast one"][:, 0], fast.history["step"].to_numpy())
    live.overlay(None, name="the fast one")
    assert [o["name"] for o in live.parts.view.values()["overlays"]] == ["default/slow"]
    live.overlay(None)
    assert live.parts.view.values()["overlays"] == []
    with pytest.raises(ConfigurationError, match="overlay takes a Session, a SavedRun"):
        live.overlay(42)
