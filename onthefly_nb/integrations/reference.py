"""The reference product's public API (onthefly-ai 0.1.4): ``Trainer(...).fit(...)``, with its
keywords, defaults and training semantics, and the older ``quickstart(...)``.

What 0.1.4's ``fit`` does to the numbers, and so what it does here: ``torch.manual_seed(seed)``
(42) as it starts; the training loader redrawn from a generator seeded with ``seed``
(``deterministic_pauses``); gradients clipped to ``grad_clip_norm`` (1.0) over all the model's
parameters; the scheduler stepped after every batch; validation every ``val_every_n_epochs`` (1);
autocast and a GradScaler on CUDA (``amp``). docs/reference-api.md lists every name and keyword
with its status here.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..dashboard.bridge import default_port
from ..errors import ConfigurationError
from ..session import Session
from .seeding import ORDER_POLICIES, ordered_loader, seeded_loader

DASHBOARD_HOSTS = ("127.0.0.1", "localhost")
SESSION_OVERRIDES = ("save_dir", "val_every_n_epochs", "recluster_seconds", "health_every", "stop_on_nan",
                     "deterministic", "scheduler_interval", "unpack", "display")


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code), False in a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def in_marimo() -> bool:
    """True inside a marimo notebook (``marimo edit``, ``marimo run``): its runtime has imported marimo."""
    marimo = sys.modules.get("marimo")
    try:
        return marimo is not None and bool(marimo.running_in_notebook())
    except Exception:  # noqa: BLE001 - an older or partial marimo: treat as a script
        return False


def in_notebook() -> bool:
    """A Jupyter kernel or a marimo notebook: training must leave the notebook usable."""
    return in_kernel() or in_marimo()


class Trainer:
    """``Trainer(project=..., run_name=..., max_epochs=...).fit(model=..., optimizer=..., loss_fn=...,
    train_loader=...)``, as in onthefly-ai 0.1.4.

    ``fit`` blocks until the run ends, as there, and returns the :class:`Session`. In a notebook the
    dashboard is displayed first and stays live and steerable while the cell waits (training runs on
    the kernel's main thread; the buttons reach it over the kernel's subshells); pass
    ``background=True`` to return at once instead, with the run training between cells. In a plain
    script it prints the URL of the dashboard's page. In a marimo notebook it shows the dashboard
    (``mo.ui.anywidget``) and returns at once: marimo runs one cell at a time. With neither
    ``max_epochs`` nor ``max_steps`` the run goes on until it is stopped, as there.

    The dashboard connection keywords of 0.1.4 (``connect_timeout``, ``reconnect_interval``,
    ``backlog_limit``) have no meaning here and are accepted; ``dashboard_port`` (or the environment
    variable ``ONTHEFLY_DASHBOARD_PORT``) sets the local page's port; ``auto_connect=False`` shows
    no dashboard.
    """

    def __init__(self, project: str = "default", run_name: str | None = None, max_epochs: int | None = None, *,
                 max_steps: int | None = None, do_test_after: bool = False, val_every_n_epochs: int | None = 1,
                 dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None, auto_connect: bool = True,
                 connect_timeout: float = 1.0, reconnect_interval: float = 2.0, backlog_limit: int = 20000,
                 session_defaults: dict[str, Any] | None = None, background: bool = False,
                 device: str | torch.device | None = None, display: bool | None = None) -> None:
        if dashboard_host not in DASHBOARD_HOSTS:
            warnings.warn(f"onthefly serves its dashboard on 127.0.0.1 only; dashboard_host={dashboard_host!r} "
                          f"is not used", stacklevel=2)
        for name, value in (("connect_timeout", connect_timeout), ("reconnect_interval", reconnect_interval),
                            ("backlog_limit", backlog_limit)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        defaults = dict(session_defaults or {})
        unknown = set(defaults) - set(SESSION_OVERRIDES)
        if unknown:
            raise TypeError(f"session_defaults got unexpected keys: {', '.join(sorted(unknown))} "
                            f"(it takes {', '.join(SESSION_OVERRIDES)})")
        self.project = project
        self.run_name = (run_name or "").strip() or None
        self.max_epochs, self.max_steps, self.do_test_after = max_epochs, max_steps, do_test_after
        self.val_every_n_epochs = val_every_n_epochs
        self.dashboard_port = default_port() if dashboard_port is None else dashboard_port
        self.show = auto_connect if display is None else display
        self.session_defaults = defaults
        self.background = background
        self.device = device
        self.session: Session | None = None

    def fit(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
            loss_fn: Any = None, train_loader: DataLoader | None = None, val_loader: DataLoader | None = None,
            test_loader: DataLoader | None = None, *, run_name: str | None = None, scheduler: Any = None,
            device: str | torch.device | None = None, amp: bool = True, grad_clip_norm: float | None = 1.0,
            seed: int | None = 42, embedding_hook: Any = None, model_factory: Any = None,
            data_order_policy: str = "user", deterministic_pauses: bool = True, enforce_sampler_state: bool = True,
            val_every_n_epochs: int | None = None, **session_overrides: Any) -> Session:
        """Train ``model`` with 0.1.4's semantics (see the module docstring); returns the Session."""
        for name, value in (("model", model), ("optimizer", optimizer), ("loss_fn", loss_fn),
                            ("train_loader", train_loader)):
            if value is None:
                raise ConfigurationError(f"Trainer.fit needs {name}=...")
        unknown = set(session_overrides) - set(SESSION_OVERRIDES)
        if unknown:
            raise TypeError(f"Trainer.fit() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        if data_order_policy.lower() not in ORDER_POLICIES:
            raise ConfigurationError(f"data_order_policy must be one of {', '.join(ORDER_POLICIES)}, "
                                     f"got {data_order_policy!r}")
        options = {**self.session_defaults, **session_overrides}
        save_dir = options.pop("save_dir", None)
        display = options.pop("display", self.show)
        every = options.pop("val_every_n_epochs", None)
        every = next((v for v in (every, val_every_n_epochs, self.val_every_n_epochs) if v is not None), 0)
        options.setdefault("scheduler_interval", "step")
        if seed is not None and seed >= 0:
            if data_order_policy.lower() != "user" and enforce_sampler_state:
                train_loader = ordered_loader(train_loader, seed, fixed=data_order_policy.lower() == "fixed_order")
            elif deterministic_pauses:
                train_loader = seeded_loader(train_loader, seed)
        name = (run_name or "").strip() or self.run_name
        if name is None:
            raise ConfigurationError("Trainer.fit needs a run_name (pass it to fit or to the Trainer)")
        device = torch.device(device or self.device or _reference_device())
        session = Session(model, optimizer, loss_fn, train_loader, val_loader, test_loader, scheduler=scheduler,
                          device=device, max_epochs=self.max_epochs, max_steps=self.max_steps,
                          do_test_after=self.do_test_after, project=self.project, run_name=name,
                          grad_clip_norm=grad_clip_norm or None, val_every_n_epochs=_every(every),
                          precision="fp16" if amp and device.type == "cuda" else "32", **options)
        if save_dir is not None:
            session.parts.export_dir = Path(save_dir).resolve()
        self.session = session
        if seed is not None:  # as 0.1.4's fit does, once the user's objects exist
            torch.manual_seed(seed)
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(seed)
        return _train(session, display, self.dashboard_port, self.background)

    def close(self) -> None:
        """Stop the dashboard page of the last run, if it has one (0.1.4 closes its connection)."""
        if self.session is not None and self.session.parts.hosting.server is not None:
            self.session.parts.hosting.server.stop()


def _reference_device() -> str:
    """0.1.4's choice when no device is given: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def _every(value: Any) -> int:
    """0.1.4's reading of val_every_n_epochs: a whole number > 0, anything else turns validation off."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _train(session: Session, display: bool, port: int, background: bool) -> Session:
    if in_marimo():  # marimo runs one cell at a time: a blocking fit would hold the dashboard's messages
        if display:
            import marimo

            marimo.output.append(marimo.ui.anywidget(session.dashboard()))
        return session.start()
    if in_kernel():
        if display:
            from IPython.display import display as show

            show(session.dashboard())
        session.start()
        return session if background else session.wait()
    if display:  # no widget manager: the dashboard is a page served over a localhost WebSocket
        print(f"onthefly dashboard: {session.bridge(port).url}", flush=True)
    if background:
        return session.start()
    return session.run()


def quickstart(*, project: str = "default", run_name: str = "run", model: nn.Module,
               optimizer: torch.optim.Optimizer, loss_fn: Any, train_loader: DataLoader,
               val_loader: DataLoader | None = None, test_loader: DataLoader | None = None,
               max_epochs: int | None = 1, max_steps: int | None = None, do_test_after: bool = False,
               model_factory: Any = None, **options: Any) -> Session:
    """The reference's quickstart (onthefly-ai 0.0.5) in one call: ``Trainer(...).fit(...)`` with the
    same semantics, except that in a notebook it returns at once while the run trains."""
    trainer_keys = {"device", "display", "session_defaults", "dashboard_port", "auto_connect"}
    trainer_options = {k: options.pop(k) for k in list(options) if k in trainer_keys}
    trainer = Trainer(project, run_name, max_epochs, max_steps=max_steps, do_test_after=do_test_after,
                      background=in_notebook(), **trainer_options)
    return trainer.fit(model, optimizer, loss_fn, train_loader, val_loader, test_loader,
                       model_factory=model_factory, **options)

