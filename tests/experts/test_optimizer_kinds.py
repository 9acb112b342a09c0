"""Forks and the determinism replay build an optimizer of the run's kind: every torch optimizer whose
defaults its own constructor does not take back (AdamW's decoupled_weight_decay) works too."""

from __future__ import annotations

import pytest
import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session

KINDS = {
    "AdamW": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05),
    "Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "SGD momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=1e-3),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "NAdam": lambda p: torch.optim.NAdam(p, lr=1e-3),
    "RAdam": lambda p: torch.optim.RAdam(p, lr=1e-3, decoupled_weight_decay=True, weight_decay=0.01),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fork_and_a_determinism_check_work_with_each_optimizer(kind):
    model = small_model()
    optimizer = KINDS[kind](model.parameters())
    session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(classification_data(256), batch_size=16),
                      max_epochs=3, recluster_seconds=None, health_every=None)
    session.start(paused=True).step(5)
    expert = session.fork([1, 2, 3, 4, 5, 6, 7, 8], budget=5)
    assert len(expert.losses) == 5
    assert session.check_determinism().passed
    session.stop()
