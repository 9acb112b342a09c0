"""The README's screenshots of the demo notebook in JupyterLab: Run All on a copy of
notebooks/quickstart.ipynb (without its last cell, which waits for the end), then the dashboard
some thousand steps into the run, in the light and the dark theme.

    .venv/bin/python docs/screenshots.py   # writes docs/images/quickstart-light.png and -dark.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from jupyter_helpers import QUICKSTART, chromium_context, lab_server  # noqa: E402

IMAGES = ROOT / "docs" / "images"
STEP = 9000  # where the screenshots are taken (of 28,000)
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, lab_server(Path(scratch)) as lab:
        notebook = nbformat.read(QUICKSTART, as_version=4)
        del notebook.cells[-2:]
        nbformat.write(notebook, lab.root_dir / "quickstart.ipynb")
        with chromium_context(Path(scratch) / "profile", 1400) as context:
            page = context.new_page()
            page.set_viewport_size({"width": 1400, "height": 4200})  # the whole dashboard in view
            page.goto(f"{lab.lab_url('quickstart.ipynb')}&reset", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            page.wait_for_timeout(3000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            root = page.locator(".onthefly-root")
            root.wait_for(timeout=120_000)
            page.wait_for_function(
                f"() => Number(document.querySelector('.onthefly-step')?.dataset.step || 0) >= {STEP}",
                timeout=300_000)
            page.locator('.onthefly-root button[data-command="pause"]').click()
            page.wait_for_selector('.onthefly-status[data-state="paused"]', timeout=60_000)
            for name, theme in THEMES.items():
                page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', "
                              f"{{theme: {theme!r}}})")
                page.wait_for_timeout(2500)
                root.scroll_into_view_if_needed()
                root.screenshot(path=str(IMAGES / f"quickstart-{name}.png"))
                print(f"wrote {IMAGES / f'quickstart-{name}.png'}")


if __name__ == "__main__":
    main()
