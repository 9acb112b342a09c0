"""A router that sends each sample to the expert that handles it best, and the mixture it makes.

The router is a small MLP, on the flattened inputs or on the generalist's penultimate features
(the input of one of its layers, taken from the same forward pass that gives its output),
trained to predict which model (the run or one of its experts) gives a sample the lowest loss.
The :class:`Mixture` is a plain
``nn.Module`` and exports with ``torch.export`` plus safetensors weights, so it loads and
predicts without onthefly_nb.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import ConfigurationError

ROUTER_HIDDEN = 32
ROUTER_BATCH = 256


def features_and_output(generalist: nn.Module, feature_layer: str | None, x: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The router's features for ``x`` (flattened inputs, or the flattened input of the
    generalist's ``feature_layer``) and the generalist's output, from one forward pass."""
    if feature_layer is None:
        return x.flatten(1), generalist(x)
    captured: list[torch.Tensor] = []
    handle = generalist.get_submodule(feature_layer).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0]))
    try:
        output = generalist(x)
    finally:
        handle.remove()
    return captured[0].flatten(1), output


def last_linear(model: nn.Module) -> str:
    """The name of the model's last ``nn.Linear``: its input is the penultimate features."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ConfigurationError("the model has no nn.Linear layer to take penultimate features from; "
                                 "route on the inputs instead (features='inputs')")
    return names[-1]


class Mixture(nn.Module):
    """Experts behind a router: each sample's output comes from the expert the router picks.
    The first expert is the generalist; with ``feature_layer`` the router reads that layer's input."""

    def __init__(self, experts: Sequence[nn.Module], router: nn.Module, feature_layer: str | None = None) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.router = router
        self.feature_layer = feature_layer

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the expert chosen for each sample."""
        return self.router(features_and_output(self.experts[0], self.feature_layer, x)[0]).argmax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, first = features_and_output(self.experts[0], self.feature_layer, x)
        outputs = torch.stack([first, *(expert(x) for expert in self.experts[1:])], 1)
        return outputs[torch.arange(x.shape[0], device=x.device), self.router(features).argmax(1)]

    def export(self, folder: str | Path, example: torch.Tensor) -> Path:
        """Write ``mixture.pt2`` (``torch.export``; load with ``torch.export.load(path).module()``),
        ``weights.safetensors`` and ``manifest.json`` into ``folder``; returns the .pt2 path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        was_training = self.training
        self.eval()
        try:
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(self, (example,), dynamic_shapes=({0: batch},))
        finally:
            self.train(was_training)
        path = folder / "mixture.pt2"
        torch.export.save(program, path)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, folder / "weights.safetensors")
        manifest = {"format": "onthefly-mixture", "version": 1, "experts": len(self.experts),
                    "router_features": self.feature_layer or "inputs",
                    "input_shape": list(example.shape[1:]), "torch": torch.__version__}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path


def route_labels(models: Sequence[nn.Module], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 feature_layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The router's features of each sample (see :func:`features_and_output`; ``models[0]`` is the
    generalist) and the index of the model with the lowest loss on it."""
    def losses_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return reduce_per_sample(per_sample_loss(model(x), y))

    modes = [m.training for m in models]
    inputs, labels = [], []
    try:
        with torch.no_grad():
            for m in models:
                m.eval()
            for x, y in batches:
                features, first = features_and_output(models[0], feature_layer, x)
                inputs.append(features)
                losses = [losses_of(m, x, y) for m in models[1:]]
                labels.append(torch.stack([reduce_per_sample(per_sample_loss(first, y)), *losses], 1).argmin(1))
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return torch.cat(inputs), torch.cat(labels)


def reduce_per_sample(values: torch.Tensor) -> torch.Tensor:
    """One loss per sample from per-sample (or per-element) values."""
    return values.flatten(1).mean(1) if values.ndim > 1 else values


def train_router(inputs: torch.Tensor, labels: torch.Tensor, choices: int, epochs: int = 30,
                 seed: int = 0) -> nn.Module:
    """A small MLP that predicts ``labels`` (the best model per sample) from ``inputs``."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        router = nn.Sequential(nn.Linear(inputs.shape[1], ROUTER_HIDDEN), nn.ReLU(),
                               nn.Linear(ROUTER_HIDDEN, choices)).to(inputs.device)
    optimizer = torch.optim.Adam(router.parameters(), lr=1e-2)
    counts = torch.bincount(labels, minlength=choices).float()
    weights = (counts.sum() / (choices * counts.clamp(min=1))).to(inputs.device)  # rare experts count as much
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        for start in range(0, len(inputs), ROUTER_BATCH):
            batch = order[start:start + ROUTER_BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(router(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return router.eval()
