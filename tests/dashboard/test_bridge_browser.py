"""Browser tests of the WebSocket bridge (onthefly_nb/bridge.py) with its two front ends: the
standalone page (onthefly_nb/static/standalone.js) and VS Code's notebook renderer
(widgets/out/renderer.js, driven by tests/browser/renderer.html with a fake renderer context).

A real session trains on small data made here; Chromium clicks the dashboard's buttons and the
test checks the session itself. Build the bundles first: ``npm run build``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from jupyter_helpers import CHROMIUM, ROOT, chromium_context, serve_repo

STANDALONE_JS = ROOT / "onthefly_nb" / "static" / "standalone.js"
RENDERER_JS = ROOT / "widgets" / "out" / "renderer.js"
HARNESS_PREFIX = "/__harness__/"  # served by Playwright from the repository, on the bridge's origin

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (STANDALONE_JS.exists() and RENDERER_JS.exists()),
        reason="standalone.js or widgets/out/renderer.js is missing: run `npm install && npm run build` first",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytest.importorskip("websockets", reason="the bridge needs the websockets package")
expect = sync_api.expect


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), width=1100) as context:
        yield context


@pytest.fixture
def served(session_factory):
    """A session with its bridge on a free port, started paused (it trains when resumed)."""
    session = session_factory(n=256, batch_size=8, max_epochs=5000)
    bridge = session.bridge(port=0)
    session.start(paused=True)
    try:
        yield session, bridge
    finally:
        bridge.stop()


class Page:
    """A page with its console errors collected (the favicon's 404 aside)."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def real_errors(self) -> list[str]:
        return [e for e in self.errors if "favicon" not in e and "404" not in e]


@pytest.fixture
def new_page(browser_context) -> Iterator[Callable[[], Page]]:
    pages: list[Page] = []

    def make() -> Page:
        pages.append(Page(browser_context.new_page()))
        return pages[-1]

    yield make
    for p in pages:
        p.page.close()


def route_harness(page, origin: str, repo_url: str) -> None:
    """Show the repository's files under ``<bridge origin>/__harness__/``: the renderer harness then
    runs on the bridge's origin, which the bridge accepts (as it accepts VS Code webviews). The
    requests go on to the repository's server unchanged (a page Playwright made up would count as
    a public page, which Chromium's local network access checks keep from 127.0.0.1)."""

    def handle(route) -> None:
        rel = route.request.url.split(HARNESS_PREFIX, 1)[1]
        route.continue_(url=f"{repo_url}/{rel}")

    page.route(f"{origin}{HARNESS_PREFIX}**", handle)


@pytest.fixture(scope="module")
def repo_url():
    with serve_repo() as url:
        yield url


def origin_of(bridge) -> str:
    return f"http://127.0.0.1:{bridge.port}"


def payload_of(session, bridge) -> dict:
    # what onthefly_nb.dashboard.widget puts in application/vnd.onthefly.dashboard+json
    return {"url": f"http://127.0.0.1:{bridge.port}/", "token": bridge.token, "session": session.run_name}


def click_and_check_pause_resume(root, session) -> None:
    status = root.locator(".onthefly-status")
    pause = root.locator('button.onthefly-btn[data-command="pause"]')
    resume = root.locator('button.onthefly-btn[data-command="resume"]')
    expect(status).to_have_attribute("data-state", "paused")
    assert session.status == "paused"

    expect(resume).to_be_enabled()
    resume.click()
    wait_for(lambda: session.status == "running", "the session to run after Resume")
    expect(status).to_have_attribute("data-state", "running")  # the trait came back over the socket
    wait_for(lambda: session.global_step > 0, "a training step")
    step = root.locator(".onthefly-step")
    expect(step).not_to_have_attribute("data-step", "0")

    expect(pause).to_be_enabled()
    pause.click()
    wait_for(lambda: session.status == "paused", "the session to pause after Pause")
    expect(status).to_have_attribute("data-state", "paused")
    k = session.global_step
    expect(step).to_have_attribute("data-step", str(k))
    time.sleep(0.3)
    assert session.global_step == k, "a step ran while paused"


# the standalone page -----------------------------------------------------------------------


def test_standalone_page_pauses_and_resumes_the_session(served, new_page):
    session, bridge = served
    p = new_page()
    p.page.goto(bridge.url)
    app = p.page.locator("#onthefly-app")
    root = app.locator(".onthefly-root")
    expect(root).to_have_count(1)
    expect(p.page).to_have_title(f"onthefly · {session.run_name}")
    expect(root.locator(".onthefly-title")).to_contain_text(session.run_name)

    click_and_check_pause_resume(root, session)

    kinds = [e["kind"] for e in session.events]
    assert "resumed" in kinds, kinds
    assert "paused" in kinds[len(kinds) - kinds[::-1].index("resumed"):], "no pause after the resume"

    bridge.stop()
    banner = app.locator(".onthefly-standalone-banner")
    expect(banner).to_be_visible(timeout=10_000)
    expect(banner).to_contain_text("Disconnected from the training process")
    expect(root).to_have_count(1)  # the last state stays on screen
    assert p.real_errors() == [], f"browser console errors: {p.real_errors()}"


def test_standalone_page_says_why_it_cannot_connect(served, new_page):
    session, bridge = served
    p = new_page()
    origin = origin_of(bridge)
    # The bridge serves its page only with the right token: fetch it with that one while the
    # address bar keeps a wrong one, so that standalone.js tries the socket with the wrong token.
    p.page.route(lambda url: "token=not-the-token" in url, lambda route: route.continue_(url=bridge.url))
    p.page.goto(f"{origin}/?token=not-the-token")
    error = p.page.locator("#onthefly-app .onthefly-standalone-error")
    expect(error).to_be_visible(timeout=10_000)
    text = error.text_content()
    assert "connection to ws://127.0.0.1:" in text and "/ws?token=*** closed with code 1006" in text
    assert "before any dashboard state arrived" in text and "Reload the page to retry" in text
    assert "not-the-token" not in text
    assert p.page.locator(".onthefly-root").count() == 0
    # the bridge refused the handshake (401), which Chromium logs as failed HTTP authentication
    assert any("/ws?token=not-the-token' failed: HTTP Authentication failed" in e for e in p.errors), p.errors

    # Without any token, the page says what it needs.
    p.page.route(lambda url: url.rstrip("/").endswith("/no-token"), lambda route: route.continue_(url=bridge.url))
    p.page.goto(f"{origin}/no-token")
    expect(p.page.locator("#onthefly-app .onthefly-standalone-error")).to_contain_text("needs its access token")
    assert p.page.locator(".onthefly-root").count() == 0


# the VS Code renderer ----------------------------------------------------------------------


def open_harness(p: Page, bridge, repo_url: str, query: str = "") -> None:
    route_harness(p.page, origin_of(bridge), repo_url)
    p.page.goto(f"{origin_of(bridge)}{HARNESS_PREFIX}tests/browser/renderer.html{query}")
    p.page.wait_for_function("() => window.harnessReady === true")


def test_renderer_mounts_the_dashboard_and_steers_the_session(served, new_page, repo_url):
    session, bridge = served
    p = new_page()
    open_harness(p, bridge, repo_url)
    p.page.evaluate("(payload) => window.render(payload)", payload_of(session, bridge))
    out = p.page.locator('[data-output-id="out-1"]')
    root = out.locator(".onthefly-root")
    expect(root).to_have_count(1)
    expect(root.locator(".onthefly-title")).to_contain_text(session.run_name)
    # the dashboard's styles come with the renderer (a webview has no /static/widget.css)
    assert p.page.locator("style#onthefly-dashboard-style").count() == 1
    assert p.page.evaluate("() => getComputedStyle(document.querySelector('.onthefly-root')).display") != "inline"
    # connected directly: nothing went through the relay
    assert p.page.evaluate("() => window.posted.length") == 0

    click_and_check_pause_resume(root, session)

    # A message the session refuses comes back as an error frame (msg:custom) and changes nothing.
    reply = p.page.evaluate("""() => new Promise((resolve) => {
        const model = window.renderer.models.get("out-1");
        model.on("msg:custom", (header) => resolve(header));
        model.send({ type: "plan", id: "plan-404", decision: "approve" });
    })""")
    assert reply["type"] == "error" and reply["protocol"] == 1
    assert "plan-404" in reply["reason"]
    assert session.events[-1]["kind"] == "rejected_message"
    assert session.status == "paused"

    # Re-rendering the same output replaces the dashboard; disposing it closes the socket.
    p.page.evaluate("(payload) => window.render(payload)", payload_of(session, bridge))
    expect(root).to_have_count(1)
    assert p.page.evaluate("() => window.renderer.models.size") == 1
    p.page.evaluate("() => window.dispose('out-1')")
    expect(out.locator(".onthefly-root")).to_have_count(0)
    assert p.page.evaluate("() => window.renderer.models.size") == 0
    wait_for(lambda: not bridge.clients, "the bridge to see the renderer's socket close")
    assert p.real_errors() == [], f"browser console errors: {p.real_errors()}"


def test_renderer_falls_back_to_the_extension_relay(served, new_page, repo_url):
    session, bridge = served
    p = new_page()
    open_harness(p, bridge, repo_url, "?blockDirect")
    p.page.evaluate("(payload) => window.render(payload)", payload_of(session, bridge))
    root = p.page.locator('[data-output-id="out-1"] .onthefly-root')
    expect(root).to_have_count(1)
    posted = p.page.evaluate("() => window.posted")
    assert posted[0]["tag"] == "onthefly-relay" and posted[0]["op"] == "open"
    assert posted[0]["url"] == f"ws://127.0.0.1:{bridge.port}/ws?token={bridge.token}"

    click_and_check_pause_resume(root, session)
    sends = [m for m in p.page.evaluate("() => window.posted") if m["op"] == "send"]
    assert len(sends) == 2, "Resume and Pause each travel as one relayed frame"

    bridge.stop()
    banner = p.page.locator(".onthefly-renderer-banner")
    expect(banner).to_be_visible(timeout=10_000)
    expect(banner).to_contain_text("Disconnected from the training process")
    assert p.real_errors() == [], f"browser console errors: {p.real_errors()}"


def test_renderer_hands_an_unreachable_bridge_to_the_next_format(served, new_page, repo_url):
    """A bridge it cannot reach (a saved notebook whose process is gone): the renderer throws VS Code's
    fallback error, so the output's HTML (the summary or the frozen final dashboard) shows; the
    reasons go to the console."""
    session, bridge = served
    p = new_page()
    open_harness(p, bridge, repo_url, "?blockDirect")
    bad = {**payload_of(session, bridge), "token": "wrong-token"}
    # the webview cannot connect, and the relay's socket is refused (401): both reasons are given
    failed = p.page.evaluate("(payload) => window.render(payload).then(() => null, (e) => [e.name, e.message])", bad)
    assert failed is not None and failed[0] == "vscode.fallbackToNextRenderer", failed
    text = failed[1]
    assert "cannot reach the training process" in text
    assert "directly: onthefly: cannot open" in text and "blocked by the harness" in text
    assert "through the extension: onthefly: connection to" in text and "before any dashboard state arrived" in text
    assert "wrong-token" not in text and "token=***" in text
    assert p.page.locator('[data-output-id="out-1"]').inner_html() == "", "nothing of ours is left to cover the HTML"

    # A context without renderer messaging has no relay to fall back on.
    failed = p.page.evaluate("""async (payload) => {
        const mod = await import("../../widgets/out/renderer.js");
        const el = document.createElement("div");
        el.id = "norelay";
        document.body.appendChild(el);
        const context = { workspace: { isTrusted: true }, getState() {}, setState() {}, getRenderer: async () => {} };
        const item = { id: "x", mime: "", metadata: {}, json: () => payload };
        return mod.activate(context).renderOutputItem(item, el, new AbortController().signal)
            .then(() => null, (e) => [e.name, e.message]);
    }""", bad)
    assert failed[0] == "vscode.fallbackToNextRenderer" and "cannot reach the training process" in failed[1]
    assert "through the extension" not in failed[1]
    assert p.page.evaluate("() => window.posted.filter((m) => m.op === 'open').length") == 1


def test_renderer_waits_for_a_trusted_workspace(served, new_page, repo_url):
    session, bridge = served
    p = new_page()
    open_harness(p, bridge, repo_url, "?trusted=0")
    p.page.evaluate("(payload) => window.render(payload)", payload_of(session, bridge))
    out = p.page.locator('[data-output-id="out-1"]')
    expect(out.locator(".onthefly-renderer-status")).to_contain_text("trust this workspace")
    assert out.locator(".onthefly-root").count() == 0
    time.sleep(0.3)
    assert not bridge.clients, "an untrusted workspace connected anyway"


SCRIPT = """
import json, os, sys, threading, time, torch, torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly import Trainer

x = torch.randn(512, 20)
data = TensorDataset(x, (x[:, :5].sum(1) > 0).long())
model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 2))
state = sys.argv[1]

def report():
    from onthefly_nb import Session
    while True:
        session = Session.current()
        if session is not None:
            with open(state + ".tmp", "w") as f:
                json.dump({"status": session.status, "step": session.global_step}, f)
            os.replace(state + ".tmp", state)
        time.sleep(0.02)

threading.Thread(target=report, daemon=True).start()
session = Trainer(project="script", run_name="page", max_epochs=100_000).fit(
    model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), loss_fn=nn.CrossEntropyLoss(),
    train_loader=DataLoader(data, batch_size=16, shuffle=True))
print("ENDED", session.status, flush=True)
"""


def test_the_standalone_page_of_a_running_script_pauses_and_resumes_it(browser_context, tmp_path):
    """``python train.py``: Trainer.fit prints the page's URL; in Chromium, Pause, Resume and Stop
    steer the script, whose own state (written by the script) follows."""
    state = tmp_path / "state.json"
    script = subprocess.Popen([sys.executable, "-c", SCRIPT, str(state)], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    try:
        line = script.stdout.readline()
        assert line.startswith("onthefly dashboard: http://127.0.0.1:") and "?token=" in line, line
        url = line.split(": ", 1)[1].strip()

        def seen() -> dict:
            try:
                return json.loads(state.read_text())
            except (OSError, ValueError):
                return {}

        page = browser_context.new_page()
        page.goto(url)
        root = page.locator(".onthefly-root")
        expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "running", timeout=30_000)
        root.locator('button[data-command="pause"]').click()
        wait_for(lambda: seen().get("status") == "paused", "the script to pause")
        step = seen()["step"]
        time.sleep(0.5)
        assert seen() == {"status": "paused", "step": step}, "the script stands still while paused"
        expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "paused", timeout=10_000)
        root.locator('button[data-command="resume"]').click()
        wait_for(lambda: seen().get("status") == "running" and seen()["step"] > step, "the script to resume")
        root.locator('button[data-command="stop"]').click()  # arms it
        root.locator('button[data-command="stop"]').click()  # confirms
        assert script.stdout.readline().strip() == "ENDED stopped"
        assert script.wait(timeout=30) == 0
        page.close()
    finally:
        script.kill()
