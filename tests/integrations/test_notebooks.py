"""Notebooks executed in a real kernel with nbclient.

The quickstart notebook trains while its cells run and ends waiting for its run, so a Run All
or ``jupyter nbconvert --execute`` leaves it finished; a cell put before that wait steers the
live session from inside the kernel.
"""

from __future__ import annotations

import json
import textwrap

import nbformat
import pytest
from jupyter_helpers import (
    NOTEBOOKS,
    QUICKSTART,
    WIDGET_STATE,
    error_outputs,
    find_cell,
    output_text,
)

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")

FACTS = "ONTHEFLY_FACTS "

CHECK_PAUSE = """
import json, time
status_before = session.status
assert status_before in ("running", "paused"), status_before
session.pause()
paused_status = session.status
step_a = session.global_step
time.sleep(0.3)
step_b = session.global_step
assert paused_status == "paused", paused_status
assert step_a == step_b, f"step moved while paused: {step_a} -> {step_b}"
session.resume()
"""

CHECK_END = """
frame = session.slice()
missing = {"index", "loss", "label", "prediction", "margin"} - set(frame.columns)
assert not missing, f"slice lacks columns {missing}: {list(frame.columns)}"
# let the publisher push the final state, so the saved widget state shows it
deadline = time.monotonic() + 5
while session.dashboard().run.get("state") != "finished" and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.3)
print(FACTS + json.dumps({
    "status_before": status_before, "paused_status": paused_status, "step_a": step_a,
    "step_b": step_b, "final_status": session.status, "steps": [session.global_step, session.total_steps],
    "columns": list(frame.columns), "rows": len(frame)}))
"""


def execute(nb: nbformat.NotebookNode, timeout: int = 120, path=NOTEBOOKS) -> nbformat.NotebookNode:
    client = nbclient.NotebookClient(
        nb, timeout=timeout, startup_timeout=60, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(path)}},
    )
    client.execute()  # starts a kernel and always shuts it down
    return nb


def test_quickstart_notebook_runs_and_steers_the_session():
    nb = nbformat.read(QUICKSTART, as_version=4)
    assert nb.cells[-1].source == "session.wait()", "the notebook ends waiting for its run"
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(CHECK_PAUSE))  # steer it before the end
    original = [c for c in nb.cells if c.source != CHECK_PAUSE]
    nb.cells.append(nbformat.v4.new_code_cell(f"FACTS = {FACTS!r}\n" + CHECK_END))
    execute(nb, timeout=300)

    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)

    facts_lines = [line for line in output_text(nb.cells[-1]).splitlines() if line.startswith(FACTS)]
    assert facts_lines, f"the check cell printed no facts: {output_text(nb.cells[-1])!r}"
    facts = json.loads(facts_lines[-1][len(FACTS):])
    assert facts["status_before"] in ("running", "paused"), facts
    assert facts["paused_status"] == "paused", facts
    assert facts["step_a"] == facts["step_b"] > 0, facts
    assert facts["final_status"] == "finished" and facts["steps"][0] == facts["steps"][1], facts
    assert {"index", "loss", "label", "prediction", "margin"} <= set(facts["columns"]), facts
    assert facts["rows"] > 0, facts

    dashboard_cell = find_cell(original, "quickstart(")
    kinds = [set(o.get("data", {})) for o in dashboard_cell.outputs]
    # the run ended: the live view became the frozen final dashboard (no widget view left to break)
    assert kinds == [{"text/html", "text/plain"}], f"the quickstart cell's outputs: {kinds}"
    final = html_outputs(dashboard_cell)
    assert "onthefly-static" in final and "finished" in final and "<svg" in final, final[:800]
    assert "ontheflyFrozen" in final and len(final) < 2_000_000, "the frozen dashboard, of a reasonable size"

    slice_cell = find_cell(original, 'session.slice("loss')
    html = [o["data"]["text/html"] for o in slice_cell.outputs if "text/html" in o.get("data", {})]
    assert html and "<table" in html[0], f"slice cell shows no DataFrame table: {slice_cell.outputs}"

    clusters = html_outputs(find_cell(original, "session.cluster()"))
    assert "mean_loss" in clusters and "representatives" in clusters, clusters[:500]
    health = html_outputs(find_cell(original, "session.health()"))
    assert "gradients" in health and "learning rate" in health, health[:500]

    magic_cell = find_cell(original, "%onthefly status")
    assert "digits-demo/baseline" in output_text(magic_cell), output_text(magic_cell)

    states = nb.metadata["widgets"][WIDGET_STATE]["state"]
    dashboards = [m["state"] for m in states.values()
                  if str(m.get("state", {}).get("_anywidget_id", "")).endswith("Dashboard")]
    assert len(dashboards) == 1, f"expected one Dashboard model in the saved widget state, got {len(dashboards)}"
    run = dashboards[0]["run"]
    assert isinstance(run, dict) and run["project"] == "digits-demo", run
    assert run["run_name"] == "baseline", run
    assert run["state"] == "finished", f"saved dashboard state is not the final one: {run['state']}"


def test_a_failing_run_fails_its_cell_but_not_the_kernel():
    cells = [
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        import onthefly

        torch.manual_seed(0)
        data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
        model = torch.nn.Linear(4, 2)
        trainer = onthefly.Trainer(project="p", run_name="r", max_epochs=1)
        try:
            trainer.fit(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                        loss_fn=lambda out, y: torch.nn.functional.cross_entropy(out, y, reduction="none")[:1],
                        train_loader=DataLoader(data, batch_size=8))
            print("no exception")
        except Exception as exc:
            print(type(exc).__name__)
        print(trainer.session.status)
        """,
        "print(1+1)",
    ]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(src).strip()) for src in cells]
    execute(nb, timeout=90)

    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)
    waited = output_text(nb.cells[0])
    assert waited.endswith("PerSampleLossError\nfailed\n"), waited  # after the dashboard's text
    assert output_text(nb.cells[1]).strip() == "2", "the kernel did not survive the failed run"


def html_outputs(cell) -> str:
    return "".join(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))


def test_magics_steer_slice_and_export_in_a_kernel(tmp_path):
    """The kernel side of %onthefly, as JupyterLab and VS Code's Interactive Window run it."""
    export = tmp_path / "hard.parquet"
    cells = [
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        import onthefly

        torch.manual_seed(0)
        data = TensorDataset(torch.randn(256, 4), torch.randint(0, 3, (256,)))
        model = torch.nn.Linear(4, 3)
        session = onthefly.Trainer(project="magic", run_name="m", max_epochs=500, background=True).fit(
            model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=torch.nn.CrossEntropyLoss(), train_loader=DataLoader(data, batch_size=16, shuffle=True),
        )
        %load_ext onthefly
        """,
        "%onthefly pause",
        "%onthefly step 7",
        '%onthefly slice "loss > q50 and seen > 0"',
        f'%onthefly export {export} "loss > q50"',
        'print(get_ipython().find_line_magic("onthefly").__doc__)  # what %onthefly? shows',
        "%onthefly health",
        "_ = session.select([9, 1, 5])  # what a lasso on the sample map does",
        "%onthefly slice selection",
        "%onthefly plans",
        "%onthefly determinism",
        f"%onthefly save {tmp_path / 'magic.zip'}",
        f"%onthefly report {tmp_path / 'magic.html'}",
        f"%onthefly load {tmp_path / 'magic.zip'}",
        f"%onthefly overlay {tmp_path / 'magic.zip'}",
        "%onthefly stop",
        "%onthefly nonsense",
    ]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(src).strip()) for src in cells]
    execute(nb, timeout=90)

    paused, stepped = output_text(nb.cells[1]), output_text(nb.cells[2])
    assert "magic/m: paused" in paused, paused
    step = int(paused.split("step ")[1].split("/")[0])
    assert f"paused, step {step + 7}/" in stepped, stepped
    table = html_outputs(nb.cells[3])
    assert "<table" in table and "loss" in table
    assert f"wrote {export}" in output_text(nb.cells[4]) and export.stat().st_size > 0
    help_text = json.dumps(nb.cells[5].outputs)
    assert "export PATH" in help_text and "step N" in help_text and "health" in help_text, help_text[:500]
    health = html_outputs(nb.cells[6])
    assert "gradients" in health and "pass" in health, health[:500]
    selected = html_outputs(nb.cells[8])
    assert selected.count("<tr") == 4 and all(f"<td>{i}</td>" in selected for i in (1, 5, 9)), selected[:800]
    assert "evidence" in html_outputs(nb.cells[9])
    assert output_text(nb.cells[10]).startswith("deterministic: step replayed twice")
    assert f"wrote {tmp_path / 'magic.zip'}" in output_text(nb.cells[11]) and (tmp_path / "magic.zip").stat().st_size
    assert "magic / m" in (tmp_path / "magic.html").read_text() and "wrote" in output_text(nb.cells[12])
    loaded = json.dumps(nb.cells[13].outputs)
    assert "SavedRun magic/m" in loaded and "read-only" in loaded, loaded[:500]
    assert "overlaid magic/m" in output_text(nb.cells[14])
    assert "magic/m: stopped" in output_text(nb.cells[15])
    errors = error_outputs(nb)
    assert len(errors) == 1 and "unknown %onthefly command 'nonsense'" in errors[0], errors


def test_hard_slices_notebook_finds_the_planted_subgroup(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "hard_slices.ipynb", as_version=4)
    execute(nb, path=tmp_path)  # the notebook's export lands in tmp_path
    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)
    report = output_text(find_cell(nb.cells, "precision {found.mean()"))
    precision = float(report.split("precision ")[1].split(",")[0])
    recall = float(report.split("recall ")[1].split(" ")[0])
    assert precision >= 0.8 and recall >= 0.8, report
    plots = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) == 2, "the two session.figure cells should render plotly figures"
    assert (tmp_path / "hard_cluster.parquet").exists()


def test_fork_merge_notebook_measures_merges_and_gate_against_matched_compute(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "fork_merge.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'import json; print("FACTS " + json.dumps(held_out.to_dict(orient="index")))'))
    execute(nb, path=tmp_path, timeout=300)  # the exported mixture lands in tmp_path
    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)
    facts = json.loads(output_text(nb.cells[-1]).split("FACTS ", 1)[1])
    baseline = facts["baseline (matched compute)"]
    assert facts["swa merge"]["subgroup loss"] < 0.8 * baseline["subgroup loss"], facts
    assert facts["swa merge"]["validation accuracy"] >= baseline["validation accuracy"] - 0.01, facts
    assert facts["gate"]["subgroup loss"] < 0.8 * facts["generalist"]["subgroup loss"], facts
    assert "baseline (fork + router steps)" in facts, "the gate is shown beside its own matched baseline"
    assert "same predictions after reload: True" in output_text(find_cell(nb.cells, "gate.export("))
    assert (tmp_path / "mixture" / "mixture.pt2").exists()


def test_lightning_notebook_runs_the_reference_snippet_with_a_dashboard(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "lightning.ipynb", as_version=4)
    current = next(i for i, c in enumerate(nb.cells) if "Session.current()" in c.source)
    nb.cells.insert(current + 1, nbformat.v4.new_code_cell("first = session"))  # before the next fit replaces it
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\n"
        "print('FACTS ' + json.dumps({'first': [first.status, first.global_step, first.epoch,\n"
        "    len(first.metrics['validation'])], 'second': [session.status, session.global_step]}))"))
    execute(nb, path=tmp_path, timeout=180)
    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)
    snippet = find_cell(nb.cells, "attach_lightning(\n")
    assert any("ontheflyFrozen" in o.get("data", {}).get("text/html", "") for o in snippet.outputs), \
        "the snippet displayed the dashboard, which became the frozen final one when its fit ended"
    facts = json.loads(output_text(nb.cells[-1]).split("FACTS ", 1)[1])
    assert facts["first"] == ["finished", 3 * 32, 3, 3], facts
    assert facts["second"][0] == "stopped", facts
    stepped = output_text(find_cell(nb.cells, "%onthefly step 5"))
    assert "paused" in stepped, stepped
    assert "<table" in html_outputs(find_cell(nb.cells, 'session.slice("loss > q95")'))


def test_own_loop_notebook_tracks_the_users_loop(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "own_loop.ipynb", as_version=4)
    execute(nb, path=tmp_path, timeout=180)
    errors = error_outputs(nb)
    assert not errors, "cells raised:\n" + "\n\n".join(errors)
    ran = output_text(find_cell(nb.cells, "with session.track() as run:"))
    assert "own-loop: finished, step 512/512" in ran, ran
    tail = output_text(find_cell(nb.cells, 'slice("loss > q95")'))
    found = int(tail.split("; ")[1].split()[0])
    assert found >= 150, tail  # most of the flipped labels are in the tail
