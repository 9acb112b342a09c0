"""marimo: ``quickstart`` returns at once with the dashboard shown through ``mo.ui.anywidget``;
in ``marimo run`` (headless, driven by Chromium) the dashboard updates and Pause reaches the run."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from jupyter_helpers import NOTEBOOKS, chromium_context, free_port

pytest.importorskip("marimo")
pytestmark = pytest.mark.browser
STATE_MS = 60_000


def serve(notebook: Path, port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "marimo", "run", str(notebook), "--headless", "--host",
                               "127.0.0.1", "--port", str(port), "--no-token"], stdout=log.open("w"),
                              stderr=subprocess.STDOUT, cwd=notebook.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            assert server.poll() is None, f"marimo exited: {log.read_text()[-2000:]}"
            time.sleep(0.3)
    server.kill()
    raise AssertionError(f"marimo did not answer: {log.read_text()[-2000:]}")


def step_shown(root) -> int:
    text = root.locator(".onthefly-header").inner_text()
    return int(text.split("step ", 1)[1].split()[0].replace(",", ""))


def test_quickstart_in_marimo_shows_a_live_dashboard_that_pauses_the_run(tmp_path):
    from playwright import sync_api

    port = free_port()
    server = serve(NOTEBOOKS / "marimo_quickstart.py", port, tmp_path / "marimo.log")
    try:
        with chromium_context(tmp_path / "profile", 1200) as context:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            root = page.locator(".onthefly-root")
            sync_api.expect(root).to_have_count(1, timeout=STATE_MS)
            status = root.locator(".onthefly-status")
            sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)
            first, deadline = step_shown(root), time.monotonic() + STATE_MS / 1000
            while step_shown(root) == first and time.monotonic() < deadline:
                time.sleep(0.2)
            assert step_shown(root) > first, "the dashboard updates while the run trains"
            sync_api.expect(page.locator("table").first).to_be_visible(timeout=STATE_MS)  # the slice cell ran
            root.locator('button[data-command="pause"]').click()
            sync_api.expect(status).to_have_attribute("data-state", "paused", timeout=10_000)
            paused_at = step_shown(root)
            time.sleep(1.5)
            assert step_shown(root) == paused_at, "no step runs while paused"
            root.locator('button[data-command="resume"]').click()
            sync_api.expect(status).to_have_attribute("data-state", "running", timeout=10_000)
    finally:
        server.kill()
        server.wait(timeout=10)
