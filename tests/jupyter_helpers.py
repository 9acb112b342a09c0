"""Helpers for the tests that run real kernels (nbclient) and a real JupyterLab server.

Every helper here has an explicit timeout, so a broken kernel or server makes a test
fail instead of hanging, and every process it starts is ended by the same helper.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = NOTEBOOKS / "quickstart.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# WebGL (the sample map) without a GPU: SwiftShader, which Chromium no longer falls back to by itself
WEBGL_ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


# ---- notebook outputs ---------------------------------------------------------------
def output_text(cell: Any) -> str:
    """Everything a code cell printed or returned as text (streams and text/plain)."""
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


def error_outputs(nb: Any) -> list[str]:
    """One readable line per error output in the notebook: cell index, source, error."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i} ({cell.source[:60]!r}): {out.get('ename')}: {out.get('evalue')}\n"
                             + "\n".join(out.get("traceback", [])))
    return found


def find_cell(cells: list[Any], needle: str) -> Any:
    """The single code cell among ``cells`` whose source contains ``needle``."""
    cells = [c for c in cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell containing {needle!r}, found {len(cells)}"
    return cells[0]


# ---- kernels --------------------------------------------------------------------------
def run_in_kernel(kc: Any, code: str, timeout: float = 30.0) -> str:
    """Execute ``code`` through a BlockingKernelClient; return its stdout, raise on error."""
    chunks: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            chunks.append(content["text"])
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook, store_history=False)
    if errors or reply["content"]["status"] != "ok":
        raise AssertionError(f"kernel code failed: {errors or reply['content']}\n--- code:\n{code}")
    return "".join(chunks)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


# ---- static files ---------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        pass


@contextlib.contextmanager
def serve_repo() -> Iterator[str]:
    """The repository root over http on a free local port (the browser harness needs http)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(ROOT)))
    thread = threading.Thread(target=httpd.serve_forever, name="repo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---- JupyterLab server --------------------------------------------------------------------
@contextlib.contextmanager
def chromium_context(profile: Path, width: int) -> Iterator[Any]:
    """A headless Debian Chromium (WebGL on SwiftShader) with a fresh profile, closed and removed afterwards."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS + WEBGL_ARGS,
            viewport={"width": width, "height": 900})
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A ``jupyter lab`` subprocess in throwaway directories, with a random token."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root_dir = base / "root"
        self.settings_dir = base / "settings"
        self.runtime_dir = base / "runtime"
        self.workspaces_dir = base / "workspaces"
        self.log_path = base / "server.log"
        for d in (self.root_dir, self.settings_dir, self.runtime_dir, self.workspaces_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernel_pids: set[int] = set()
        self._write_settings()

    def _write_settings(self) -> None:
        settings = {
            # every cell stays attached to the DOM, so off-screen widget views are real
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
            # no news/update toasts covering the notebook
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
                "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
            },
        }
        for rel, value in settings.items():
            path = self.settings_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))

    def start(self, timeout: float = 60.0) -> None:
        cmd = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={self.settings_dir}",
            f"--LabApp.workspaces_dir={self.workspaces_dir}",
            "--ServerApp.disable_check_xsrf=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp, to run JupyterLab commands without hunting for menus
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",  # the same in Notebook 7
            "--LabApp.extension_manager=readonly",  # no PyPI look-ups
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI often run as root
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self.runtime_dir), PYTHONUNBUFFERED="1")
        env.pop("JUPYTER_TOKEN", None)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.base, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer /api/status within {timeout} s:\n{self.log_tail()}")

    def api(self, path: str, method: str = "GET", timeout: float = 10.0) -> Any:
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(f"{self.url}{path}{sep}token={self.token}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / f"kernel-{kernel_id}.json"

    def log_tail(self, n: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        """Shut the kernels down through the API, then the server; kill what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for kernel in self.api("/api/kernels", timeout=5):
                    with contextlib.suppress(Exception):
                        self.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=15)
            self.proc.send_signal(signal.SIGTERM)  # jupyter_server then shuts its kernels down
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.kernel_pids:
            if not wait_gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
        self.proc = None


@contextlib.contextmanager
def lab_server(base: Path) -> Iterator[LabServer]:
    server = LabServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
