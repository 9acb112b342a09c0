"""End to end: the quickstart notebook in a real JupyterLab, driven by Debian's Chromium.

The dashboard's buttons must steer the training thread in the kernel, which is checked
from the Python side by a second client connected to the same kernel. Run with
``pytest -m e2e tests/test_jupyterlab.py``; it takes about a minute.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    QUICKSTART,
    ROOT,
    LabServer,
    lab_server,
    run_in_kernel,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian's chromium package)"),
    pytest.mark.skipif(
        not (ROOT / "onthefly_nb" / "static" / "widget.js").exists(),
        reason="onthefly_nb/static/widget.js is missing: run `npm install && npm run build` first",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
jupyter_client = pytest.importorskip("jupyter_client", reason="jupyter_client is not installed")

NOTEBOOK = "quickstart.ipynb"
APP_LOAD_MS = 90_000
STATE_MS = 60_000
PROBE = """
import json, os, time
_a = (session.status, session.global_step)
time.sleep(0.5)
_b = (session.status, session.global_step)
print(json.dumps({"status": [_a[0], _b[0]], "step": [_a[1], _b[1]], "pid": os.getpid()}))
del _a, _b
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with lab_server(tmp_path_factory.mktemp("jupyterlab")) as server:
        shutil.copy(QUICKSTART, server.root_dir / NOTEBOOK)
        yield server


@pytest.fixture
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def kernel_idle_js(path: str) -> str:
    """JS predicate: the notebook at ``path`` is current and its kernel is idle."""
    return f"""() => {{
        const app = window.jupyterapp;
        const w = app && app.shell && app.shell.currentWidget;
        const ctx = w && w.sessionContext;
        return !!(ctx && ctx.path === {json.dumps(path)} && ctx.session && ctx.session.kernel
                  && ctx.session.kernel.status === "idle");
    }}"""


def connect_kernel(lab: LabServer, path: str) -> jupyter_client.BlockingKernelClient:
    sessions = [s for s in lab.api("/api/sessions") if s.get("path") == path]
    assert len(sessions) == 1, f"expected one kernel session for {path}, got {sessions}"
    connection = lab.connection_file(sessions[0]["kernel"]["id"])
    assert connection.exists(), f"no connection file {connection}; runtime dir holds {list(lab.runtime_dir.iterdir())}"
    kc = jupyter_client.BlockingKernelClient(connection_file=str(connection))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
    except BaseException:
        kc.stop_channels()
        raise
    return kc


def probe(kc: jupyter_client.BlockingKernelClient) -> dict:
    out = run_in_kernel(kc, PROBE, timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def test_dashboard_buttons_steer_the_kernel_session(lab: LabServer, page: sync_api.Page, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard-running.png"
    where = f"(server log: {lab.log_path}; screenshot: {shot})"

    page.goto(lab.lab_url(NOTEBOOK), timeout=APP_LOAD_MS)
    page.wait_for_selector(".jp-Notebook", timeout=APP_LOAD_MS)
    page.wait_for_function(kernel_idle_js(NOTEBOOK), timeout=APP_LOAD_MS)

    # Run → Run All Cells, through JupyterLab's command registry (the menu item's command)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # every cell ran: the last one is `%onthefly status`, and the kernel is free again,
    # so the dashboard's comm messages are handled at once
    last_output = page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-OutputArea-output")
    sync_api.expect(last_output).to_contain_text("mnist-demo/baseline", timeout=STATE_MS)
    page.wait_for_function(kernel_idle_js(NOTEBOOK), timeout=STATE_MS)

    root = page.locator(".onthefly-root")
    sync_api.expect(root).to_have_count(1, timeout=STATE_MS)
    status = root.locator(".onthefly-status")
    sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)
    root.scroll_into_view_if_needed()
    page.screenshot(path=str(shot), full_page=False)

    kc = None
    try:
        # Pause in the browser; the trainer pauses at the next step boundary
        root.locator('button[data-command="pause"]').click()
        sync_api.expect(status).to_have_attribute("data-state", "paused", timeout=STATE_MS)

        kc = connect_kernel(lab, NOTEBOOK)
        seen = probe(kc)
        lab.kernel_pids.add(seen["pid"])
        assert seen["status"] == ["paused", "paused"], f"kernel session not paused: {seen} {where}"
        assert seen["step"][0] == seen["step"][1] > 0, f"steps moved while paused: {seen} {where}"
        sync_api.expect(root.locator(".onthefly-step")).to_have_attribute(
            "data-step", str(seen["step"][0]), timeout=10_000)

        # Resume in the browser
        root.locator('button[data-command="resume"]').click()
        sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)
        seen = probe(kc)
        assert seen["status"][0] == "running", f"kernel session not running after Resume: {seen} {where}"

        # Stop from Python; the dashboard follows
        run_in_kernel(kc, "session.stop(); print(session.status)", timeout=60)
        sync_api.expect(status).to_have_attribute("data-state", "stopped", timeout=STATE_MS)
        assert run_in_kernel(kc, "print(session.status)").strip() == "stopped"
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"))
        raise AssertionError(f"{exc}\n{where}; failure screenshot: {tmp_path / 'failure.png'}\n"
                             f"--- server log tail:\n{lab.log_tail(2000)}") from exc
    finally:
        if kc is not None:
            kc.stop_channels()
