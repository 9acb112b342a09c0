"""Browser tests of the dashboard bundle (onthefly_nb/static/widget.js).

They load tests/browser/harness.html, which renders the anywidget module into
a page with a fake model, and drive it through Debian's Chromium with
Playwright. Build the bundle first: ``npm run build``.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pytest
from jupyter_helpers import CHROMIUM, CHROMIUM_ARGS, ROOT

WIDGET_JS = ROOT / "onthefly_nb" / "static" / "widget.js"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not WIDGET_JS.exists(),
        reason="onthefly_nb/static/widget.js is missing: run `npm install && npm run build` first",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

COLUMNS = ["step", "p5", "p25", "p50", "p75", "p95", "mean"]

TRACEBACK = """Traceback (most recent call last):
  File "/work/train.py", line 42, in training_step
    loss = criterion(model(x), y) / zero
ZeroDivisionError: division by zero
"""


def curve_rows(n: int = 50) -> list[list[float]]:
    """n rows of a decreasing loss with a widening fan."""
    rows = []
    for i in range(n):
        step = float((i + 1) * 10)
        m = 2.0 / (1.0 + i / 10.0) + 0.1
        rows.append([step, m * 0.4, m * 0.75, m, m * 1.3, m * 2.0, m * 1.1])
    return rows


def running_run(**overrides) -> dict:
    run = {
        "project": "proj",
        "run_name": "run-1",
        "state": "running",
        "step": 1234,
        "epoch": 2,
        "max_epochs": 10,
        "steps_per_epoch": 1000,
        "samples_per_sec": 2048.5,
        "eta_sec": 125.0,
        "device": "cuda:0",
        "error": None,
        "val": None,
        "test": None,
        "task": "classification",
        "seen": 78976,
        "n_samples": 60000,
    }
    run.update(overrides)
    return run


# JS helpers evaluated in the page -----------------------------------------------------

SET_CURVE_JS = """
([rows, columns, layout]) => {
  const n = rows.length;
  const width = columns.length;
  let data;
  if (layout === "dataview") {
    const f = new Float32Array(n * width);
    rows.forEach((r, i) => f.set(r, i * width));
    data = new DataView(f.buffer);
  } else if (layout === "misaligned") {
    // A DataView at byte offset 2 into a larger buffer (not 4-aligned).
    const buf = new ArrayBuffer(n * width * 4 + 6);
    const dv = new DataView(buf, 2, n * width * 4);
    rows.forEach((r, i) => r.forEach((v, j) => dv.setFloat32((i * width + j) * 4, v, true)));
    data = dv;
  } else if (layout === "arraybuffer") {
    data = Float32Array.from(rows.flat()).buffer;
  } else {
    data = rows.flat();
  }
  window.fakeModel.update("curve", { n, columns, data });
}
"""

NEXT_FRAME_JS = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


# fixtures ----------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


@pytest.fixture(scope="module")
def server_url():
    handler = functools.partial(_QuietHandler, directory=str(ROOT))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="harness-http", daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Harness:
    def __init__(self, page, errors: list[str]):
        self.page = page
        self.errors = errors

    def update(self, key: str, value) -> None:
        self.page.evaluate("([k, v]) => window.fakeModel.update(k, v)", [key, value])

    def set_curve(self, rows, layout: str = "dataview", columns=COLUMNS) -> None:
        self.page.evaluate(SET_CURVE_JS, [rows, columns, layout])

    def next_frame(self) -> None:
        self.page.evaluate(NEXT_FRAME_JS)

    def sent(self) -> list[dict]:
        return self.page.evaluate("() => window.sent")

    def root(self, index: int = 0):
        return self.page.locator(".harness-slot").nth(index).locator(".onthefly-root")

    def assert_no_console_errors(self) -> None:
        assert self.errors == [], f"browser console errors: {self.errors}"


def _open(browser_context, server_url, query: str = ""):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto(f"{server_url}/tests/browser/harness.html{query}")
    page.wait_for_function("() => window.harnessReady === true")
    return Harness(page, errors)


@pytest.fixture
def harness(browser_context, server_url):
    h = _open(browser_context, server_url)
    try:
        yield h
    finally:
        h.page.close()
    h.assert_no_console_errors()


@pytest.fixture
def bare_harness(browser_context, server_url):
    """The harness page without the automatic first mount."""
    h = _open(browser_context, server_url, "?nomount")
    try:
        yield h
    finally:
        h.page.close()
    h.assert_no_console_errors()


# tests ---------------------------------------------------------------------------------------


def test_header_and_chart_render(harness):
    root = harness.root()
    expect(root).to_have_count(1)
    # Nothing set yet: the empty state and an idle pill.
    expect(root.locator(".onthefly-chart-empty")).to_be_visible()
    expect(root.locator(".onthefly-chart-empty")).to_have_text("waiting for the first steps…")
    expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "idle")

    harness.update("run", running_run())
    status = root.locator(".onthefly-status")
    expect(status).to_have_attribute("data-state", "running")
    expect(status).to_have_text("running")
    step = root.locator(".onthefly-step")
    expect(step).to_have_attribute("data-step", "1234")
    expect(step).to_have_text("step 1234 · epoch 2/10")
    expect(root.locator(".onthefly-title")).to_contain_text("proj")
    expect(root.locator(".onthefly-title")).to_contain_text("run-1")
    expect(root.locator(".onthefly-device")).to_have_text("cuda:0")
    expect(root.locator(".onthefly-throughput")).to_contain_text("samples/s")
    expect(root.locator(".onthefly-eta")).to_have_text("ETA 2m 05s")
    expect(root.locator(".onthefly-error")).to_be_hidden()

    rows = curve_rows(50)
    harness.set_curve(rows)
    harness.update("val_curve", [[100, 0.9], [300, 0.5], [480, 0.3]])
    harness.update(
        "events",
        [
            {"seq": 1, "time": 1_700_000_000, "step": 0, "kind": "started"},
            {"seq": 2, "time": 1_700_000_010, "step": 200, "kind": "paused"},
            {"seq": 3, "time": 1_700_000_020, "step": 200, "kind": "resumed"},
            {"seq": 4, "time": 1_700_000_030, "step": 300, "kind": "validation", "loss": 0.5, "accuracy": 0.8},
        ],
    )
    expect(root.locator(".onthefly-chart-empty")).to_be_hidden()
    svg = root.locator("svg.onthefly-svg")
    for cls in ("onthefly-fan-outer", "onthefly-fan-inner", "onthefly-median", "onthefly-mean"):
        expect(svg.locator(f"path.{cls}")).to_have_count(1)
    median_d = svg.locator("path.onthefly-median").get_attribute("d")
    assert median_d.startswith("M")
    assert median_d.count("L") == len(rows) - 1
    # Loss decreases, so the median ends lower on screen (larger y) than it starts.
    first_y = float(median_d[1:].split("L")[0].split(",")[1])
    last_y = float(median_d.split("L")[-1].split(",")[1])
    assert last_y > first_y
    assert svg.locator("path.onthefly-fan-outer").get_attribute("d").endswith("Z")
    dash = svg.locator("path.onthefly-mean").evaluate("p => getComputedStyle(p).strokeDasharray")
    assert dash not in ("", "none")
    expect(svg.locator("circle.onthefly-val-dot")).to_have_count(3)
    # started is not a marker; paused, resumed and validation are.
    markers = svg.locator("g.onthefly-marker")
    expect(markers).to_have_count(3)
    assert markers.nth(0).locator("title").text_content().startswith("paused @ step 200")
    assert len(svg.locator("text.onthefly-tick").all()) >= 4

    # Events: newest first.
    events = root.locator(".onthefly-events li")
    expect(events).to_have_count(4)
    expect(events.nth(0)).to_have_attribute("data-kind", "validation")
    expect(events.nth(0)).to_contain_text("acc 80.0%")
    expect(events.nth(3)).to_have_attribute("data-kind", "started")

    # Metrics line appears with val/test results.
    harness.update(
        "run",
        running_run(val={"step": 480, "loss": 0.3, "accuracy": 0.91},
                    test={"step": 480, "loss": 0.35, "accuracy": None}),
    )
    metrics = root.locator(".onthefly-metrics")
    expect(metrics).to_contain_text("val loss 0.3 · acc 91.0% @ 480")
    expect(metrics).to_contain_text("test loss 0.35 @ 480")

    # Log scale changes the geometry but keeps all the series.
    root.locator("input.onthefly-log").check()
    harness.next_frame()
    log_d = svg.locator("path.onthefly-median").get_attribute("d")
    assert log_d != median_d
    assert log_d.count("L") == len(rows) - 1
    harness.assert_no_console_errors()


@pytest.mark.parametrize("layout", ["misaligned", "arraybuffer", "array"])
def test_curve_data_layouts(harness, layout):
    rows = curve_rows(20)
    harness.set_curve(rows, layout=layout)
    median = harness.root().locator("path.onthefly-median")
    expect(median).to_have_count(1)
    assert median.get_attribute("d").count("L") == len(rows) - 1
    # The readout shows the latest row, decoded exactly (float32 of 0.2818...).
    expect(harness.root().locator(".onthefly-readout")).to_contain_text("step 200")


def test_empty_curve_keeps_empty_state(harness):
    harness.page.evaluate(
        "(cols) => window.fakeModel.update('curve', {n: 0, columns: cols, data: new DataView(new ArrayBuffer(0))})",
        COLUMNS,
    )
    harness.next_frame()
    expect(harness.root().locator(".onthefly-chart-empty")).to_be_visible()
    expect(harness.root().locator("path.onthefly-median")).to_have_count(0)


def test_controls_follow_state_and_send_commands(harness):
    root = harness.root()
    commands = ("pause", "resume", "stop", "step", "validate")
    btn = {c: root.locator(f'button.onthefly-btn[data-command="{c}"]') for c in commands}
    expect(btn["pause"]).to_have_attribute("aria-label", "Pause")
    expect(btn["resume"]).to_have_attribute("aria-label", "Resume")
    expect(btn["stop"]).to_have_attribute("aria-label", "Stop")
    # idle: everything disabled
    for b in btn.values():
        expect(b).to_be_disabled()

    harness.update("run", running_run(state="running"))
    expect(btn["pause"]).to_be_enabled()
    expect(btn["resume"]).to_be_disabled()
    expect(btn["stop"]).to_be_enabled()
    expect(btn["step"]).to_be_enabled()
    btn["pause"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "pause"}

    harness.update("run", running_run(state="paused"))
    expect(btn["resume"]).to_be_enabled()
    expect(btn["pause"]).to_be_disabled()
    expect(btn["step"]).to_be_enabled()

    step_n = root.locator("input.onthefly-step-n")
    expect(step_n).to_have_value("10")
    btn["step"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 10}
    step_n.fill("25")
    btn["step"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 25}
    step_n.fill("7")
    step_n.press("Enter")
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 7}

    # Invalid n: nothing is sent and the input is flagged.
    count = len(harness.sent())
    step_n.fill("0")
    btn["step"].click()
    assert len(harness.sent()) == count
    expect(step_n).to_have_attribute("aria-invalid", "true")

    btn["resume"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "resume"}
    btn["validate"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "validate"}
    btn["stop"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "stop"}

    for state in ("finished", "stopped", "failed", "stopping"):
        harness.update("run", running_run(state=state))
        expect(root.locator(".onthefly-status")).to_have_attribute("data-state", state)
        for b in btn.values():
            expect(b).to_be_disabled()
        expect(step_n).to_be_disabled()
    harness.assert_no_console_errors()


def test_failed_state_shows_traceback(harness):
    root = harness.root()
    harness.update("run", running_run())
    expect(root.locator(".onthefly-error")).to_be_hidden()
    harness.update("run", running_run(state="failed", error=TRACEBACK))
    error = root.locator("pre.onthefly-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Traceback (most recent call last):")
    expect(error).to_contain_text("ZeroDivisionError: division by zero")
    assert error.text_content() == TRACEBACK
    expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "failed")
    # Back to another state hides it again.
    harness.update("run", running_run(state="stopped"))
    expect(error).to_be_hidden()


def test_cleanup_and_two_mounts(bare_harness):
    h = bare_harness
    page = h.page
    page.evaluate("() => { window.mount(); window.mount(); }")
    expect(page.locator(".onthefly-root")).to_have_count(2)
    per_mount = page.evaluate("() => window.fakeModel.listenerCount()") // 2
    assert per_mount == 5  # run, curve, val_curve, events, clusters

    h.update("run", running_run(step=77))
    for i in (0, 1):
        expect(h.root(i).locator(".onthefly-step")).to_have_attribute("data-step", "77")

    # Independent hosts: the log toggle of one does not affect the other.
    h.set_curve(curve_rows(10))
    h.root(0).locator("input.onthefly-log").check()
    h.next_frame()
    d0 = h.root(0).locator("path.onthefly-median").get_attribute("d")
    d1 = h.root(1).locator("path.onthefly-median").get_attribute("d")
    assert d0 != d1

    # Cleanup of the first mount: listeners removed, element emptied, the
    # other mount keeps updating, and further updates do not throw.
    page.evaluate("() => window.mounts[0].cleanup()")
    assert page.evaluate("() => window.mounts[0].el.childElementCount") == 0
    assert page.evaluate("() => window.fakeModel.listenerCount()") == per_mount
    h.update("run", running_run(step=88, state="paused"))
    h.set_curve(curve_rows(12))
    h.update("events", [{"seq": 1, "time": 1_700_000_000, "step": 5, "kind": "paused"}])
    h.update("val_curve", [[5, 1.0]])
    h.next_frame()
    assert page.evaluate("() => window.mounts[0].el.childElementCount") == 0
    expect(page.locator(".onthefly-root")).to_have_count(1)
    expect(page.locator(".onthefly-root .onthefly-step")).to_have_attribute("data-step", "88")

    # Cleaning up twice is harmless; then nothing listens any more.
    page.evaluate("() => { window.mounts[0].cleanup(); window.mounts[1].cleanup(); }")
    assert page.evaluate("() => window.fakeModel.listenerCount()") == 0
    h.update("run", running_run(step=99))
    h.next_frame()
    expect(page.locator(".onthefly-root")).to_have_count(0)
    h.assert_no_console_errors()


def test_updates_coalesce_into_one_frame(harness):
    page = harness.page
    # Count SVG rebuilds: each draw replaces the median path element.
    page.evaluate(
        """() => {
          window.drawCount = 0;
          const svg = document.querySelector('.onthefly-svg');
          new MutationObserver((recs) => {
            for (const r of recs) for (const n of r.addedNodes)
              if (n.classList && n.classList.contains('onthefly-median')) window.drawCount++;
          }).observe(svg, { childList: true, subtree: true });
        }"""
    )
    harness.page.evaluate(
        """([rows, cols]) => {
          for (let k = 0; k < 50; k++) {
            const f = new Float32Array(rows.length * 7);
            rows.forEach((r, i) => f.set(r, i * 7));
            window.fakeModel.update('curve', { n: rows.length, columns: cols, data: new DataView(f.buffer) });
            window.fakeModel.update('run', { state: 'running', step: k });
          }
        }""",
        [curve_rows(30), COLUMNS],
    )
    harness.next_frame()
    assert page.evaluate("() => window.drawCount") == 1
    expect(harness.root().locator(".onthefly-step")).to_have_attribute("data-step", "49")


def test_chart_follows_container_width(harness):
    harness.set_curve(curve_rows(10))
    svg = harness.root().locator("svg.onthefly-svg")
    expect(svg.locator("path.onthefly-median")).to_have_count(1)
    harness.page.evaluate("() => { document.querySelector('.harness-slot').style.width = '420px'; }")
    plot_w = harness.page.evaluate("() => document.querySelector('.onthefly-plot').clientWidth")
    expect(svg).to_have_attribute("width", str(plot_w))
    assert svg.get_attribute("viewBox") == f"0 0 {plot_w} 220"


def test_cluster_table_shows_the_summary_rows(harness):
    root = harness.root()
    box = root.locator(".onthefly-clusters")
    expect(box).to_be_hidden()
    harness.update("clusters", [
        {"cluster": 0, "size": 180, "mean_loss": 2.46, "loss_vs_median": 14.2, "top_labels": "1 (95), 0 (85)",
         "top_predictions": "0 (95), 1 (85)"},
        {"cluster": 1, "size": 178, "mean_loss": 0.72, "loss_vs_median": None, "top_labels": "0 (178)",
         "top_predictions": "1 (178)"},
        "junk",
    ])
    expect(box).to_be_visible()
    rows = box.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-cluster", "0")
    expect(rows.nth(0)).to_contain_text("1 (95), 0 (85)")
    expect(rows.nth(1).locator("td").nth(3)).to_have_text("—")
    harness.update("clusters", [])
    expect(box).to_be_hidden()
