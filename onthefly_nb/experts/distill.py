"""Distillation: the run's model learns from a teacher (the gated mixture of the run and its
experts) on the whole training set: the task loss plus the KL divergence to the teacher's
softened outputs (Hinton et al. 2015), or the squared error to them for regression."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 2.0


def distill(student: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer, task_loss: Any,
            batches: Iterable[tuple[torch.Tensor, torch.Tensor]], temperature: float = TEMPERATURE) -> list[float]:
    """Train ``student`` on ``batches`` towards ``teacher``; returns the loss of each step."""
    teacher.eval()
    student.train()
    losses = []
    for inputs, targets in batches:
        with torch.no_grad():
            soft = teacher(inputs)
        outputs = student(inputs)
        value = task_loss(outputs, targets)
        value = value.mean() if value.ndim else value
        if not torch.is_floating_point(targets) and outputs.ndim == 2:
            value = value + temperature**2 * F.kl_div(F.log_softmax(outputs / temperature, 1),
                                                      F.log_softmax(soft / temperature, 1),
                                                      reduction="batchmean", log_target=True)
        else:
            value = value + F.mse_loss(outputs, soft)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    return losses
