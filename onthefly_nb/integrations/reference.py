"""The reference product's public API: ``Trainer(...).fit(...)`` and ``quickstart(...)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigurationError
from ..session import Session


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code), False in a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Trainer:
    """``Trainer(project=, run_name=, max_epochs=).fit(model=, optimizer=, loss_fn=, ...)``.

    In a notebook ``fit`` displays the dashboard, trains on a background thread and returns
    the running Session at once; in a plain script it prints the URL of the dashboard's page
    (with its token), trains on the calling thread and returns the finished Session (re-raising
    the error if the run failed). ``display=False`` shows no dashboard.
    """

    def __init__(self, project: str = "default", run_name: str = "run", max_epochs: int = 1, *,
                 max_steps: int | None = None, device: str | torch.device | None = None,
                 do_test_after: bool = False, stop_on_nan: bool = True,
                 scheduler_interval: str = "epoch", display: bool | None = None) -> None:
        self.project, self.run_name = project, run_name
        self.options: dict[str, Any] = dict(
            max_epochs=max_epochs, max_steps=max_steps, device=device, do_test_after=do_test_after,
            stop_on_nan=stop_on_nan, scheduler_interval=scheduler_interval,
        )
        self.display = display
        self.session: Session | None = None

    def fit(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any,
            train_loader: DataLoader, val_loader: DataLoader | None = None,
            test_loader: DataLoader | None = None, *, scheduler: Any = None,
            unpack: Any = None) -> Session:
        """Build the Session and start it; see the class docstring for when it returns."""
        self.session = Session(
            model, optimizer, loss_fn, train_loader, val_loader, test_loader, scheduler=scheduler,
            unpack=unpack, project=self.project, run_name=self.run_name, **self.options,
        )
        notebook = in_kernel()
        show = self.display if self.display is not None else True
        if notebook:
            if show:
                from IPython.display import display

                display(self.session.dashboard())
            return self.session.start()
        if show:  # no widget manager: the dashboard is a page served over a localhost WebSocket
            print(f"onthefly dashboard: {self.session.bridge().url}", flush=True)
        return self.session.run()


def quickstart(*, project: str = "default", run_name: str = "run", model: nn.Module,
               optimizer: torch.optim.Optimizer, loss_fn: Any, train_loader: DataLoader,
               val_loader: DataLoader | None = None, test_loader: DataLoader | None = None,
               max_epochs: int = 1, do_test_after: bool = False, **options: Any) -> Session:
    """The reference quickstart in one call: a Trainer and its ``fit``."""
    fit_keys = {"scheduler", "unpack"}
    unknown = set(options) - fit_keys - {"max_steps", "device", "stop_on_nan", "scheduler_interval", "display"}
    if unknown:
        raise ConfigurationError(f"quickstart() got unknown arguments: {', '.join(sorted(unknown))}")
    fit_options = {k: options.pop(k) for k in list(options) if k in fit_keys}
    trainer = Trainer(project, run_name, max_epochs, do_test_after=do_test_after, **options)
    return trainer.fit(model, optimizer, loss_fn, train_loader, val_loader, test_loader, **fit_options)
