"""In a plain script, the reference API blocks until training ends and returns the finished session."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import threading, time, torch, torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset
    from onthefly import Trainer

    X = torch.randn(512, 20)
    y = (X[:, :5].sum(dim=1) > 0).long()
    ds = TensorDataset(X, y)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 2))
    trainer = Trainer(project="demo", run_name="script", max_epochs=3)
    session = trainer.fit(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                          loss_fn={loss}, train_loader=DataLoader(ds, batch_size=32, shuffle=True),
                          val_loader=DataLoader(ds, batch_size=128))
    time.sleep(1.5)  # the dashboard's page is served a moment past the end, for its final state
    print("status", session.status, "step", session.global_step, "threads", threading.active_count())
    print("val", round(session.metrics["validation"][-1]["accuracy"], 2))
""")


def run_script(loss: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(loss=loss)], capture_output=True,
                          text=True, timeout=120)


def test_fit_blocks_in_a_script_and_returns_the_finished_session():
    result = run_script("nn.CrossEntropyLoss()")
    assert result.returncode == 0, result.stderr
    assert "status finished step 48 threads 1" in result.stdout, "no thread is left behind"
    assert "onthefly dashboard: http://127.0.0.1:" in result.stdout and "?token=" in result.stdout
    accuracy = float(result.stdout.split("val ")[1])
    assert accuracy > 0.8


def test_a_failing_run_exits_the_script_with_the_error():
    result = run_script("lambda out, y: nn.functional.cross_entropy(out, y, reduction='none')[:1]")
    assert result.returncode == 1
    assert "PerSampleLossError" in result.stderr and "reduction='none'" in result.stderr
    assert "status" not in result.stdout
