"""Saved notebooks show the run: once a run ends its dashboard becomes the frozen final dashboard
(HTML, no widget view), which a notebook reopened in a fresh server draws without any kernel, and
which `jupyter nbconvert --execute --to html` shows offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_helpers import CHROMIUM, ROOT, chromium_context, lab_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian's chromium package)"),
    pytest.mark.skipif(not (ROOT / "onthefly_nb" / "static" / "frozen.js").exists(),
                       reason="onthefly_nb/static/frozen.js is missing: run `npm install && npm run build` first"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

CELLS = [
    """import torch, torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly import quickstart
torch.manual_seed(0)
X = torch.randn(2048, 20)
y = (X[:, :5].sum(dim=1) > 0).long()
model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))""",
    """session = quickstart(project="saved", run_name="short", model=model,
                     optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn=nn.CrossEntropyLoss(),
                     train_loader=DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True), max_epochs=6)""",
    "session.wait()",
]
APPS = {"jupyterlab": "lab/tree", "notebook7": "notebooks"}
WIDGET_ERRORS = ("Error displaying widget", "model not found", "Loading widget")


def notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, path)
    return path


def expect_final_dashboard(page: sync_api.Page) -> None:
    root = page.locator(".onthefly-root")
    sync_api.expect(root).to_have_count(1, timeout=60_000)
    sync_api.expect(root).to_have_attribute("data-connection", "saved")
    sync_api.expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "finished")
    sync_api.expect(root.locator(".onthefly-disconnected")).to_contain_text("final state")
    sync_api.expect(root.locator("path.onthefly-median")).to_have_count(1)
    sync_api.expect(root.locator('button[data-command="pause"]')).to_be_disabled()
    text = page.locator("body").inner_text()
    assert not any(error in text for error in WIDGET_ERRORS), text[:2000]


@pytest.mark.parametrize("app", list(APPS))
def test_a_saved_notebook_reopened_without_its_kernel_shows_the_final_dashboard(tmp_path: Path, app: str) -> None:
    with lab_server(tmp_path / "server") as lab:
        name = notebook(lab.root_dir / f"saved-{app}.ipynb").name
        with chromium_context(tmp_path / "profile", 1400) as context:
            page = context.pages[0] if context.pages else context.new_page()
            reset = "&reset" if app == "jupyterlab" else ""
            page.goto(f"{lab.url}/{APPS[app]}/{name}?token={lab.token}{reset}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                                   timeout=90_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            expect_final_dashboard(page)  # the run ended: the live view became the frozen final dashboard
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
        saved = nbformat.read(lab.root_dir / name, as_version=4)
        outputs = [set(o.get("data", {})) for o in saved.cells[1].outputs]
        assert outputs == [{"text/html", "text/plain"}], outputs
        lab.stop()  # the kernel goes with the server
        lab.start()
        with chromium_context(tmp_path / "profile-again", 1400) as context:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{lab.url}/{APPS[app]}/{name}?token={lab.token}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            expect_final_dashboard(page)


def test_nbconvert_html_shows_the_final_dashboard_offline(tmp_path: Path) -> None:
    source = notebook(tmp_path / "run.ipynb")
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "html", str(source)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    html = tmp_path / "run.html"
    assert "ontheflyFrozen" in html.read_text()
    with chromium_context(tmp_path / "profile", 1400) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        page.goto(html.as_uri())
        expect_final_dashboard(page)
