"""Browser tests of the dashboard bundle (onthefly_nb/static/widget.js).

They load tests/browser/harness.html, which renders the anywidget module into
a page with a fake model, and drive it through Debian's Chromium with
Playwright. Build the bundle first: ``npm run build``. The sample map is WebGL:
Chromium renders it with SwiftShader (WEBGL_ARGS).
"""

from __future__ import annotations

import struct
import zlib

import pytest
from jupyter_helpers import CHROMIUM, ROOT, chromium_context, serve_repo

from onthefly_nb.dashboard.contract import TRAITS

WIDGET_JS = ROOT / "onthefly_nb" / "static" / "widget.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
# Chromium 137+ no longer falls back to SwiftShader by itself; without it there is no WebGL.

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
        "total_steps": 10_000,
        "samples_per_sec": 2048.5,
        "eta_sec": 125.0,
        "device": "cuda:0",
        "error": None,
        "val": None,
        "test": None,
        "task": "classification",
        "seen": 78976,
        "n_samples": 60000,
        "lr": 0.0003,
        "deterministic": False,
        "per_sample_off": None,
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


@pytest.fixture(scope="module")
def server_url():
    with serve_repo() as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), width=1000) as context:
        yield context


class Harness:
    def __init__(self, page, errors: list[str]):
        self.page = page
        self.errors = errors

    def update(self, key: str, value, fits_contract: bool = True) -> None:
        """Set a trait in the page; a value Python could send must fit the contract (tests of the
        front end's defences against broken values pass ``fits_contract=False``)."""
        if fits_contract:
            TRAITS[key].check(value, f"trait {key!r}")
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
    expect(root.locator(".onthefly-lr")).to_have_text("lr 3e-4")
    expect(root.locator(".onthefly-throughput")).to_contain_text("samples/s")
    expect(root.locator(".onthefly-eta")).to_have_text("ETA 2m 05s")
    expect(root.locator(".onthefly-error")).to_be_hidden()

    rows = curve_rows(50)
    harness.set_curve(rows)
    val_legend = root.locator(".onthefly-legend-item:has(.onthefly-swatch-val)")
    expect(val_legend).to_be_hidden()  # no validation loss yet: no "val" in the legend
    harness.update("val_curve", [[100, 0.9], [300, 0.5], [480, 0.3]])
    expect(val_legend).to_be_visible()
    events = [
        {"seq": 1, "time": 1_700_000_000, "step": 0, "kind": "started"},
        {"seq": 2, "time": 1_700_000_010, "step": 200, "kind": "paused"},
        {"seq": 3, "time": 1_700_000_020, "step": 200, "kind": "resumed"},
        {"seq": 4, "time": 1_700_000_030, "step": 300, "kind": "validation", "loss": 0.5, "accuracy": 0.8},
    ]
    harness.update("events", events)
    harness.update("markers", events)  # Python sends only marker kinds; the chart keeps only those anyway
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
    # started is not a marker, nor validation (the validation series shows it); paused and resumed are.
    markers = svg.locator("g.onthefly-marker")
    expect(markers).to_have_count(2)
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

def test_the_loss_chart_shows_the_last_steps_and_smooths_them(harness):
    harness.set_curve(curve_rows(50))  # steps 10 .. 500
    root = harness.root()
    median = root.locator("svg.onthefly-svg path.onthefly-median")
    expect(median).to_have_count(1)
    assert root.locator("input.onthefly-smooth").input_value() == "0.6", "TensorBoard's default smoothing"

    def points() -> int:
        return median.get_attribute("d").count("L") + 1

    assert points() == 50
    root.locator("select.onthefly-window").select_option("100")
    harness.page.wait_for_timeout(200)
    assert points() == 10, "the last 100 steps: 410 .. 500"
    raw = median.get_attribute("d")
    root.locator("input.onthefly-smooth").evaluate(
        "e => { e.value = '0.9'; e.dispatchEvent(new Event('input', {bubbles: true})); }")
    harness.page.wait_for_timeout(200)
    assert points() == 10 and median.get_attribute("d") != raw, "smoothing redraws the same rows"
    recorded = root.locator("svg.onthefly-svg path.onthefly-raw")
    expect(recorded).to_have_count(1)  # the recorded median stays, faint, behind the smoothed one
    assert recorded.get_attribute("d").count("L") + 1 == 10
    root.locator("input.onthefly-smooth").evaluate(
        "e => { e.value = '0'; e.dispatchEvent(new Event('input', {bubbles: true})); }")
    expect(recorded).to_have_count(0)
    root.locator("select.onthefly-window").select_option("0")
    harness.page.wait_for_timeout(200)
    assert points() == 50
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


def test_a_silent_kernel_shows_disconnected_keeps_the_last_state_and_comes_back(harness):
    root = harness.root()
    harness.update("run", running_run(state="running", step=321))
    pause = root.locator('button[data-command="pause"]')
    banner = root.locator(".onthefly-disconnected")
    expect(pause).to_be_enabled()
    expect(banner).to_be_hidden()
    harness.page.evaluate("() => { window.fakeModel.kernelAlive = false; }")  # the kernel died: no more messages
    expect(banner).to_be_visible(timeout=4500)  # within 3 s of the last message, give or take a check
    expect(banner).to_contain_text("Disconnected from the kernel")
    expect(banner).to_contain_text("controls are off")
    expect(root).to_have_attribute("data-connection", "lost")
    expect(pause).to_be_disabled()
    expect(root.locator(".onthefly-step")).to_contain_text("step 321")  # the last state stays on screen
    harness.page.evaluate("() => { window.fakeModel.kernelAlive = true; }")
    expect(banner).to_be_hidden(timeout=3000)
    expect(pause).to_be_enabled()
    harness.assert_no_console_errors()


def test_controls_follow_state_and_send_commands(harness):
    root = harness.root()
    commands = ("pause", "resume", "stop", "step", "validate", "test", "health")
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

    events: list[dict] = []

    def confirm(kind: str) -> None:
        """The kernel reports a command: an event of ``kind`` after the ones so far."""
        events.append({"seq": len(events), "time": 1_700_000_000, "step": 1234, "kind": kind})
        harness.update("events", list(events))

    step_n = root.locator("input.onthefly-step-n")
    expect(step_n).to_have_value("10")
    btn["step"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 10}
    expect(btn["step"]).to_have_attribute("data-pending", "true")  # until the run pauses again
    expect(btn["step"]).to_be_disabled()
    confirm("paused")
    expect(btn["step"]).to_be_enabled()
    step_n.fill("25")
    btn["step"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 25}
    confirm("paused")
    step_n.fill("7")
    step_n.press("Enter")
    assert harness.sent()[-1] == {"type": "command", "name": "step", "n": 7}
    confirm("paused")

    # Invalid n: nothing is sent and the input is flagged.
    count = len(harness.sent())
    step_n.fill("0")
    btn["step"].click()
    assert len(harness.sent()) == count
    expect(step_n).to_have_attribute("aria-invalid", "true")

    # a double click sends one command; the button waits for the kernel's report
    for command, kind in (("validate", "validation"), ("test", "test"), ("health", "health")):
        count = len(harness.sent())
        btn[command].dblclick()
        assert harness.sent()[count:] == [{"type": "command", "name": command}]
        expect(btn[command]).to_be_disabled()
        confirm(kind)
        expect(btn[command]).to_be_enabled()

    btn["resume"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "resume"}
    harness.update("run", running_run(state="running"))
    expect(btn["pause"]).to_be_enabled()

    # Stop asks for a second click
    count = len(harness.sent())
    btn["stop"].click()
    assert len(harness.sent()) == count
    expect(btn["stop"]).to_have_attribute("data-confirm", "true")
    expect(btn["stop"]).to_contain_text("Confirm stop")
    btn["stop"].click()
    assert harness.sent()[-1] == {"type": "command", "name": "stop"}
    expect(btn["stop"]).to_contain_text("Stop")

    after_the_end = {"finished": {"validate", "test", "health"}, "stopped": {"validate", "test", "health"},
                     "failed": {"health"}, "stopping": set()}
    for state, still in after_the_end.items():
        harness.update("run", running_run(state=state))
        expect(root.locator(".onthefly-status")).to_have_attribute("data-state", state)
        for command, b in btn.items():
            if command in still:
                expect(b).to_be_enabled()
            else:
                expect(b).to_be_disabled()
        expect(step_n).to_be_disabled()
    harness.assert_no_console_errors()


EXPORT_TIP = "Save the whole session to a .zip beside the notebook (Session.load continues it)"
DETERMINISM_TIP = "Replay the last step twice and compare losses and gradients bit for bit"


def test_export_and_determinism_buttons(harness):
    root = harness.root()
    export = root.locator('button.onthefly-btn[data-command="export"]')
    determinism = root.locator('button.onthefly-btn[data-command="determinism"]')
    expect(export).to_have_attribute("aria-label", "Export")
    expect(export).to_have_attribute("title", EXPORT_TIP)
    expect(export).to_have_text("Export")
    expect(determinism).to_have_attribute("aria-label", "Determinism")
    expect(determinism).to_have_attribute("title", DETERMINISM_TIP)
    expect(determinism).to_have_text("Determinism")
    for b in (export, determinism):
        expect(b.locator("svg.onthefly-icon path")).to_have_count(1)
    # Determinism right after Health check; Export alone in the last group of the toolbar.
    assert determinism.evaluate("b => b.previousElementSibling.dataset.command") == "health"
    groups = root.locator(".onthefly-controls > span")
    expect(groups.last.locator("button")).to_have_count(1)
    expect(groups.last.locator('button[data-command="export"]')).to_have_count(1)

    # idle: nothing has run yet, but the session can already be exported
    expect(export).to_be_enabled()
    expect(determinism).to_be_disabled()

    harness.update("run", running_run(state="paused"))
    expect(determinism).to_be_enabled()
    expect(export).to_be_enabled()
    before = len(harness.sent())
    export.click()
    determinism.click()
    assert harness.sent()[before:] == [
        {"type": "command", "name": "export"},
        {"type": "command", "name": "determinism"},
    ]
    expect(export).to_be_disabled()  # pending until the kernel reports them
    harness.update("events", [{"seq": 0, "time": 1_700_000_000, "step": 5, "kind": "exported"},
                              {"seq": 1, "time": 1_700_000_000, "step": 5, "kind": "determinism"}])
    expect(export).to_be_enabled()
    expect(determinism).to_be_enabled()

    # stopping: both disabled, and a click that gets through anyway sends nothing
    harness.update("run", running_run(state="stopping"))
    expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "stopping")
    expect(export).to_be_disabled()
    expect(determinism).to_be_disabled()
    count = len(harness.sent())
    export.dispatch_event("click")
    determinism.dispatch_event("click")
    assert len(harness.sent()) == count

    for state, det_enabled in (("running", True), ("finished", True), ("stopped", True), ("failed", False)):
        harness.update("run", running_run(state=state))
        expect(root.locator(".onthefly-status")).to_have_attribute("data-state", state)
        expect(export).to_be_enabled()
        if det_enabled:
            expect(determinism).to_be_enabled()
        else:
            expect(determinism).to_be_disabled()
    harness.assert_no_console_errors()


def test_deterministic_badge_in_the_header(harness):
    header = harness.root().locator(".onthefly-header")
    badge = header.locator(".onthefly-deterministic")
    harness.update("run", running_run())
    expect(header.locator(".onthefly-status")).to_have_attribute("data-state", "running")
    expect(badge).to_have_count(0)

    harness.update("run", running_run(deterministic=True))
    expect(badge).to_have_count(1)
    expect(badge).to_be_visible()
    expect(badge).to_have_text("deterministic")
    expect(badge).to_have_attribute("data-deterministic", "true")
    expect(badge).to_have_attribute("title", "torch.use_deterministic_algorithms is on; seeds fixed")
    expect(badge).to_have_class("onthefly-badge onthefly-deterministic")
    assert badge.evaluate("b => b.previousElementSibling.classList.contains('onthefly-status')")
    # the shared badge look (small uppercase pill), outlined
    style = badge.evaluate(
        "b => { const s = getComputedStyle(b); return [s.textTransform, s.borderRadius, s.boxShadow]; }")
    assert style[0] == "uppercase" and style[1] == "9px" and style[2] != "none"

    harness.update("run", running_run(state="paused", deterministic=True))
    expect(header.locator(".onthefly-status")).to_have_attribute("data-state", "paused")
    expect(badge).to_have_count(1)
    harness.update("run", running_run(deterministic=False))
    expect(badge).to_have_count(0)
    harness.update("run", running_run(deterministic=True))
    expect(badge).to_have_count(1)
    harness.update("run", running_run())  # the field left out
    expect(badge).to_have_count(0)
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


def test_a_loss_without_per_sample_values_says_so(harness):
    root = harness.root()
    harness.update("run", running_run())
    notice = root.locator(".onthefly-notice")
    expect(notice).to_be_hidden()
    harness.update("run", running_run(per_sample_off="loss_fn returns one number for a batch"))
    expect(notice).to_be_visible()
    expect(notice).to_have_text("Per-sample views are off for this run: loss_fn returns one number for a batch")
    harness.update("run", running_run())
    expect(notice).to_be_hidden()
    harness.assert_no_console_errors()


def test_cleanup_and_two_mounts(bare_harness):
    h = bare_harness
    page = h.page
    page.evaluate("() => { window.mount(); window.mount(); }")
    expect(page.locator(".onthefly-root")).to_have_count(2)
    per_mount = page.evaluate("() => window.fakeModel.listenerCount()") // 2
    # run, curve, val_curve, events, markers, clusters, histogram, points, selection, plans, lineage, compare,
    # health, scalars, output, hyperparameters, overlays, and two for the connection: custom messages (the
    # kernel's "alive") and a transport's close
    assert per_mount == 19

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
    table = box.locator("table")
    expect(table).to_be_hidden()
    expect(box.locator(".onthefly-empty-state")).to_contain_text("no clusters yet")
    harness.update("clusters", [
        {"cluster": 0, "size": 180, "mean_loss": 2.46, "loss_vs_median": 14.2, "top_labels": "1 (95), 0 (85)",
         "top_predictions": "0 (95), 1 (85)"},
        {"cluster": 1, "size": 178, "mean_loss": 0.72, "loss_vs_median": None, "top_labels": "0 (178)",
         "top_predictions": "1 (178)"},
        "junk",
    ], fits_contract=False)
    expect(table).to_be_visible()
    expect(box.locator(".onthefly-empty-state")).to_be_hidden()
    rows = box.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-cluster", "0")
    expect(rows.nth(0)).to_contain_text("1 (95), 0 (85)")
    expect(rows.nth(1).locator("td").nth(3)).to_have_text("—")
    harness.update("clusters", [])
    expect(table).to_be_hidden()


# sample map ------------------------------------------------------------------------------------

SET_POINTS_JS = """
(spec) => {
  const n = spec.x.length;
  window.fakeModel.update("points", {
    version: spec.version, step: spec.step, source: "test", n,
    x: window.dataView(Float32Array.from(spec.x), 1),
    y: window.dataView(Float32Array.from(spec.y), 2),
    loss: window.dataView(Float32Array.from(spec.loss)),
    cluster: window.dataView(Uint16Array.from(spec.cluster), 3),
    index: window.dataView(Uint32Array.from(spec.index), 1),
  });
}
"""

SET_SELECTION_JS = """
([version, indices]) => window.fakeModel.update("selection", {
  version, n: indices.length, index: window.dataView(Uint32Array.from(indices), 1),
})
"""

PIXEL_JS = """
([slot, x, y]) => {
  const c = document.querySelectorAll('.onthefly-map-canvas')[slot];
  const r = c.getBoundingClientRect();
  const k = c.width / r.width;
  const px = c.getContext('2d').getImageData(Math.round((x - r.left) * k), Math.round((y - r.top) * k), 1, 1);
  return Array.from(px.data);
}
"""


def grid_points(k: int = 15, version: int = 1) -> dict:
    """k×k points on a grid spanning [-0.9, 0.9]² (so the map draws them at those NDC
    coordinates), with shuffled dataset indices, varied losses and three clusters."""
    xs, ys = [], []
    for j in range(k):
        for i in range(k):
            xs.append(-0.9 + 1.8 * i / (k - 1))
            ys.append(-0.9 + 1.8 * j / (k - 1))
    n = len(xs)
    return {
        "version": version,
        "step": 100,
        "x": xs,
        "y": ys,
        "loss": [0.05 + 3 * (i % 17) / 16 for i in range(n)],
        "cluster": [i % 3 if i % 4 else 65535 for i in range(n)],
        "index": [5000 + ((i * 37) % n) * 3 for i in range(n)],
    }


def set_points(h: Harness, spec: dict, slot: int = 0) -> None:
    h.page.evaluate(SET_POINTS_JS, spec)
    wait_drawn(h, spec["version"], slot)


def wait_drawn(h: Harness, version: int, slot: int = 0) -> None:
    h.page.wait_for_function(
        "([slot, v]) => document.querySelectorAll('.onthefly-map')[slot]?.dataset.drawnVersion === String(v)",
        arg=[slot, version],
        timeout=20_000,
    )
    h.next_frame()


def map_geometry(h: Harness, slot: int = 0) -> tuple[float, float, float, float]:
    return tuple(h.page.evaluate(
        "(i) => { const r = document.querySelectorAll('.onthefly-map-canvas')[i].getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; }",
        slot,
    ))


def to_screen(geom, x: float, y: float) -> tuple[float, float]:
    """Where the map draws NDC (x, y) at the initial camera: [-1, 1] fills the shorter side."""
    left, top, w, h = geom
    s = min(w, h) / 2
    return left + w / 2 + x * s, top + h / 2 - y * s


def inside(poly: list[tuple[float, float]], x: float, y: float) -> bool:
    hit = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def draw_lasso(h: Harness, geom, poly_ndc, shift: bool = False) -> None:
    """Drags the mouse along the polygon, slowly enough for the lasso to record each corner."""
    pts = [to_screen(geom, *p) for p in poly_ndc]
    path = []
    for a, b in zip(pts, pts[1:] + pts[:1]):
        path += [(a[0] + (b[0] - a[0]) * t / 6, a[1] + (b[1] - a[1]) * t / 6) for t in range(6)]
    path.append(pts[0])
    page = h.page
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*path[0])
    page.mouse.down()
    for p in path[1:]:
        page.mouse.move(*p, steps=2)
        page.wait_for_timeout(15)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def select_messages(h: Harness) -> list[tuple[dict, list[dict]]]:
    sent = h.page.evaluate("() => [window.sent, window.sentBuffers]")
    return [(c, b) for c, b in zip(*sent) if c.get("type") == "select"]


def wait_select(h: Harness, count: int) -> tuple[dict, list[dict]]:
    h.page.wait_for_function(
        "(k) => window.sent.filter((m) => m.type === 'select').length >= k", arg=count, timeout=10_000,
    )
    return select_messages(h)[count - 1]


def painted_pixels(h: Harness, slot: int = 0) -> int:
    """Pixels of the map canvas that differ from its top-left corner (the background)."""
    return h.page.evaluate(
        """(slot) => {
          const c = document.querySelectorAll('.onthefly-map-canvas')[slot];
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 30) n++;
          return n;
        }""",
        slot,
    )


def pixel(h: Harness, x: float, y: float, slot: int = 0) -> list[int]:
    return h.page.evaluate(PIXEL_JS, [slot, x, y])


def test_map_renders_points_and_redraws_only_on_a_new_version(harness):
    root = harness.root()
    expect(root.locator(".onthefly-map-empty")).to_have_text("the map appears after the first clustering")
    expect(root.locator('[data-color-by="cluster"]')).to_be_disabled()
    harness.page.evaluate(
        "() => { window.drawn = 0; document.addEventListener('onthefly-map-drawn', () => window.drawn++); }"
    )
    spec = grid_points()
    set_points(harness, spec)
    expect(root.locator(".onthefly-map-empty")).to_be_hidden()
    expect(root.locator(".onthefly-map-info")).to_have_text("225 points · step 100 · test")
    assert painted_pixels(harness) > 225 * 4
    # The point at NDC (0, 0) is painted; a spot between grid points is background.
    geom = map_geometry(harness)
    bg = pixel(harness, geom[0] + 2, geom[1] + 2)
    assert pixel(harness, *to_screen(geom, 0, 0)) != bg
    assert pixel(harness, *to_screen(geom, 0.064, 0.064)) == bg

    # Same version, other content: nothing is redrawn. A new version is.
    moved = {**spec, "x": [v * 0.5 for v in spec["x"]]}
    harness.page.evaluate(SET_POINTS_JS, moved)
    harness.next_frame()
    harness.page.wait_for_timeout(300)
    assert harness.page.evaluate("() => window.drawn") == 1
    harness.page.evaluate(SET_POINTS_JS, {**moved, "version": 2})
    wait_drawn(harness, 2)
    assert harness.page.evaluate("() => window.drawn") == 2
    # Empty points bring the empty state back.
    harness.update("points", {"version": 3, "n": 0, "x": [], "y": []}, fits_contract=False)  # no buffers over JSON
    expect(root.locator(".onthefly-map-empty")).to_be_visible()


def test_map_tooltip_shows_index_loss_and_cluster(harness):
    spec = grid_points()
    set_points(harness, spec)
    geom = map_geometry(harness)
    i = 7 * 15 + 7  # the point at (0, 0)
    harness.page.mouse.move(*to_screen(geom, 0.3, 0.3))
    harness.page.mouse.move(*to_screen(geom, 0, 0), steps=4)
    tip = harness.root().locator(".onthefly-map-tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_have_attribute("data-index", str(spec["index"][i]))
    expect(tip).to_contain_text(f"sample #{spec['index'][i]}")
    expect(tip).to_contain_text(f"loss {spec['loss'][i]:.4g}")
    cluster = spec["cluster"][i]
    expect(tip).to_contain_text("not clustered" if cluster == 65535 else f"cluster {cluster}")


LASSO = [(-0.32, -0.2), (0.32, -0.2), (0.32, 0.45), (-0.32, 0.45)]


@pytest.mark.parametrize("how", ["button", "shift"])
def test_lasso_sends_the_selected_dataset_indices(harness, how):
    spec = grid_points()
    set_points(harness, spec)
    root = harness.root()
    geom = map_geometry(harness)
    expected = sorted(
        spec["index"][i] for i in range(len(spec["x"])) if inside(LASSO, spec["x"][i], spec["y"][i])
    )
    assert len(expected) == 25  # 5 columns × 5 rows of the grid

    if how == "button":
        lasso = root.locator('button[data-action="lasso"]')
        lasso.click()
        expect(lasso).to_have_attribute("aria-pressed", "true")
    draw_lasso(harness, geom, LASSO, shift=how == "shift")
    content, buffers = wait_select(harness, 1)
    assert content == {"type": "select", "n": 25}
    assert len(buffers) == 1
    assert buffers[0]["isArrayBuffer"] is True
    assert buffers[0]["byteLength"] == 4 * 25
    assert buffers[0]["u32"] == expected

    # Nothing is highlighted as "selected" until Python echoes the selection trait.
    expect(root.locator(".onthefly-selection-count")).to_be_hidden()
    harness.page.evaluate(SET_SELECTION_JS, [1, expected])
    expect(root.locator(".onthefly-selection-count")).to_have_text("25 selected")

    # Clear sends the empty selection: n = 0 and one empty buffer.
    root.locator('button[data-action="clear-selection"]').click()
    content, buffers = wait_select(harness, 2)
    assert content == {"type": "select", "n": 0}
    assert buffers == [{"isArrayBuffer": True, "byteLength": 0, "u32": []}]


def test_lasso_on_a_large_map_uses_the_worker_built_index(harness):
    # 64,000 points (the spatial index is built in a Worker above 50,000): four tight blobs.
    centres = [(-0.6, -0.6), (0.6, -0.6), (-0.6, 0.6), (0.6, 0.6)]
    per = 16_000
    harness.page.evaluate(
        """([centres, per]) => {
          const n = centres.length * per;
          const x = new Float32Array(n), y = new Float32Array(n), index = new Uint32Array(n);
          let s = 1;
          const r = () => ((s = (s * 16807) % 2147483647) / 2147483647 - 0.5) * 0.2;
          for (let i = 0; i < n; i++) {
            const [cx, cy] = centres[i % centres.length];
            x[i] = cx + r(); y[i] = cy + r(); index[i] = n - i;
          }
          x[0] = -0.9; x[1] = 0.9; y[0] = -0.9; y[1] = 0.9;  // pin the bounding box to [-0.9, 0.9]
          window.fakeModel.update('points', { version: 5, n, x: window.dataView(x, 1), y: window.dataView(y, 2),
            loss: new Float32Array(n).fill(1), cluster: new Uint16Array(n).fill(65535),
            index: window.dataView(index, 3) });
        }""",
        [centres, per],
    )
    wait_drawn(harness, 5)
    geom = map_geometry(harness)
    draw_lasso(harness, geom, [(0.3, 0.3), (0.9, 0.3), (0.9, 0.9), (0.3, 0.9)], shift=True)
    content, buffers = wait_select(harness, 1)
    n = len(centres) * per
    got = buffers[0]["u32"]
    assert content["n"] == len(got)
    assert got == sorted(got)
    # Every point of the blob at (0.6, 0.6), and maybe point 1, pinned on the lasso's corner.
    blob = {n - i for i in range(3, n, 4)}
    assert blob <= set(got) <= blob | {n - 1}


def test_selection_trait_highlights_points_and_shows_the_count(harness):
    spec = grid_points()
    set_points(harness, spec)
    root = harness.root()
    geom = map_geometry(harness)
    i = 7 * 15 + 7  # (0, 0)
    far = 0  # (-0.9, -0.9)
    at_i, at_far = to_screen(geom, 0, 0), to_screen(geom, -0.9, -0.9)
    before_i, before_far = pixel(harness, *at_i), pixel(harness, *at_far)

    harness.page.evaluate(SET_SELECTION_JS, [1, [spec["index"][i], 123456]])
    count = root.locator(".onthefly-selection-count")
    expect(count).to_have_text("2 selected (1 on the map)")
    expect(count).to_have_attribute("data-n", "2")
    expect(root.locator('button[data-action="clear-selection"]')).to_be_visible()
    harness.next_frame()
    harness.page.wait_for_timeout(100)
    assert pixel(harness, *at_i) != before_i  # drawn in the selection colour
    assert pixel(harness, *at_far) != before_far  # faded: not selected
    assert spec["index"][far] != spec["index"][i]

    harness.page.evaluate(SET_SELECTION_JS, [2, []])
    expect(count).to_be_hidden()
    harness.page.wait_for_timeout(100)
    assert pixel(harness, *at_i) == before_i
    # The echo never travels back to Python.
    assert select_messages(harness) == []


def test_colour_toggle_switches_between_loss_and_cluster(harness):
    spec = grid_points()
    set_points(harness, spec)
    root = harness.root()
    geom = map_geometry(harness)
    by_loss, by_cluster = root.locator('[data-color-by="loss"]'), root.locator('[data-color-by="cluster"]')
    expect(by_loss).to_have_attribute("aria-pressed", "true")
    expect(root.locator(".onthefly-map-gradient")).to_be_visible()
    i = 7 * 15 + 4  # (-0.386, 0): in cluster 1
    assert spec["cluster"][i] == 1
    at = to_screen(geom, spec["x"][i], spec["y"][i])
    loss_colour = pixel(harness, *at)

    by_cluster.click()
    expect(by_cluster).to_have_attribute("aria-pressed", "true")
    expect(by_loss).to_have_attribute("aria-pressed", "false")
    expect(root.locator(".onthefly-map")).to_have_attribute("data-color", "cluster")
    legend = root.locator(".onthefly-map-legend")
    expect(legend).to_contain_text("0 (")
    expect(legend).to_contain_text("other (")
    harness.page.wait_for_timeout(100)
    cluster_colour = pixel(harness, *at)
    assert cluster_colour != loss_colour
    # Cluster 1 is orange (#f28e2b) in the categorical palette: red well above blue.
    assert cluster_colour[0] > cluster_colour[2] + 60


def test_cluster_row_selects_its_points(harness):
    spec = grid_points()
    set_points(harness, spec)
    harness.update("clusters", [{"cluster": 2, "size": 56, "mean_loss": 1.0, "loss_vs_median": 2.0,
                                 "top_labels": "a", "top_predictions": "b"}])
    harness.root().locator('tr[data-cluster="2"]').click()
    content, buffers = wait_select(harness, 1)
    expected = sorted(spec["index"][i] for i, c in enumerate(spec["cluster"]) if c == 2)
    assert content == {"type": "select", "n": len(expected)}
    assert buffers[0]["u32"] == expected


def test_two_mounts_of_one_model_stay_in_sync(bare_harness):
    h = bare_harness
    page = h.page
    page.evaluate("() => { window.fakeModel.echo = true; window.mount(); window.mount(); }")
    spec = grid_points()
    h.page.evaluate(SET_POINTS_JS, spec)
    wait_drawn(h, 1, 0)
    wait_drawn(h, 1, 1)
    geom1 = map_geometry(h, 1)
    at = to_screen(geom1, 0, 0)
    before = pixel(h, *at, slot=1)

    draw_lasso(h, map_geometry(h, 0), LASSO, shift=True)
    wait_select(h, 1)
    for i in (0, 1):
        expect(h.root(i).locator(".onthefly-selection-count")).to_have_text("25 selected")
    h.page.wait_for_timeout(100)
    assert pixel(h, *at, slot=1) != before  # the other view highlights the same points

    # Clearing in the second view clears the first.
    h.root(1).locator('button[data-action="clear-selection"]').click()
    for i in (0, 1):
        expect(h.root(i).locator(".onthefly-selection-count")).to_be_hidden()
    h.assert_no_console_errors()


def test_mount_cleanup_cycles_leak_no_webgl_contexts_or_listeners(bare_harness):
    h = bare_harness
    page = h.page
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if "WebGL contexts" in m.text else None)
    baseline = page.evaluate("() => window.globalListeners()")
    spec = grid_points()
    page.evaluate(SET_POINTS_JS, spec)
    for cycle in range(30):
        page.evaluate("() => window.mount()")
        wait_drawn(h, 1, 0)  # the only map on the page
        page.evaluate("(i) => window.mounts[i].cleanup()", cycle)
        assert page.evaluate("(i) => window.mounts[i].el.childElementCount", cycle) == 0
    stats = page.evaluate(
        """() => ({
          contexts: window.glContexts.length,
          live: window.glContexts.filter((gl) => !gl.isContextLost()).length,
          listeners: window.globalListeners(),
          modelListeners: window.fakeModel.listenerCount(),
          stray: document.body.querySelectorAll(':scope > :not(#slots):not(script)').length,
        })"""
    )
    assert stats["live"] == 0, stats
    assert 1 <= stats["contexts"] <= 30, stats
    assert stats["listeners"] == baseline, stats
    assert stats["modelListeners"] == 0, stats
    assert stats["stray"] == 0, stats
    assert warnings == []

    # Many live views share one context.
    page.evaluate("() => { for (let i = 0; i < 20; i++) window.mount(); }")
    for slot in range(20):
        wait_drawn(h, 1, slot)
    assert page.evaluate("() => window.glContexts.filter((gl) => !gl.isContextLost()).length") == 1
    page.evaluate("() => window.mounts.forEach((m) => m.cleanup())")
    assert page.evaluate("() => window.glContexts.filter((gl) => !gl.isContextLost()).length") == 0
    h.assert_no_console_errors()


def test_map_without_webgl_says_so(browser_context, server_url):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.add_init_script(
        "const gc = HTMLCanvasElement.prototype.getContext;"
        "HTMLCanvasElement.prototype.getContext = function (t, ...a) {"
        " return /webgl/.test(t) ? null : gc.call(this, t, ...a); };"
    )
    page.goto(f"{server_url}/tests/browser/harness.html")
    page.wait_for_function("() => window.harnessReady === true")
    h = Harness(page, errors)
    try:
        h.page.evaluate(SET_POINTS_JS, grid_points())
        expect(h.root().locator(".onthefly-map-empty")).to_contain_text("needs WebGL")
        h.update("run", running_run())  # the rest of the dashboard keeps working
        expect(h.root().locator(".onthefly-step")).to_have_attribute("data-step", "1234")
    finally:
        page.close()
    h.assert_no_console_errors()


# histogram, plans, health, lineage, markers ----------------------------------------------------------


HISTOGRAM = {
    "edges": [0.01 * 10 ** (k / 10) for k in range(41)],
    "counts": [int(1000 * 2.718 ** (-((k - 14) / 5) ** 2)) + (30 if k > 30 else 0) for k in range(40)],
    "quantiles": {"p1": 0.02, "p5": 0.04, "p25": 0.12, "p50": 0.25, "p75": 0.5, "p95": 9.0, "p99": 40.0,
                  "max": 100.0, "mean": 0.9},
}


def test_histogram_marks_median_and_tail_quantiles(harness):
    root = harness.root()
    panel = root.locator('[data-panel="histogram"]')
    expect(panel.locator(".onthefly-hist-empty")).to_have_text("no per-sample losses yet")
    harness.update("histogram", HISTOGRAM)
    expect(panel.locator(".onthefly-hist-empty")).to_be_hidden()
    svg = panel.locator("svg.onthefly-hist-svg")
    expect(svg.locator("rect.onthefly-hist-bar")).to_have_count(sum(1 for c in HISTOGRAM["counts"] if c > 0))
    marks = svg.locator("g.onthefly-hist-mark")
    expect(marks).to_have_count(3)
    labels = [marks.nth(i).locator("text").text_content() for i in range(3)]
    assert labels == ["median 0.25", "p95 9", "p99 40"]
    xs = [float(marks.nth(i).locator("line").get_attribute("x1")) for i in range(3)]
    assert xs[0] < xs[1] < xs[2]
    # Log-spaced edges get a log axis: p99 = 40 sits at log-position 0.8 of [0.01, 100].
    left = float(svg.locator("line.onthefly-axis").first.get_attribute("x1"))
    right = float(svg.locator("line.onthefly-axis").first.get_attribute("x2"))
    assert abs((xs[2] - left) / (right - left) - 0.9) < 0.02
    # Bins at or above p95 are the tail.
    tail = svg.locator("rect.onthefly-hist-tail")
    expect(tail).to_have_count(sum(1 for e, c in zip(HISTOGRAM["edges"], HISTOGRAM["counts"]) if e >= 9.0 and c > 0))
    expect(panel.locator(".onthefly-panel-note")).to_contain_text("mean 0.9")
    harness.update("histogram", None)
    expect(panel.locator(".onthefly-hist-empty")).to_be_visible()


def plan(pid, status="proposed", **kw) -> dict:
    p = {"id": pid, "kind": "lower_lr", "title": "Lower the learning rate", "evidence": "p95 rising", "step": 120,
         "params": {"factor": 0.5}, "param_specs": {"factor": {"label": "factor", "min": 0.01, "max": 1, "step": 0.01}},
         "status": status, "result": ""}
    p.update(kw)
    return p


def test_plan_cards_send_decisions(harness):
    root = harness.root()
    panel = root.locator('[data-panel="plans"]')
    expect(panel.locator(".onthefly-empty-state")).to_be_visible()
    harness.update("plans", [
        plan("a"),
        plan("p7", kind="validate_now", title="Validate now", params={}, param_specs={}),
        plan("old", status="executed", result="lr 3e-4 → 1.5e-4"),
        plan("gone", status="expired", result="superseded"),
    ])
    cards = panel.locator("article.onthefly-plan")
    expect(cards).to_have_count(4)
    expect(panel.locator(".onthefly-count-badge")).to_have_text("2")
    # Proposed first, then the decided ones newest first: greyed, with their result and no buttons.
    statuses = [cards.nth(i).get_attribute("data-status") for i in range(4)]
    assert statuses == ["proposed", "proposed", "expired", "executed"]
    expect(cards.nth(3)).to_have_class("onthefly-plan onthefly-plan-decided")
    expect(cards.nth(3)).to_contain_text("lr 3e-4 → 1.5e-4")
    expect(cards.nth(2).locator(".onthefly-badge")).to_have_text("expired")
    expect(cards.nth(2).locator("button")).to_have_count(0)
    expect(cards.nth(3).locator("button")).to_have_count(0)

    factor = panel.locator('article[data-plan-id="a"] input[data-param="factor"]')
    expect(factor).to_have_value("0.5")
    approve = panel.locator('button[data-plan-id="a"][data-decision="approve"]')
    # Out of range: flagged, Approve disabled, nothing sent.
    factor.fill("5")
    expect(factor).to_have_attribute("aria-invalid", "true")
    expect(approve).to_be_disabled()
    expect(panel.locator('article[data-plan-id="a"] .onthefly-param-error')).to_have_text("at most 1")
    # Typing survives an update of the plans trait while the plan is still proposed.
    factor.fill("0.25")
    harness.update("plans", [plan("a"), plan("p7", kind="validate_now", title="Validate now", params={}, param_specs={},
                                              evidence="newer")])
    expect(factor).to_have_value("0.25")
    approve.click()
    assert harness.sent()[-1] == {"type": "plan", "id": "a", "decision": "approve", "params": {"factor": 0.25}}
    expect(approve).to_be_disabled()  # pending until Python answers

    panel.locator('button[data-plan-id="p7"][data-decision="reject"]').click()
    assert harness.sent()[-1] == {"type": "plan", "id": "p7", "decision": "reject"}
    assert len([m for m in harness.sent() if m["type"] == "plan"]) == 2

    harness.update("plans", [plan("a", status="approved"), plan("p7", status="rejected", params={}, param_specs={})])
    expect(panel.locator("button[data-decision]")).to_have_count(0)
    expect(panel.locator(".onthefly-count-badge")).to_be_hidden()


def test_health_panel_renders_pass_warn_fail(harness):
    panel = harness.root().locator('[data-panel="health"]')
    expect(panel.locator(".onthefly-empty-state")).to_have_text("no health check yet")
    harness.update("health", {"step": 900, "time": 1_700_000_000, "results": [
        {"check": "loss_finite", "status": "pass", "evidence": "0 NaN", "explanation": "all finite"},
        {"check": "grad_spikes", "status": "warn", "evidence": "p99 = 10× median", "explanation": "clip gradients"},
        {"check": "label_noise", "status": "fail", "evidence": "cluster 3", "explanation": "check labels"},
    ]})
    items = panel.locator("li.onthefly-health-item")
    expect(items).to_have_count(3)
    assert [items.nth(i).get_attribute("data-status") for i in range(3)] == ["fail", "warn", "pass"]
    expect(items.nth(0).locator(".onthefly-badge")).to_have_text("fail")
    expect(items.nth(0)).to_contain_text("label noise")
    expect(items.nth(0)).to_contain_text("cluster 3")
    expect(items.nth(0)).to_contain_text("check labels")
    expect(panel).to_have_attribute("data-worst", "fail")
    expect(panel.locator(".onthefly-panel-note")).to_contain_text("step 900")
    colours = [items.nth(i).locator(".onthefly-badge").evaluate("b => getComputedStyle(b).backgroundColor")
               for i in range(3)]
    assert len(set(colours)) == 3
    harness.update("health", None)
    expect(panel.locator(".onthefly-empty-state")).to_be_visible()


def test_lineage_tree(harness):
    panel = harness.root().locator('[data-panel="lineage"]')
    root_node = {"id": "r", "parent": None, "kind": "run", "label": "main", "step": 0, "state": "running"}
    harness.update("lineage", [root_node])
    expect(panel.locator("li.onthefly-tree-node")).to_have_count(1)
    harness.update("lineage", [
        root_node,
        {"id": "f", "parent": "r", "kind": "fork", "label": "lr half", "step": 50, "state": "paused"},
        {"id": "m", "parent": "f", "kind": "merge", "label": "merged", "step": 90, "state": "finished"},
    ])
    expect(panel.locator('li[data-id="r"] li[data-id="f"] li[data-id="m"]')).to_have_count(1)
    expect(panel.locator('li[data-id="f"] > .onthefly-tree-row')).to_contain_text("lr half")
    expect(panel.locator('li[data-id="f"] > .onthefly-tree-row')).to_contain_text("step 50")


COMPARE_COLUMNS = ["model", "slice run-fork1 loss", "slice run-fork1 accuracy", "validation loss",
                   "validation accuracy"]
COMPARE = {
    "version": 1,
    "columns": COMPARE_COLUMNS,
    "rows": [
        ["run", 0.9123, 0.6, 0.31, 0.9],
        ["run-fork1", 0.2049, 0.95, 0.52, 0.8],
        ["run-merge1", 0.4, 0.75, 0.29, None],
    ],
}
EXPERT_LINEAGE = [
    {"id": "run", "parent": None, "kind": "run", "label": "run", "step": 1560, "state": "paused"},
    {"id": "run-fork1", "parent": "run", "kind": "fork", "label": "run-fork1", "step": 1500, "state": "trained",
     "slice": "cluster 3 (step 1500)", "samples": 180, "budget": 60},
    {"id": "run-baseline2", "parent": "run", "kind": "baseline", "label": "run-baseline2", "step": 1500,
     "state": "training", "slice": "all samples (matched-compute baseline)", "samples": 20000, "budget": 60},
    {"id": "run-merge1", "parent": "run", "kind": "merge", "label": "swa merge", "step": 1560, "state": "candidate",
     "merged_from": ["run-fork1"]},
]


def best_models(panel) -> dict[str, list[str]]:
    """For each column, the models whose cell is highlighted as the best."""
    return panel.evaluate(
        """(p) => {
          const out = {};
          for (const td of p.querySelectorAll("td[data-best]")) {
            (out[td.dataset.column] ??= []).push(td.closest("tr").dataset.model);
          }
          return out;
        }"""
    )


def test_compare_table_groups_targets_and_highlights_the_best(harness):
    panel = harness.root().locator('[data-panel="compare"]')
    empty = panel.locator(".onthefly-empty-state")
    expect(empty).to_have_text("fork a specialist to compare it with the run")
    expect(panel.locator("table")).to_have_count(0)

    harness.update("lineage", EXPERT_LINEAGE)
    harness.update("compare", COMPARE)
    expect(empty).to_be_hidden()
    table = panel.locator("table.onthefly-compare-table")
    expect(table).to_be_visible()
    # one header cell per target over its loss and accuracy columns
    groups = table.locator("thead th.onthefly-compare-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_have_text("slice run-fork1")
    expect(groups.nth(0)).to_have_attribute("colspan", "2")
    expect(groups.nth(1)).to_have_text("validation")
    expect(table.locator("thead tr.onthefly-compare-metrics th")).to_have_text(["loss", "acc", "loss", "acc"])

    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-model") for i in range(3)] == ["run", "run-fork1", "run-merge1"]
    expect(rows.nth(0).locator("th")).to_have_text("runrun")  # name, then its kind from the lineage
    expect(rows.nth(1).locator(".onthefly-compare-kind")).to_have_text("fork")
    expect(rows.nth(2).locator(".onthefly-compare-kind")).to_have_text("candidate merge")
    # losses with 4 significant digits, accuracies as percentages, missing values as a dash
    expect(rows.nth(0).locator("td")).to_have_text(["0.9123", "60.0%", "0.31", "90.0%"])
    expect(rows.nth(2).locator("td")).to_have_text(["0.4", "75.0%", "0.29", "—"])
    assert "vs run" in rows.nth(1).locator("td").first.get_attribute("title")

    # lowest loss and highest accuracy of each column
    assert best_models(panel) == {
        "slice run-fork1 loss": ["run-fork1"],
        "slice run-fork1 accuracy": ["run-fork1"],
        "validation loss": ["run-merge1"],
        "validation accuracy": ["run"],
    }
    best = rows.nth(1).locator("td").nth(0)
    plain = rows.nth(0).locator("td").nth(0)
    assert best.evaluate("e => getComputedStyle(e).backgroundColor") != plain.evaluate(
        "e => getComputedStyle(e).backgroundColor")
    assert int(best.evaluate("e => getComputedStyle(e).fontWeight")) > int(
        plain.evaluate("e => getComputedStyle(e).fontWeight"))
    expect(panel.locator(".onthefly-panel-note")).to_contain_text("best")

    # a discarded merge stays in the table, struck through, and is never the best
    discarded = [dict(n, state="discarded") if n["kind"] == "merge" else n for n in EXPERT_LINEAGE]
    harness.update("lineage", discarded)
    expect(rows.nth(2)).to_have_attribute("data-state", "discarded")
    expect(rows.nth(2).locator(".onthefly-compare-kind")).to_have_text("discarded merge")
    assert best_models(panel)["validation loss"] == ["run"]

    # the run alone: its row, nothing highlighted, and the hint to fork
    harness.update("compare", {"version": 2, "columns": ["model", "validation loss", "validation accuracy"],
                               "rows": [["run", 0.3, 0.9]]})
    expect(rows).to_have_count(1)
    expect(panel.locator("td[data-best]")).to_have_count(0)
    expect(panel.locator(".onthefly-compare-hint")).to_be_visible()
    harness.update("compare", None)
    expect(empty).to_be_visible()
    expect(panel.locator("table")).to_have_count(0)
    harness.assert_no_console_errors()


def test_compare_button_sends_the_command(harness):
    root = harness.root()
    button = root.locator('[data-panel="compare"] button[data-command="compare"]')
    expect(button).to_have_text("Compare")
    expect(button).to_be_disabled()  # no run yet
    harness.update("run", running_run(state="paused"))
    expect(button).to_be_enabled()
    button.click()
    assert harness.sent()[-1] == {"type": "command", "name": "compare"}
    # pending until Python answers with a new table
    expect(button).to_be_disabled()
    expect(button).to_have_text("Comparing…")
    expect(button).to_have_attribute("aria-busy", "true")
    harness.update("lineage", EXPERT_LINEAGE)  # not the answer
    expect(button).to_be_disabled()
    harness.update("compare", COMPARE)
    expect(button).to_be_enabled()
    expect(button).to_have_text("Compare")
    button.click()
    assert [m for m in harness.sent() if m.get("name") == "compare"] == [{"type": "command", "name": "compare"}] * 2
    # after the run has ended Python still compares (at once, on the kernel's thread)
    harness.update("compare", dict(COMPARE, rows=COMPARE["rows"][:2]))
    harness.update("run", running_run(state="finished"))
    expect(button).to_be_enabled()
    harness.assert_no_console_errors()


def test_lineage_shows_forks_baselines_and_merges(harness):
    panel = harness.root().locator('[data-panel="lineage"]')
    harness.update("lineage", EXPERT_LINEAGE)
    nodes = panel.locator("li.onthefly-tree-node")
    expect(nodes).to_have_count(4)
    for child in ("run-fork1", "run-baseline2", "run-merge1"):
        expect(panel.locator(f'li[data-id="run"] li[data-id="{child}"]')).to_have_count(1)
    fork = panel.locator('li[data-kind="fork"]')
    expect(fork.locator(".onthefly-tree-label")).to_have_text("run-fork1")
    expect(fork.locator(".onthefly-tree-kind")).to_have_text("fork")
    expect(fork.locator(".onthefly-tree-step")).to_have_text("forked at step 1500")
    expect(fork.locator(".onthefly-badge")).to_have_text("trained")
    expect(fork.locator(".onthefly-tree-detail")).to_have_text("cluster 3 (step 1500) · 180 samples · 60 steps")
    baseline = panel.locator('li[data-kind="baseline"]')
    expect(baseline.locator(".onthefly-badge")).to_have_text("training")
    expect(baseline.locator(".onthefly-tree-detail")).to_contain_text("matched-compute baseline")
    merge = panel.locator('li[data-kind="merge"]')
    expect(merge.locator(".onthefly-tree-label")).to_have_text("run-merge1")  # its label is the method
    expect(merge.locator(".onthefly-tree-detail")).to_have_text("swa merge · merged from run-fork1")
    expect(merge.locator(".onthefly-badge")).to_have_text("candidate")
    colours = {n.locator(".onthefly-badge").evaluate("b => getComputedStyle(b).backgroundColor")
               for n in (fork, merge, baseline)}
    assert len(colours) == 3

    harness.update("lineage", [dict(n, state="discarded") if n["kind"] == "merge" else
                               dict(n, state="merged") if n["kind"] == "fork" else n for n in EXPERT_LINEAGE])
    expect(merge).to_have_attribute("data-state", "discarded")
    expect(merge.locator(".onthefly-badge")).to_have_text("discarded")
    assert "line-through" in merge.locator(".onthefly-tree-label").evaluate(
        "e => getComputedStyle(e).textDecorationLine")
    expect(fork.locator(".onthefly-badge")).to_have_text("merged")
    harness.assert_no_console_errors()


def test_markers_for_plans_forks_merges_and_health(harness):
    harness.set_curve(curve_rows(50))
    kinds = [("plan_executed", None), ("forked", None), ("merged", None), ("health", "fail"), ("test", None),
             ("health", "warn"), ("health", "pass"), ("started", None), ("rejected_message", None)]
    harness.update("markers", [{"seq": i, "time": 1_700_000_000 + i, "step": 50 + 40 * i, "kind": k,
                                **({"status": status} if status else {})} for i, (k, status) in enumerate(kinds)])
    root = harness.root()
    markers = root.locator("svg.onthefly-svg g.onthefly-marker")
    expect(markers).to_have_count(7)  # start and refusals are not markers
    assert [markers.nth(i).get_attribute("data-kind") for i in range(7)] == [k for k, _ in kinds[:7]]
    fill = lambda i: markers.nth(i).locator(".onthefly-marker-dot").evaluate("c => getComputedStyle(c).fill")  # noqa: E731
    assert len({fill(i) for i in range(4)}) >= 3
    assert fill(3) != fill(5), "a failed check and a warning are drawn in different colours"
    quiet = root.locator("g.onthefly-marker-quiet")
    expect(quiet).to_have_count(1)  # the passing check: a short tick on the axis, no dot, no full line
    expect(quiet.locator(".onthefly-marker-dot")).to_have_count(0)
    tick = quiet.locator(".onthefly-marker-line")
    assert float(tick.get_attribute("y2")) - float(tick.get_attribute("y1")) < 10
    legend = root.locator(".onthefly-marker-legend .onthefly-legend-item")
    expect(legend).to_have_text(["changes", "forks & merges", "checks"])


def test_dragging_on_the_loss_chart_zooms_and_a_double_click_resets(harness):
    harness.set_curve(curve_rows(50))  # steps 10 .. 500
    harness.update("val_curve", [[100, 0.9], [300, 0.5], [480, 0.3]])
    root = harness.root()
    median = root.locator("svg.onthefly-svg path.onthefly-median")
    expect(median).to_have_count(1)
    points = lambda: median.get_attribute("d").count("L") + 1  # noqa: E731
    assert points() == 50
    box = root.locator("svg.onthefly-svg").bounding_box()
    mouse, y = harness.page.mouse, box["y"] + box["height"] / 2
    mouse.move(box["x"] + box["width"] * 0.3, y)
    mouse.down()
    mouse.move(box["x"] + box["width"] * 0.45, y, steps=4)
    expect(root.locator("rect.onthefly-brush")).to_be_visible()
    mouse.move(box["x"] + box["width"] * 0.6, y, steps=4)
    mouse.up()
    expect(root.locator("rect.onthefly-brush")).to_be_hidden()
    expect(root.locator("button.onthefly-zoom-reset")).to_be_visible()
    harness.page.wait_for_timeout(200)
    zoomed = points()
    assert 10 <= zoomed <= 25, f"a third of the width: about a third of the 50 rows, got {zoomed}"
    expect(root.locator("circle.onthefly-val-dot")).to_have_count(1)  # only step 300 is inside
    ticks = [int(t.text_content()) for t in root.locator("text.onthefly-tick[text-anchor=middle]").all()]
    assert ticks and 100 <= min(ticks) and max(ticks) <= 400, f"the x axis spans the zoom only: {ticks}"
    mouse.click(box["x"] + box["width"] * 0.5, y)  # a click is no zoom
    harness.page.wait_for_timeout(200)
    assert points() == zoomed
    mouse.dblclick(box["x"] + box["width"] * 0.5, y)
    harness.page.wait_for_timeout(200)
    assert points() == 50
    expect(root.locator("button.onthefly-zoom-reset")).to_be_hidden()
    harness.assert_no_console_errors()


# theme and screenshots ------------------------------------------------------------------------------------

DARK_VARS = (
    "--jp-layout-color0: #111111; --jp-layout-color1: #212121; --jp-layout-color2: #424242;"
    "--jp-ui-font-color1: rgba(255, 255, 255, 0.87); --jp-ui-font-color2: rgba(255, 255, 255, 0.54);"
    "--jp-ui-font-color3: rgba(255, 255, 255, 0.38); --jp-border-color1: #616161; --jp-border-color2: #424242;"
    "--jp-brand-color1: #42a5f5;"
)
VSCODE_DARK_VARS = (
    "--vscode-editor-background: #1e1e1e; --vscode-foreground: #cccccc;"
    "--vscode-descriptionForeground: rgba(204, 204, 204, 0.7); --vscode-disabledForeground: rgba(204, 204, 204, 0.5);"
    "--vscode-panel-border: rgba(128, 128, 128, 0.35);"
)


def luminance(rgb: list[int]) -> float:
    return (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255


def css_rgb(h: Harness, selector: str, prop: str, slot: int) -> list[int]:
    text = h.page.evaluate(
        "([sel, prop, slot]) =>"
        " getComputedStyle(document.querySelectorAll('.harness-slot')[slot].querySelector(sel))[prop]",
        [selector, prop, slot],
    )
    return [int(float(v)) for v in text[text.index("(") + 1:text.index(")")].replace("/", ",").split(",")[:3]]


def screen_pixel(h: Harness, x: float, y: float) -> list[int]:
    """The composited colour on screen (page background, CSS and WebGL canvas together)."""
    png = h.page.screenshot(clip={"x": int(x), "y": int(y), "width": 1, "height": 1})
    pos, data, channels = 8, b"", 3
    while pos < len(png):
        length = struct.unpack(">I", png[pos:pos + 4])[0]
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            channels = {2: 3, 6: 4}[body[9]]
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    row = zlib.decompress(data)
    return list(row[1:1 + channels][:3])  # one pixel: every PNG filter leaves it as is


CENTRE = 7 * 15 + 7  # grid point (0, 0): not clustered


def test_theme_follows_jupyterlab_then_vscode_variables(bare_harness):
    h = bare_harness
    h.page.evaluate(
        "([dark, vscode]) => { window.mount(); window.mount(undefined, dark); window.mount(undefined, vscode); }",
        [DARK_VARS, VSCODE_DARK_VARS],
    )
    spec = grid_points()
    assert spec["cluster"][CENTRE] == 65535
    h.page.evaluate(SET_POINTS_JS, spec)
    for slot in range(3):
        wait_drawn(h, 1, slot)
    light, dark, vscode = (css_rgb(h, ".onthefly-panel", "backgroundColor", i) for i in range(3))
    assert light == [255, 255, 255]
    assert dark == [33, 33, 33]
    assert vscode == [30, 30, 30]
    assert luminance(css_rgb(h, ".onthefly-title", "color", 0)) < 0.5
    assert luminance(css_rgb(h, ".onthefly-title", "color", 1)) > 0.5
    assert luminance(css_rgb(h, ".onthefly-title", "color", 2)) > 0.5
    # The WebGL map sits on the panel colour, and its theme-dependent point colour (the
    # grey of samples outside the clusters) is light on light and dark on dark.
    greys = []
    for slot, bg in enumerate([light, dark, vscode]):
        h.root(slot).locator('[data-color-by="cluster"]').click()
        geom = map_geometry(h, slot)
        h.page.mouse.move(0, 0)
        h.page.wait_for_timeout(150)
        assert screen_pixel(h, geom[0] + 3, geom[1] + 3) == bg
        greys.append(screen_pixel(h, *to_screen(geom, 0, 0)))
        assert greys[-1] != bg
    assert luminance(greys[0]) > luminance(greys[1]) + 0.1
    assert luminance(greys[0]) > luminance(greys[2]) + 0.1


def test_theme_switch_repaints_the_map(browser_context, server_url):
    h = _open(browser_context, server_url, "?theme=light")
    try:
        set_points(h, grid_points())
        h.root().locator('[data-color-by="cluster"]').click()
        geom = map_geometry(h)
        h.page.wait_for_timeout(150)
        assert screen_pixel(h, geom[0] + 3, geom[1] + 3) == [255, 255, 255]
        grey_light = screen_pixel(h, *to_screen(geom, 0, 0))
        h.page.evaluate("() => window.setTheme('dark')")  # what JupyterLab does: body[data-jp-theme-light]
        expect(h.root().locator(".onthefly-panel").first).to_have_css("background-color", "rgb(33, 33, 33)")
        h.page.wait_for_timeout(200)
        assert screen_pixel(h, geom[0] + 3, geom[1] + 3) == [33, 33, 33]
        grey_dark = screen_pixel(h, *to_screen(geom, 0, 0))
        assert luminance(grey_light) > luminance(grey_dark) + 0.1
    finally:
        h.page.close()
    h.assert_no_console_errors()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot_of_the_demo_dashboard(browser_context, server_url, theme):
    h = _open(browser_context, server_url, f"?demo&theme={theme}")
    try:
        h.page.set_viewport_size({"width": 1200, "height": 900})
        wait_drawn(h, 3)
        root = h.root()
        expect(root.locator('[data-panel="plans"] button[data-decision="approve"]').first).to_be_visible()
        expect(root.locator("g.onthefly-hist-mark")).to_have_count(3)
        expect(root.locator('[data-panel="compare"] tbody tr')).to_have_count(4)
        expect(root.locator('[data-panel="lineage"] li.onthefly-tree-node')).to_have_count(4)
        assert painted_pixels(h) > 5000
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = "dashboard.png" if theme == "light" else "dashboard-dark.png"
        h.page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    finally:
        h.page.close()
    h.assert_no_console_errors()


def test_the_metrics_panel_charts_each_metric_and_groups_learning_rates_and_memory(harness):
    root = harness.root()
    panel = root.locator('[data-panel="metrics"]')
    expect(panel.locator(".onthefly-empty-state")).to_be_visible()
    points = lambda values: [[50 * (i + 1), v] for i, v in enumerate(values)]  # noqa: E731
    harness.update("scalars", [
        {"name": "lr/group 0", "group": "measured", "points": points([0.1, 0.1, 0.05])},
        {"name": "lr/group 1", "group": "measured", "points": points([0.01, 0.01, 0.005])},
        {"name": "grad norm", "group": "measured", "points": points([3.0, 2.0, 1.5])},
        {"name": "host memory (MB)", "group": "measured", "points": points([900, 910, 920])},
        {"name": "validation accuracy", "group": "measured", "points": [[100, 0.8]]},
        {"name": "f1", "group": "logged", "points": points([0.5, 0.6, 0.7])},
    ])
    charts = panel.locator("figure.onthefly-metric-chart")
    expect(charts).to_have_count(5)
    assert [charts.nth(i).get_attribute("data-metric") for i in range(5)] == [
        "learning rate", "grad norm", "memory (MB)", "validation accuracy", "f1"]
    lr = charts.nth(0)
    expect(lr.locator("path.onthefly-spark")).to_have_count(2)  # one line per parameter group, one axis
    expect(lr.locator(".onthefly-metric-latest")).to_have_text("group 0 0.05 · group 1 0.005")
    expect(charts.nth(1).locator(".onthefly-metric-latest")).to_have_text("1.5")
    expect(charts.nth(3).locator("path.onthefly-spark")).to_have_count(1)  # a single validation: a dot
    expect(panel.locator(".onthefly-empty-state")).to_be_hidden()
    box = panel.bounding_box()
    for i in range(5):
        chart = charts.nth(i).bounding_box()
        assert chart["x"] >= box["x"] - 1 and chart["x"] + chart["width"] <= box["x"] + box["width"] + 1
    harness.assert_no_console_errors()


def test_the_output_panel_shows_what_the_run_printed_and_follows_the_newest_line(harness):
    root = harness.root()
    panel = root.locator('[data-panel="output"]')
    expect(panel.locator(".onthefly-empty-state")).to_be_visible()
    lines = [{"time": 1_700_000_000 + i, "stream": "stderr" if i % 7 == 0 else "stdout", "text": f"line {i}"}
             for i in range(60)]
    harness.update("output", lines)
    items = panel.locator("li.onthefly-output-line")
    expect(items).to_have_count(60)
    expect(items.nth(59)).to_contain_text("line 59")
    assert items.nth(7).get_attribute("data-stream") == "stderr"
    scroll = panel.locator("ol.onthefly-output")
    at_bottom = "e => e.scrollHeight - e.scrollTop - e.clientHeight <= 8"
    assert scroll.evaluate("e => e.scrollHeight > e.clientHeight") and scroll.evaluate(at_bottom)
    harness.update("output", [*lines, {"time": 1_700_000_100, "stream": "stdout", "text": "line 60"}])
    expect(items).to_have_count(61)
    assert scroll.evaluate(at_bottom), "at the bottom, it follows the newest line"
    scroll.evaluate("e => { e.scrollTop = 0; }")
    harness.update("output", [*lines, {"time": 1_700_000_101, "stream": "stdout", "text": "line 61"}])
    expect(items.last).to_contain_text("line 61")
    assert scroll.evaluate("e => e.scrollTop") == 0, "scrolled up to read, it stays there"
    harness.assert_no_console_errors()


def test_the_hyperparameters_panel_sends_edits_and_says_when_they_applied_or_why_not(harness):
    root = harness.root()
    panel = root.locator('[data-panel="hyperparameters"]')
    expect(panel.locator(".onthefly-empty-state")).to_be_visible()
    two_groups = {"groups": [{"lr": 0.001, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999},
                             {"lr": 0.002, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999}],
                  "grad_clip_norm": None}
    harness.update("hyperparameters", two_groups)
    lr = panel.locator('input[data-key="lr"]')
    expect(lr).to_have_value("0.001")
    expect(panel.locator('input[data-key="grad_clip_norm"]')).to_have_value("")
    expect(panel.locator('input[data-key="momentum"]')).to_have_count(0)  # AdamW has betas, not momentum
    apply = panel.locator("button.onthefly-hp-apply")
    expect(apply).to_be_disabled()
    panel.locator("select.onthefly-hp-group").select_option("1")
    expect(lr).to_have_value("0.002")
    lr.fill("0.0005")
    panel.locator('input[data-key="beta2"]').fill("0.98")
    expect(apply).to_be_enabled()
    apply.click()
    assert harness.sent()[-1] == {"type": "hyperparameters", "values": {"lr": 0.0005, "beta2": 0.98}, "group": 1}
    status = panel.locator(".onthefly-hp-status")
    expect(status).to_have_text("applying at the next step…")
    expect(apply).to_be_disabled()  # no second edit while one is on its way
    harness.update("hyperparameters", {**two_groups, "groups": [
        two_groups["groups"][0], {"lr": 0.0005, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.98}]})
    expect(status).to_have_text("applied")
    expect(lr).to_have_value("0.0005")
    panel.locator('input[data-key="grad_clip_norm"]').fill("0")
    apply.click()
    assert harness.sent()[-1] == {"type": "hyperparameters", "values": {"grad_clip_norm": 0}, "group": 1}
    harness.update("events", [{"seq": 5, "time": 1_700_000_000, "step": 9, "kind": "rejected_message",
                               "message": "hyperparameters", "reason": "ConfigurationError: grad_clip_norm must be "
                                                                      "a finite number > 0, got 0.0"}])
    expect(status).to_have_text("ConfigurationError: grad_clip_norm must be a finite number > 0, got 0.0")
    expect(status).to_have_attribute("data-state", "refused")
    harness.assert_no_console_errors()


def test_when_every_loss_is_the_same_the_map_and_histogram_say_so_without_inventing_a_range(harness):
    spec = {**grid_points(), "loss": [0.0] * 225}
    set_points(harness, spec)
    root = harness.root()
    legend = root.locator(".onthefly-map-legend")
    expect(legend).to_have_text("every point: loss 0")
    expect(root.locator(".onthefly-map-gradient")).to_have_count(0)
    harness.update("histogram", {"edges": [0.0, 0.0], "counts": [225],
                                 "quantiles": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0}})
    hist = root.locator('[data-panel="histogram"]')
    bars = hist.locator("rect.onthefly-hist-bar")
    expect(bars).to_have_count(1)
    ticks = [t.text_content() for t in hist.locator("text.onthefly-tick[text-anchor=middle]").all()]
    assert ticks == ["0"], f"one x tick at the value, no 0-1 axis: {ticks}"
    assert 20 <= float(bars.first.get_attribute("width")) <= 30
    assert "-0" not in hist.inner_text()
    harness.assert_no_console_errors()


def test_low_losses_stay_visible_on_a_dark_background(browser_context, server_url):
    h = _open(browser_context, server_url, "?theme=dark")
    try:
        set_points(h, grid_points())
        lowest = h.page.evaluate("() => getComputedStyle(document.querySelector('.onthefly-map-gradient'))"
                                 ".backgroundImage")
        first = [int(v) for v in lowest[lowest.index("rgb(") + 4:lowest.index(")")].split(",")]
        assert luminance(first) > 0.12, f"the colormap's low end {first} must stand out from a dark panel"
    finally:
        h.page.close()


LAYOUT_CHECK_JS = """() => {
  const root = document.querySelector('.onthefly-root');
  const r = root.getBoundingClientRect();
  const out = {sideways: document.documentElement.scrollWidth - window.innerWidth, clipped: [], narrow: []};
  for (const el of root.querySelectorAll('button, select, input, .onthefly-panel')) {
    if (el.closest('[hidden]') || el.getClientRects().length === 0) continue;
    const b = el.getBoundingClientRect();
    const panel = el.parentElement.closest('.onthefly-panel') || root;
    const p = panel.getBoundingClientRect();
    const text = (el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30);
    const name = (el.className || el.tagName) + ' ' + text;
    if (b.left < p.left - 1 || b.right > p.right + 1 || b.left < r.left - 1 || b.right > r.right + 1) {
      const where = Math.round(b.left) + '..' + Math.round(b.right);
      out.clipped.push(name + ' ' + where + ' in ' + Math.round(p.left) + '..' + Math.round(p.right));
    }
    if (el.matches('button') && b.width < 16) out.narrow.push(name);
  }
  return out;
}"""


@pytest.mark.parametrize("width", [360, 800, 1400, 2000])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_layout_holds_from_a_phone_to_a_wide_screen(browser_context, server_url, width, theme):
    h = _open(browser_context, server_url, f"?demo&theme={theme}")
    try:
        h.page.set_viewport_size({"width": width, "height": 900})
        wait_drawn(h, 3)
        h.next_frame()
        found = h.page.evaluate(LAYOUT_CHECK_JS)
        assert found["sideways"] <= 0, f"the page scrolls sideways by {found['sideways']} px at {width} px"
        assert found["clipped"] == [], f"controls outside their panel at {width} px: {found['clipped'][:8]}"
        assert found["narrow"] == [], f"squeezed buttons at {width} px: {found['narrow']}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        h.page.screenshot(path=str(ARTIFACTS / f"layout-{width}-{theme}.png"), full_page=True)
    finally:
        h.page.close()
    h.assert_no_console_errors()


def test_other_runs_are_overlaid_on_the_loss_chart_with_a_legend_entry_each(harness):
    harness.set_curve(curve_rows(50))  # steps 10 .. 500
    harness.update("overlays", [
        {"name": "default/slow", "points": [[10 * i, 2.0 - 0.01 * i] for i in range(1, 80)]},  # a longer run
        {"name": "default/fast", "points": [[10 * i, 1.0 - 0.005 * i] for i in range(1, 40)]},
    ])
    root = harness.root()
    lines = root.locator("svg.onthefly-svg path.onthefly-overlay")
    expect(lines).to_have_count(2)
    assert [lines.nth(i).get_attribute("data-name") for i in range(2)] == ["default/slow", "default/fast"]
    assert lines.nth(0).get_attribute("d").count("L") == 78, "over all steps, the whole of the longer run"
    legend = root.locator(".onthefly-legend-item:has(.onthefly-swatch-overlay)")
    expect(legend).to_have_text(["default/slow", "default/fast"])
    colours = {lines.nth(i).evaluate("p => getComputedStyle(p).stroke") for i in range(2)}
    assert len(colours) == 2
    root.locator("select.onthefly-window").select_option("100")
    harness.page.wait_for_timeout(200)
    assert lines.nth(0).get_attribute("d").count("L") + 1 == 10, "the last 100 steps of the live run: 410 .. 500"
    harness.update("overlays", [])
    expect(lines).to_have_count(0)
    harness.assert_no_console_errors()


def test_the_compare_form_asks_the_kernel_to_overlay_a_saved_run_and_shows_why_not(harness):
    harness.set_curve(curve_rows(50))
    root = harness.root()
    root.locator("details.onthefly-compare-details summary").click()
    field = root.locator("input.onthefly-compare-path")
    field.fill("runs/missing.zip")
    root.locator(".onthefly-compare-form button[type=submit]").click()
    assert harness.sent()[-1] == {"type": "overlay", "path": "runs/missing.zip"}
    status = root.locator(".onthefly-compare-form .onthefly-hp-status")
    expect(status).to_have_text("opening…")
    harness.update("events", [{"seq": 3, "time": 1_700_000_000, "step": 50, "kind": "rejected_message",
                               "message": "overlay", "reason": "ArchiveError: No session archive at runs/missing.zip"}])
    expect(status).to_have_text("ArchiveError: No session archive at runs/missing.zip")
    field.fill("runs/baseline.zip")
    root.locator(".onthefly-compare-form button[type=submit]").click()
    harness.update("overlays", [{"name": "default/baseline", "points": [[10, 2.0], [500, 0.5]]}])
    expect(status).to_have_text("overlaid: default/baseline")
    expect(field).to_have_value("")
    remove = root.locator(".onthefly-compare-form button", has_text="Remove overlays")
    expect(remove).to_be_visible()
    remove.click()
    assert harness.sent()[-1] == {"type": "overlay", "path": ""}
    harness.assert_no_console_errors()
