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
import os
import warnings
from pathlib import Path
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


def attach_lightning(trainer: Any, model: nn.Module, datamodule: Any = None, project: str = "default",
                     run_name: str = "run", *, train_loader: DataLoader | None = None,
                     val_loader: DataLoader | None = None, test_loader: DataLoader | None = None,
                     loss_fn: Any = None, do_test_after: bool = False, save_dir: str | None = None,
                     auto_connect: bool = True, channel: Any = None, channel_kwargs: dict[str, Any] | None = None,
                     log_every_n_steps: int = 1, model_factory: Any = None, embedding_hook: Any = None,
                     display: bool | None = None, **options: Any) -> Session:
    """Wire a Lightning ``trainer`` and ``model`` into a Session (returned) before ``trainer.fit``.

    Then call ``trainer.fit`` as usual: with the loaders given here, with a ``datamodule``, with
    loaders of its own (``trainer.fit(model, train_dl, val_dl)``) or the module's
    ``train_dataloader``; each training batch's per-sample losses are keyed by the dataset indices
    of the loader Lightning actually iterates. Or call ``session.start()``, which runs that fit on
    the session's thread so the notebook (and the dashboard's buttons) stay free. The loss is
    ``loss_fn``, else the module's ``loss_fn`` or ``criterion`` (or ``loss``) attribute, as the
    reference looks for it. With ``do_test_after`` (and a test loader, given here or by the
    datamodule) ``trainer.test`` runs once the fit ends. The reference's connection keywords
    (``auto_connect``, ``channel``, ``channel_kwargs``, ``log_every_n_steps``) are accepted;
    ``auto_connect=False`` shows no dashboard. ``options`` go to :class:`Session`.
    """
    pl = _lightning()
    if not isinstance(trainer, pl.Trainer):
        raise ConfigurationError(f"trainer must be a {pl.__name__}.Trainer, got {type(trainer).__name__}")
    if not isinstance(model, pl.LightningModule):
        raise ConfigurationError(f"model must be a {pl.__name__}.LightningModule, got {type(model).__name__}")
    loss_fn = loss_fn or next((getattr(model, a) for a in ("loss_fn", "criterion", "loss")
                               if callable(getattr(model, a, None))), None)
    if loss_fn is None:
        raise ConfigurationError("attach_lightning needs the loss: pass loss_fn=..., or give the module a "
                                 "loss_fn or criterion attribute (e.g. self.loss_fn = nn.CrossEntropyLoss())")
    source = datamodule if datamodule is not None else model
    loader = train_loader if train_loader is not None else _training_loader(source, datamodule)
    max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    options.setdefault("val_every_n_epochs", 0)  # Lightning validates; session.validate() can too
    session = Session(model, None, loss_fn, loader, val_loader, test_loader, project=project, run_name=run_name,
                      max_epochs=max_epochs, max_steps=max_steps, **options)
    if save_dir is not None:
        session.parts.export_dir = Path(save_dir).resolve()
    taped = Taped(loader.dataset)
    fit = trainer.fit
    run = ExternalRun(session.parts.lifecycle, lambda: trainer.fit(model, train_loader, val_loader,
                                                                   datamodule=None if train_loader else datamodule))

    def fit_taped(module: Any = None, train_dataloaders: Any = None, val_dataloaders: Any = None,
                  datamodule: Any = None, **kwargs: Any) -> Any:
        """``trainer.fit``, with an IndexTape on whatever loader it is given or will ask for."""
        taped.wrap(train_dataloaders if isinstance(train_dataloaders, DataLoader) else None,
                   datamodule if datamodule is not None else source)
        module = module if module is not None else model
        result = fit(module, train_dataloaders, val_dataloaders, datamodule=datamodule, **kwargs)
        if do_test_after and not trainer.interrupted:
            session.parts.run.tests += 1  # named as the reference names a test pass
            os.environ["ONTHEFLY_TEST_LABEL"] = f"test_{session.parts.run.tests}"
            if test_loader is not None:
                trainer.test(module, dataloaders=test_loader, verbose=False)
            elif callable(getattr(datamodule or source, "test_dataloader", None)):
                trainer.test(module, datamodule=datamodule, verbose=False)
        return result

    trainer.fit = fit_taped
    trainer.callbacks.append(_callback_class(pl)(run, taped))
    if (display if display is not None else in_kernel()) and auto_connect:
        from IPython.display import display as show

        show(session.dashboard())
    return session


def _training_loader(source: Any, datamodule: Any) -> DataLoader:
    """The loader Lightning will train on, from the datamodule (set up for fitting) or the module."""
    if datamodule is not None:
        datamodule.setup("fit")
    hook = getattr(source, "train_dataloader", None)
    loader = hook() if callable(hook) else None
    if not isinstance(loader, DataLoader):
        raise ConfigurationError("attach_lightning needs the training DataLoader: pass train_loader=..., a "
                                 "datamodule=... with train_dataloader(), or give the module a train_dataloader()")
    return loader


class Taped:
    """Puts an :class:`IndexTape` on the loader Lightning iterates (given to ``fit``, or returned
    by the datamodule's or module's ``train_dataloader``) and hands the callback its indices."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.tape: IndexTape | None = None
        self._wrapped: set[int] = set()

    def wrap(self, loader: DataLoader | None, source: Any) -> None:
        if loader is not None:
            self.install(loader)
            return
        hook = getattr(source, "train_dataloader", None)
        if callable(hook) and id(source) not in self._wrapped:
            self._wrapped.add(id(source))

            def taped_loader() -> Any:
                made = hook()
                if isinstance(made, DataLoader):
                    self.install(made)
                return made

            source.train_dataloader = taped_loader

    def install(self, loader: DataLoader) -> None:
        if loader.dataset is not self.dataset and len(loader.dataset) != len(self.dataset):  # type: ignore[arg-type]
            raise ConfigurationError(
                f"trainer.fit trains on a dataset of {len(loader.dataset)} samples, but the session was "  # type: ignore[arg-type]
                f"made for one of {len(self.dataset)}: pass the same loader (or datamodule) to attach_lightning")
        self.tape = IndexTape.install(loader)

    def pop(self) -> list[int]:
        if self.tape is None:
            raise ConfigurationError("Lightning trained on a loader onthefly_nb did not see: pass it to "
                                     "trainer.fit or attach_lightning")
        return self.tape.pop()


def _callback_class(pl: Any) -> type:
    """The callback, subclassing the installed Lightning's ``Callback``."""

    class OnTheFlyCallback(pl.Callback):
        """Records each training batch and applies the session's controls at its boundary."""

        def __init__(self, run: ExternalRun, tape: Taped) -> None:
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
