"""One declared contract: the TypeScript types are generated from it, a live session's published
traits fit it, and the commands and event kinds the code uses are the ones it declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_session, planted_data
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.dashboard.commands import COMMANDS
from onthefly_nb.dashboard.contract import COMMAND_NAMES, TRAITS, check_traits, typescript
from onthefly_nb.errors import ProtocolError

GENERATED = Path(__file__).resolve().parents[2] / "js" / "model" / "contract.ts"


def test_the_front_ends_types_are_generated_from_the_contract():
    assert GENERATED.read_text() == typescript(), "js/model/contract.ts is stale: run `make contract`"


def test_every_command_of_the_contract_is_registered_and_no_other():
    assert set(COMMANDS) == set(COMMAND_NAMES)


def test_an_event_kind_the_contract_does_not_declare_is_refused():
    session = make_session(n=64)
    with pytest.raises(ValueError, match="not in the dashboard contract"):
        session.event_log.append("fork", 0)


def test_a_live_session_publishes_every_trait_as_declared():
    import torch

    data, _ = planted_data(1200)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=256),
                      max_epochs=1000, recluster_seconds=None, health_every=20)
    publisher = session.parts.publisher
    check_traits(publisher.current())  # before the first step
    session.start(paused=True)
    try:
        print("a line printed while the run is live")  # the output trait
        session.step(60)
        session.cluster()
        session.select([1, 5, 9])
        session.fork("cluster == 0", budget=20)
        session.merge()
        session.compare()
        session.validate()
        session.overlay(session, name="itself")  # the overlays trait
        values = publisher.publish_now([])
        values = {**publisher.current(), **values}
        check_traits(values)
        filled = {name for name in TRAITS if values[name] not in (None, [], {})}
        assert filled == set(TRAITS), f"traits left empty, so not checked: {set(TRAITS) - filled}"
    finally:
        session.stop()


def test_a_value_that_breaks_the_contract_is_named():
    values = make_session(n=64).parts.publisher.current()
    with pytest.raises(ProtocolError, match="trait 'run''s total_steps must be a whole number"):
        check_traits({**values, "run": {**values["run"], "total_steps": "all"}})
    with pytest.raises(ProtocolError, match="id must be a string"):
        check_traits({**values, "plans": [{**plan, "id": 3} for plan in [
            {"id": "plan-1", "kind": "lower_lr", "title": "", "evidence": "", "step": 0, "params": {},
             "param_specs": {}, "status": "proposed", "result": None}]]})
