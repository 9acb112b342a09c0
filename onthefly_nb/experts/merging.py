"""Weight-space merges of models that share an architecture: uniform (SWA-style) averaging and
Fisher-weighted averaging (Matena & Raffel 2022, "Merging Models with Fisher-Weighted Averaging").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.optim.swa_utils import AveragedModel, update_bn

FISHER_EPSILON = 1e-10
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def average(models: Sequence[nn.Module], bn_loader: Any | None = None, device: torch.device | None = None
            ) -> dict[str, torch.Tensor]:
    """The uniform average of ``models`` (same architecture) as a state dict; BatchNorm running
    statistics are recomputed over ``bn_loader`` (an iterable of inputs) when the model has any."""
    averaged = AveragedModel(models[0], use_buffers=False)
    for model in models:  # the first update copies, the later ones average
        averaged.update_parameters(model)
    recompute_batchnorm(averaged, bn_loader, device)
    return {k: v.detach().clone() for k, v in averaged.module.state_dict().items()}


def recompute_batchnorm(model: nn.Module, bn_loader: Any | None, device: torch.device | None) -> None:
    """Reset and re-estimate BatchNorm running statistics over ``bn_loader``, if the model has any."""
    if bn_loader is not None and any(isinstance(m, BATCH_NORMS) for m in model.modules()):
        update_bn(bn_loader, model, device=device)


def fisher_diagonal(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    max_samples: int = 2048) -> dict[str, torch.Tensor]:
    """The diagonal of the empirical Fisher information of ``model``'s parameters: the mean over
    samples of each parameter's squared per-sample gradient (per-sample gradients by
    ``torch.func.vmap``), over at most ``max_samples`` samples of ``batches``."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return per_sample_loss(out, y.unsqueeze(0)).sum()

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    seen = 0
    was_training = model.training
    model.eval()
    try:
        for inputs, targets in batches:
            take = min(len(inputs), max_samples - seen)
            grads = per_sample_grads(params, inputs[:take], targets[:take])
            for name, g in grads.items():
                total[name] += g.pow(2).sum(0)
            seen += take
            if seen >= max_samples:
                break
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("no samples to estimate the Fisher information on")
    return {n: t / seen for n, t in total.items()}


def fisher_average(models: Sequence[nn.Module], fishers: Sequence[dict[str, torch.Tensor]],
                   bn_loader: Any | None = None, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Each parameter averaged across ``models`` with weights proportional to its Fisher
    information in each (where every Fisher is zero, the plain mean); buffers from the first
    model, BatchNorm statistics recomputed over ``bn_loader``."""
    merged = {k: v.detach().clone() for k, v in models[0].state_dict().items()}
    for name in fishers[0]:
        weights = torch.stack([f[name] for f in fishers]) + FISHER_EPSILON
        values = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
        merged[name] = (weights * values).sum(0) / weights.sum(0)
    if bn_loader is not None:
        holder = _with_weights(models[0], merged)
        recompute_batchnorm(holder, bn_loader, device)
        merged = {k: v.detach().clone() for k, v in holder.state_dict().items()}
    return merged


def _with_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    holder = copy.deepcopy(model)
    holder.load_state_dict(state)
    return holder
