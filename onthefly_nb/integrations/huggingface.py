"""``attach_huggingface``: the dashboard and controls on a ``transformers.Trainer`` run.

The Trainer builds its own loaders, so the training dataset is wrapped to hand each example over
with its index, and the collator puts the batch's indices under ``onthefly_index``. The trainer's
``compute_loss`` takes them out again before the model sees the batch, asks for the outputs it
computes anyway (no second forward pass) and records per-sample losses from the logits and labels
(cross entropy over the non-ignored labels by default). A callback applies pause, step and stop
after every optimizer step (stop sets ``control.should_training_stop``) and passes ``eval_*``
metrics to the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigurationError
from ..run.external import ExternalRun
from ..session import Session
from .reference import in_kernel

INDEX_KEY = "onthefly_index"
IGNORE_INDEX = -100


class IndexedExample(NamedTuple):
    index: int
    example: Any


class IndexedExamples(Dataset):
    """The training dataset, each example handed over with its index."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> IndexedExample:
        return IndexedExample(index, self.dataset[index])


class IndexCollator:
    """Collates indexed examples with the trainer's collator and adds their indices to the batch;
    other examples (evaluation) are collated as they are."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, examples: list[Any]) -> Any:
        if not examples or not isinstance(examples[0], IndexedExample):
            return self.collate(examples)
        batch = self.collate([e.example for e in examples])
        batch[INDEX_KEY] = torch.tensor([e.index for e in examples])
        return batch


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy of each sample: one label per sample, or the mean over its non-ignored
    tokens (labels of -100 are ignored, as the models' own losses do)."""
    if logits.ndim == labels.ndim + 1 and logits.shape[:-1] == labels.shape:
        tokens = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                                 reduction="none").view(labels.shape)
        if labels.ndim == 1:
            return tokens
        counted = (labels != IGNORE_INDEX).flatten(1).sum(1).clamp(min=1)
        return tokens.flatten(1).sum(1) / counted
    raise ConfigurationError(f"cannot take a per-sample cross entropy of logits {tuple(logits.shape)} against "
                             f"labels {tuple(labels.shape)}; pass loss_fn=(logits, labels) -> one loss per sample")


def attach_huggingface(trainer: Any, project: str = "default", run_name: str = "run", *,
                       loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                       display: bool | None = None, **options: Any) -> Session:
    """Wire a ``transformers.Trainer`` into a Session (returned) before ``trainer.train()``.

    Then call ``trainer.train()`` as usual, or ``session.start()`` to run it on the session's
    thread so the notebook stays free. ``loss_fn(logits, labels)`` gives one loss per sample
    (default: :func:`per_sample_cross_entropy`); ``options`` go to :class:`Session`.
    """
    from transformers import Trainer, TrainerCallback

    if not isinstance(trainer, Trainer):
        raise ConfigurationError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    if trainer.train_dataset is None or not hasattr(trainer.train_dataset, "__len__"):
        raise ConfigurationError("the Trainer needs a map-style train_dataset (with __len__) for per-sample losses")
    args = trainer.args
    dataset = trainer.train_dataset
    bookkeeping = DataLoader(dataset, batch_size=args.per_device_train_batch_size, collate_fn=lambda batch: batch)
    max_steps = args.max_steps if args.max_steps and args.max_steps > 0 else None
    session = Session(trainer.model, None, loss_fn or per_sample_cross_entropy, bookkeeping, project=project,
                      run_name=run_name, max_epochs=max(1, int(args.num_train_epochs)), max_steps=max_steps,
                      unpack=lambda batch: (batch, batch.get("labels")), **options)
    run = ExternalRun(session.parts.lifecycle, lambda: trainer.train())
    trainer.train_dataset = IndexedExamples(dataset)
    trainer.data_collator = IndexCollator(trainer._get_collator_with_removed_columns(trainer.data_collator,
                                                                                     "training"))
    trainer.compute_loss = _recording(trainer.compute_loss, run)
    trainer.train = _concluding(trainer.train, run)
    trainer.add_callback(_callback_class(TrainerCallback)(run))
    if display if display is not None else in_kernel():
        from IPython.display import display as show

        show(session.dashboard())
    return session


def _recording(compute_loss: Callable[..., Any], run: ExternalRun) -> Callable[..., Any]:
    """The trainer's compute_loss, recording each training batch's per-sample losses."""

    def recorded(model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
        indices = inputs.pop(INDEX_KEY, None)
        labels = inputs.get("labels")
        loss, outputs = compute_loss(model, inputs, return_outputs=True, **kwargs)
        if indices is not None and labels is not None and model.training:
            logits = outputs["logits"] if isinstance(outputs, dict) or hasattr(outputs, "keys") else outputs[1]
            run.record(indices.tolist(), logits.detach(), labels.detach())
        return (loss, outputs) if return_outputs else loss

    return recorded


def _concluding(train: Callable[..., Any], run: ExternalRun) -> Callable[..., Any]:
    """The trainer's train, ending the session with the error if it raises (it has no callback for that)."""

    def trained(*args: Any, **kwargs: Any) -> Any:
        try:
            return train(*args, **kwargs)
        except BaseException as exc:
            run.end(exc)
            raise

    return trained


def _callback_class(base: type) -> type:
    class OnTheFlyCallback(base):  # type: ignore[misc, valid-type]
        """Starts and ends the session with training; the step boundary after every optimizer step."""

        def __init__(self, run: ExternalRun) -> None:
            self.run = run

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.run.begin(kwargs.get("optimizer"))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.run.boundary():
                control.should_training_stop = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.run.epoch_end()

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            self.run.validated({k: float(v) for k, v in (metrics or {}).items()
                                if k.startswith("eval_") and isinstance(v, int | float)})

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.run.end(None)

    return OnTheFlyCallback
