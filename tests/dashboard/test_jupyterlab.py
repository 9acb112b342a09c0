"""End to end: the quickstart notebook in a real JupyterLab and Notebook 7, driven by Debian's Chromium.

The dashboard's map selection, plan cards and buttons must reach the training thread in the
kernel, which is checked from the Python side by a second client connected to the same kernel.
Run with ``pytest -m e2e tests/test_jupyterlab.py``; it takes about two minutes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    QUICKSTART,
    ROOT,
    WEBGL_ARGS,
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
    """One server for both front ends: it serves JupyterLab and Notebook 7."""
    with lab_server(tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


@pytest.fixture
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS + WEBGL_ARGS,
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


APPS = {
    # app: (URL path prefix, notebook copy)
    "jupyterlab": ("lab/tree", "quickstart-lab.ipynb"),
    "notebook7": ("notebooks", "quickstart-nb7.ipynb"),
}
ARTIFACTS = ROOT / "tests" / "artifacts"
SPIKE = """
session.pause()
for group in session.optimizer.param_groups:
    group["lr"] = 0.5   # a wild learning rate: the next steps spike
session.step(4)
print(json.dumps([p["id"] for p in session.plans if p["kind"] == "lower_lr" and p["status"] == "proposed"]))
"""
CAPTURE_SELECTIONS = """() => {
    window.ontheflySelections = [];
    document.addEventListener("onthefly-select", (e) => window.ontheflySelections.push(e.detail.indices));
}"""


def open_and_run_all(page: sync_api.Page, lab: LabServer, app: str, name: str | None = None) -> str:
    """Open a copy of the quickstart (named ``name``, or the app's default copy) and run all its cells."""
    prefix, default = APPS[app]
    name = name or default
    notebook = nbformat.read(QUICKSTART, as_version=4)
    assert notebook.cells[-1].source == "session.wait()"
    del notebook.cells[-2:]  # the demo ends waiting for its run; here the kernel must be free after Run All
    source = nbformat.writes(notebook)
    assert "max_epochs=800," in source
    # the demo's run ends in about a minute; this one must outlast the test
    (lab.root_dir / name).write_text(source.replace("max_epochs=800,", "max_epochs=8000,"))
    # JupyterLab restores the tabs an earlier test left open; ?reset starts from an empty workspace
    reset = "&reset" if app == "jupyterlab" else ""
    page.goto(f"{lab.url}/{prefix}/{name}?token={lab.token}{reset}", timeout=APP_LOAD_MS)
    page.wait_for_selector(".jp-Notebook", timeout=APP_LOAD_MS)
    page.wait_for_function(kernel_idle_js(name), timeout=APP_LOAD_MS)
    # Run → Run All Cells, through the app's command registry (the menu item's command)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # every cell ran: the last one is `%onthefly status`, and the kernel is free again,
    # so the dashboard's comm messages are handled at once
    last_output = page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-OutputArea-output")
    sync_api.expect(last_output).to_contain_text("digits-demo/baseline", timeout=STATE_MS)
    page.wait_for_function(kernel_idle_js(name), timeout=STATE_MS)
    return name


def lasso(page: sync_api.Page, canvas: sync_api.Locator) -> None:
    """Drag a closed loop around the middle of the map."""
    box = canvas.bounding_box()
    assert box is not None, "the sample map has no size"
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) * 0.3
    loop = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (2 * math.pi * i / 32 for i in range(33))]
    page.mouse.move(*loop[0])
    page.mouse.down()
    for x, y in loop[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


@pytest.mark.parametrize("app", list(APPS))
def test_dashboard_steers_the_kernel_session(lab: LabServer, page: sync_api.Page, tmp_path: Path, app: str) -> None:
    """Train; lasso points on the sample map and find them in session.selection; approve an
    edited plan card and see the engine act on it; Pause and Resume; save a screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{app}-dashboard.png"
    where = f"(server log: {lab.log_path}; screenshot: {shot})"
    name = open_and_run_all(page, lab, app)

    root = page.locator(".onthefly-root")
    sync_api.expect(root).to_have_count(1, timeout=STATE_MS)
    status = root.locator(".onthefly-status")
    sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)

    kc = None
    try:
        kc = connect_kernel(lab, name)
        seen = probe(kc)
        lab.kernel_pids.add(seen["pid"])

        # the notebook clustered the hard samples: the map is drawn (and redrawn as the run reclusters)
        sample_map = root.locator(".onthefly-map")
        sync_api.expect(sample_map).to_have_attribute("data-drawn-version", re.compile(r"^[1-9]\d*$"),
                                                      timeout=STATE_MS)
        root.locator('[data-panel="map"]').scroll_into_view_if_needed()
        page.evaluate(CAPTURE_SELECTIONS)
        root.locator('button[data-action="lasso"]').click()
        lasso(page, root.locator(".onthefly-map-canvas"))
        page.wait_for_function("() => (window.ontheflySelections || []).some((s) => s.length > 0)", timeout=STATE_MS)
        # a press on a point may select it before the lasso closes, so the first selection sent may
        # not be the last: the kernel handles messages in order, so wait until it holds the last one
        deadline = time.monotonic() + STATE_MS / 1000
        while True:
            sent = [s for s in page.evaluate("() => window.ontheflySelections") if s][-1]
            selected = json.loads(run_in_kernel(kc, "print(json.dumps(session.selection.tolist()))"))
            if selected == sorted(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert selected == sorted(sent) and selected, f"browser sent {len(sent)} indices, Python has {len(selected)}"
        sync_api.expect(root.locator(".onthefly-selection-count")).to_have_attribute("data-n", str(len(selected)))
        rows = json.loads(run_in_kernel(kc, "print(json.dumps(session.slice(session.selection)['index'].tolist()))"))
        assert rows == selected

        # a loss spike proposes a lower learning rate; edit the factor and approve it in the browser
        plan_ids = json.loads(run_in_kernel(kc, SPIKE, timeout=60).strip().splitlines()[-1])
        assert plan_ids, f"no lower-LR plan after the spike {where}"
        card = root.locator(f'article.onthefly-plan[data-plan-id="{plan_ids[0]}"]')
        approve = card.locator('button[data-decision="approve"]')
        card.scroll_into_view_if_needed()
        card.locator(".onthefly-param-input").fill("0.02")
        page.screenshot(path=str(shot), full_page=False)
        approve.click()
        sync_api.expect(card.locator(".onthefly-badge")).to_have_text("executed", timeout=STATE_MS)
        engine = json.loads(run_in_kernel(kc, "print(json.dumps([session.optimizer.param_groups[0]['lr'], "
                                              "[e['kind'] for e in session.events][-6:]]))"))
        assert engine[0] == pytest.approx(0.01), f"learning rate after the approved plan: {engine}"
        assert "plan_executed" in engine[1] and "lr_changed" in engine[1], engine

        # Resume and Pause in the browser steer the training thread
        sync_api.expect(status).to_have_attribute("data-state", "paused", timeout=STATE_MS)
        root.locator('button[data-command="resume"]').click()
        sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)
        assert probe(kc)["status"][0] == "running"
        root.locator('button[data-command="pause"]').click()
        sync_api.expect(status).to_have_attribute("data-state", "paused", timeout=STATE_MS)
        seen = probe(kc)
        assert seen["status"] == ["paused", "paused"] and seen["step"][0] == seen["step"][1] > 0, seen
        sync_api.expect(root.locator(".onthefly-step")).to_have_attribute(
            "data-step", str(seen["step"][0]), timeout=10_000)

        # Stop from Python; the dashboard follows
        run_in_kernel(kc, "session.stop()", timeout=60)
        sync_api.expect(status).to_have_attribute("data-state", "stopped", timeout=STATE_MS)
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise AssertionError(f"{exc}\n{where}; failure screenshot: {tmp_path / 'failure.png'}\n"
                             f"--- server log tail:\n{lab.log_tail(2000)}") from exc
    finally:
        if kc is not None:
            kc.stop_channels()


@pytest.mark.parametrize("app", list(APPS))
def test_controls_answer_within_a_second_while_a_cell_runs(lab: LabServer, page: sync_api.Page, tmp_path: Path,
                                                            app: str) -> None:
    """While a cell sleeps, and while a cell waits in session.wait(), Pause, Resume, Step and Stop
    clicked on the dashboard take effect within a second (the command comm's subshell)."""
    name = open_and_run_all(page, lab, app, name=f"busy-{app}.ipynb")
    root = page.locator(".onthefly-root")
    status = root.locator(".onthefly-status")
    sync_api.expect(status).to_have_attribute("data-state", "running", timeout=STATE_MS)
    kc = connect_kernel(lab, name)
    try:
        for busy in ("import time; time.sleep(12)", "session.wait()"):
            msg_id = kc.execute(busy)
            page.wait_for_timeout(1000)  # the cell runs
            for command, state in (("pause", "paused"), ("resume", "running"), ("pause", "paused")):
                root.locator(f'button[data-command="{command}"]').click()
                sync_api.expect(status).to_have_attribute("data-state", state, timeout=1000)
            step = root.locator(".onthefly-step")
            before = int(step.get_attribute("data-step"))
            root.locator("input.onthefly-step-n").fill("5")
            root.locator('button[data-command="step"]').click()
            sync_api.expect(step).to_have_attribute("data-step", str(before + 5), timeout=1000)
            root.locator('button[data-command="resume"]').click()
            sync_api.expect(status).to_have_attribute("data-state", "running", timeout=1000)
            if busy == "session.wait()":
                root.locator('button[data-command="stop"]').click()  # arms it
                root.locator('button[data-command="stop"]').click()  # confirms
                sync_api.expect(status).to_have_attribute("data-state", "stopped", timeout=1000)
            reply = kc.get_shell_msg(timeout=60)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = kc.get_shell_msg(timeout=60)
            assert reply["content"]["status"] == "ok", reply["content"]
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise AssertionError(f"{exc}\nfailure screenshot: {tmp_path / 'failure.png'}\n"
                             f"--- server log tail:\n{lab.log_tail(2000)}") from exc
    finally:
        kc.stop_channels()


FORK_PLAN = """
import json
session.pause()
for _attempt in range(4):
    if session.global_step < 1500:
        session.step(1500 - session.global_step, timeout=120)
    session.cluster()
    _ids = [p["id"] for p in session.plans if p["kind"] == "fork" and p["status"] == "proposed"]
    if _ids:
        break
    session.step(300, timeout=120)
print(json.dumps({"ids": _ids, "step": session.global_step, "status": session.status}))
"""
EXPERTS = """print(json.dumps({n: {"steps": len(e.losses), "state": e.state, "kind": e.kind}
                  for n, e in session.experts.items()}))"""
MERGES = "print(json.dumps([[m.name, m.state] for m in session.parts.merges.merges.values()]))"
REWEIGHTED = """_w = session.parts.run.loop.sampler.weights
print(json.dumps({"max": float(_w.max()), "min": float(_w.min()), "heavier": int((_w > 1).sum())}))"""


def decide_card(root: sync_api.Locator, kind: str, decision: str, **params: str) -> tuple[str, sync_api.Locator]:
    """Wait for the proposed card of ``kind``, fill its ``params``, click Approve or Reject; return its id and card."""
    proposed = root.locator(f'article.onthefly-plan[data-kind="{kind}"][data-status="proposed"]')
    sync_api.expect(proposed).to_have_count(1, timeout=STATE_MS)
    plan_id = proposed.get_attribute("data-plan-id")
    card = root.locator(f'article.onthefly-plan[data-plan-id="{plan_id}"]')
    card.scroll_into_view_if_needed()
    for name, value in params.items():
        card.locator(f'input.onthefly-param-input[data-param="{name}"]').fill(value)
    card.locator(f'button[data-decision="{decision}"]').click()
    return plan_id, card


@pytest.mark.parametrize("app", list(APPS))
def test_fork_merge_and_discard_from_the_plan_cards(lab: LabServer, page: sync_api.Page, tmp_path: Path,
                                                    app: str) -> None:
    """After a clustering, approve the fork card with an edited budget; the expert trains, shows
    in the lineage and the compare table; approve the merge card, reject the commit card; the
    merge is discarded in the kernel and on the dashboard; reject a second fork card; approve the
    reweight card with an edited factor; save a screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{app}-experts.png"
    where = f"(server log: {lab.log_path}; screenshot: {shot})"
    name = open_and_run_all(page, lab, app, f"quickstart-experts-{app}.ipynb")

    root = page.locator(".onthefly-root")
    sync_api.expect(root).to_have_count(1, timeout=STATE_MS)
    kc = None
    try:
        kc = connect_kernel(lab, name)
        lab.kernel_pids.add(probe(kc)["pid"])

        # paused after a clustering of at least 1500 steps: a fork card waits for a decision
        state = json.loads(run_in_kernel(kc, FORK_PLAN, timeout=300).strip().splitlines()[-1])
        assert state["ids"] and state["status"] == "paused", f"no fork card proposed: {state} {where}"
        sync_api.expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "paused", timeout=STATE_MS)

        # fork: edit the budget to 60 steps and approve it in the browser
        fork_id, fork_card = decide_card(root, "fork", "approve", budget="60")
        assert fork_id == state["ids"][0]
        sync_api.expect(fork_card.locator(".onthefly-badge")).to_have_text("executed", timeout=STATE_MS)
        experts = json.loads(run_in_kernel(kc, EXPERTS))
        assert len(experts) == 1, experts
        expert, info = next(iter(experts.items()))
        assert info == {"steps": 60, "state": "trained", "kind": "fork"}, experts

        lineage = root.locator('[data-panel="lineage"]')
        fork_node = lineage.locator(f'li.onthefly-tree-node[data-kind="fork"][data-id="{expert}"]')
        sync_api.expect(fork_node).to_have_count(1, timeout=STATE_MS)
        sync_api.expect(fork_node.locator(".onthefly-badge")).to_have_text("trained")
        sync_api.expect(fork_node.locator(".onthefly-tree-detail")).to_contain_text("60 steps")
        compare_rows = root.locator('[data-panel="compare"] tbody tr')
        sync_api.expect(compare_rows).to_have_count(2, timeout=STATE_MS)
        sync_api.expect(compare_rows.nth(1)).to_have_attribute("data-model", expert)

        # merge: approve the merge card; a card to commit the candidate follows; reject it
        _, merge_card = decide_card(root, "merge", "approve")
        sync_api.expect(merge_card.locator(".onthefly-badge")).to_have_text("executed", timeout=STATE_MS)
        # the candidate joins the table (beside the matched-compute baseline the merge made)
        merge_rows = root.locator('[data-panel="compare"] tbody tr[data-kind="merge"]')
        sync_api.expect(merge_rows).to_have_count(1, timeout=STATE_MS)
        _, commit_card = decide_card(root, "commit_merge", "reject")
        sync_api.expect(commit_card.locator(".onthefly-badge")).to_have_text("rejected", timeout=STATE_MS)
        merges = json.loads(run_in_kernel(kc, MERGES))
        assert len(merges) == 1 and merges[0][1] == "discarded", merges
        merge_node = lineage.locator(f'li.onthefly-tree-node[data-kind="merge"][data-id="{merges[0][0]}"]')
        sync_api.expect(merge_node).to_have_attribute("data-state", "discarded", timeout=STATE_MS)
        sync_api.expect(merge_node.locator(".onthefly-badge")).to_have_text("discarded")
        sync_api.expect(merge_node.locator(".onthefly-tree-detail")).to_contain_text(f"merged from {expert}")
        # discarding refreshes the comparison: the candidate's row goes
        merge_row = root.locator(f'[data-panel="compare"] tbody tr[data-model="{merges[0][0]}"]')
        sync_api.expect(merge_row).to_have_count(0, timeout=STATE_MS)

        # plans, lineage and compare in one picture
        page.set_viewport_size({"width": 1400, "height": 1150})
        root.locator('[data-panel="plans"]').evaluate("(p) => p.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(shot), full_page=False)

        # the Compare button recomputes the table: the run and its experts, without the discarded merge
        experts = json.loads(run_in_kernel(kc, EXPERTS))
        compare_button = root.locator('[data-panel="compare"] button[data-command="compare"]')
        compare_button.click()
        sync_api.expect(merge_row).to_have_count(0, timeout=STATE_MS)
        sync_api.expect(compare_rows).to_have_count(1 + len(experts))
        sync_api.expect(compare_button).to_be_enabled()

        # a second clustering proposes another fork card; reject it in the browser: nothing is forked
        run_in_kernel(kc, "session.cluster()", timeout=120)
        _, second = decide_card(root, "fork", "reject")
        sync_api.expect(second.locator(".onthefly-badge")).to_have_text("rejected", timeout=STATE_MS)
        assert json.loads(run_in_kernel(kc, EXPERTS)) == experts, "a rejected fork card forked nothing"

        # the reweight card of the first clustering: sample its cluster 4x as often
        _, reweight = decide_card(root, "reweight", "approve", factor="4")
        sync_api.expect(reweight.locator(".onthefly-badge")).to_have_text("executed", timeout=STATE_MS)
        weights = json.loads(run_in_kernel(kc, REWEIGHTED))
        assert weights["max"] == 4.0 and weights["min"] == 1.0 and weights["heavier"] >= 20, weights
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise AssertionError(f"{exc}\n{where}; failure screenshot: {tmp_path / 'failure.png'}\n"
                             f"--- server log tail:\n{lab.log_tail(2000)}") from exc
    finally:
        if kc is not None:
            with contextlib.suppress(Exception):
                run_in_kernel(kc, "session.stop()", timeout=60)
            kc.stop_channels()


EXPORTED = """_exported = [e for e in session.events if e["kind"] in ("exported", "export_failed")]
print(json.dumps(_exported[-1] if _exported else None))"""
RELOAD = """
import copy
from onthefly_nb import Session
from onthefly_nb.run.optimizers import same_kind  # the notebook's AdamW, over the copy
_model = copy.deepcopy(session.model)
_loaded = Session.load({path!r}, _model, same_kind(session.optimizer, _model.parameters()),
                       session.loss_fn, session.train_loader, run_name="reloaded")
print(json.dumps({{"step": _loaded.global_step, "same_weights": all(
    torch.equal(v, session.model.state_dict()[k]) for k, v in _loaded.model.state_dict().items()),
    "status": session.status}}))
"""


def test_health_determinism_and_export_from_the_dashboard(lab: LabServer, page: sync_api.Page,
                                                          tmp_path: Path) -> None:
    """JupyterLab: pause; Health check fills the health panel (activations and loader checks
    included); Determinism adds a passing determinism finding; Export writes a session archive
    beside the notebook that Session.load restores at the paused step with the same weights."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "jupyterlab-health-export.png"
    where = f"(server log: {lab.log_path}; screenshot: {shot})"
    name = open_and_run_all(page, lab, "jupyterlab", "quickstart-save.ipynb")
    root = page.locator(".onthefly-root")
    sync_api.expect(root).to_have_count(1, timeout=STATE_MS)
    kc = None
    try:
        kc = connect_kernel(lab, name)
        lab.kernel_pids.add(probe(kc)["pid"])
        root.locator('button[data-command="pause"]').click()
        sync_api.expect(root.locator(".onthefly-status")).to_have_attribute("data-state", "paused", timeout=STATE_MS)
        step = probe(kc)["step"][0]

        health = root.locator('[data-panel="health"]')
        root.locator('button[data-command="health"]').click()
        for check in ("gradients", "activations", "dead units", "data pipeline", "label balance"):
            sync_api.expect(health.locator(f'li.onthefly-health-item[data-check="{check}"]')).to_have_count(
                1, timeout=STATE_MS)
        root.locator('button[data-command="determinism"]').click()
        determinism = health.locator('li.onthefly-health-item[data-check="determinism"]')
        sync_api.expect(determinism).to_have_attribute("data-status", "pass", timeout=STATE_MS)
        sync_api.expect(determinism).to_contain_text("bit-identical")

        root.locator('button[data-command="export"]').click()
        deadline = time.monotonic() + STATE_MS / 1000
        while (exported := json.loads(run_in_kernel(kc, EXPORTED))) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exported and exported["kind"] == "exported", f"no export: {exported} {where}"
        archive = Path(exported["path"])
        assert archive.parent.resolve() == lab.root_dir.resolve() and archive.name.endswith(f"-step{step}.zip"), archive
        assert exported["step"] == step and archive.stat().st_size > 0
        sync_api.expect(root.locator('.onthefly-event[data-kind="exported"]')).to_have_count(1, timeout=STATE_MS)
        health.scroll_into_view_if_needed()
        page.screenshot(path=str(shot), full_page=False)

        reloaded = json.loads(run_in_kernel(kc, RELOAD.format(path=str(archive)), timeout=60).strip().splitlines()[-1])
        assert reloaded == {"step": step, "same_weights": True, "status": "paused"}, reloaded
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise AssertionError(f"{exc}\n{where}; failure screenshot: {tmp_path / 'failure.png'}\n"
                             f"--- server log tail:\n{lab.log_tail(2000)}") from exc
    finally:
        if kc is not None:
            with contextlib.suppress(Exception):
                run_in_kernel(kc, "session.stop()", timeout=60)
            kc.stop_channels()
