"""Validation and test passes that leave the training run exactly as they found it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batches import Unpack, to_device
from ..data.losses import LossFn, reduce_to_samples
from ..records.recorder import is_classification


def evaluate(model: nn.Module, loader: DataLoader, loss_fn: LossFn, unpack: Unpack,
             device: torch.device) -> dict[str, Any]:
    """Mean loss (and accuracy for classification) over ``loader``, leaving the RNG as it was; a loss
    that returns one number for a batch counts it for each of the batch's samples."""
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    was_training = model.training
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count, classification = 0, False
    with torch.random.fork_rng(devices=rng_devices), torch.no_grad():
        model.eval()
        try:
            for batch in loader:
                inputs, targets = unpack(batch)
                inputs, targets = to_device(inputs, device), to_device(targets, device)
                outputs = model(inputs)
                value, size = loss_fn(outputs, targets), _batch_size(targets, outputs)
                if isinstance(value, torch.Tensor) and value.ndim == 0:  # a loss that gives one number a batch
                    total += value.double() * size
                else:
                    total += reduce_to_samples(value, size).double().sum()
                count += size
                if is_classification(outputs, targets):
                    classification = True
                    correct += (outputs.argmax(1) == targets).sum()
        finally:
            model.train(was_training)
    if count == 0:
        return {"loss": None, "accuracy": None, "samples": 0}
    accuracy = float(correct) / count if classification else None
    return {"loss": float(total) / count, "accuracy": accuracy, "samples": count}


def _batch_size(targets: Any, outputs: Any) -> int:
    for value in (targets, outputs):
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    raise ValueError("cannot tell the batch size: neither targets nor outputs are batched tensors")
