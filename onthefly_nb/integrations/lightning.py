"""``attach_lightning``: the dashboard and controls on a Lightning run (``lightning`` or
``pytorch_lightning`` 2.x), from a callback.

The callback takes the LightningModule's output from the forward pass ``training_step`` already
runs (a forward hook: no second pass), computes per-sample losses with ``loss_fn``, keys them by
the dataset indices the training loader's :class:`IndexTape` handed out, and applies pause, step
and stop at every training batch boundary (stop sets ``trainer.should_stop``). Validation metrics
that the module logs (``val_*``) flow to the dashboard.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from ..data.batches import IndexTape
from ..errors import ConfigurationError
from ..run.external import ExternalRun
from ..session import Session
from .reference import in_kernel

NO_OUTPUTS = ("training_step did not call the LightningModule's forward (self(x)), so onthefly_nb has no outputs "
              "to compute per-sample losses from; call self(x) in training_step. Training goes on unrecorded.")


def _lightning() -> Any:
    """The installed Lightning package: ``lightning.pytorch``, else ``pytorch_lightning``."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ConfigurationError("attach_lightning needs Lightning 2.x: pip install 'onthefly-nb[lightning]'")


def attach_lightning(trainer: Any, model: nn.Module, project: str = "default", run_name: str = "run", *,
                     train_loader: DataLoader, val_loader: DataLoader | None = None, loss_fn: Any,
                     display: bool | None = None, **options: Any) -> Session:
    """Wire a Lightning ``trainer`` and ``model`` into a Session (returned) before ``trainer.fit``.

    Then either call ``trainer.fit(model, train_loader, val_loader)`` as usual, or
    ``session.start()``, which runs that same fit on the session's thread so the notebook (and
    the dashboard's buttons) stay free. ``options`` go to :class:`Session` (e.g. ``recluster_seconds``).
    """
    pl = _lightning()
    if not isinstance(trainer, pl.Trainer):
        raise ConfigurationError(f"trainer must be a {pl.__name__}.Trainer, got {type(trainer).__name__}")
    if not isinstance(model, pl.LightningModule):
        raise ConfigurationError(f"model must be a {pl.__name__}.LightningModule, got {type(model).__name__}")
    max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1000
    session = Session(model, None, loss_fn, train_loader, project=project, run_name=run_name,
                      max_epochs=max_epochs, max_steps=max_steps, **options)
    tape = IndexTape.install(train_loader)
    run = ExternalRun(session.parts.lifecycle, lambda: trainer.fit(model, train_loader, val_loader))
    trainer.callbacks.append(_callback_class(pl)(run, tape))
    if display if display is not None else in_kernel():
        from IPython.display import display as show

        show(session.dashboard())
    return session


def _callback_class(pl: Any) -> type:
    """The callback, subclassing the installed Lightning's ``Callback``."""

    class OnTheFlyCallback(pl.Callback):
        """Records each training batch and applies the session's controls at its boundary."""

        def __init__(self, run: ExternalRun, tape: IndexTape) -> None:
            self.run = run
            self.tape = tape
            self.unpack = run.run.unpack
            self._outputs: Any = None
            self._hook: Any = None
            self._warned = False

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.run.begin(trainer.optimizers[0] if trainer.optimizers else None)
            self._hook = pl_module.register_forward_hook(self._capture)

        def _capture(self, module: nn.Module, _inputs: Any, output: Any) -> None:
            if module.training:
                self._outputs = output

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self._outputs = None

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self._outputs is None:
                if not self._warned:
                    warnings.warn(NO_OUTPUTS, stacklevel=2)
                    self._warned = True
                self.tape.pop()
            else:
                self.run.record(self.tape.pop(), self._outputs.detach(), self.unpack(batch)[1])
            if (batch_idx + 1) % trainer.accumulate_grad_batches == 0 and self.run.boundary():
                trainer.should_stop = True  # between optimizer steps, never inside gradient accumulation

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.run.epoch_end()

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                self.run.validated({k: float(v) for k, v in trainer.callback_metrics.items()
                                    if k.startswith("val") and getattr(v, "numel", lambda: 1)() == 1})

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self._unhook()
            self.run.end(None)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._unhook()
            self.run.end(exception)

        def _unhook(self) -> None:
            if self._hook is not None:
                self._hook.remove()
                self._hook = None

    return OnTheFlyCallback
