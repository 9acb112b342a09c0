"""Training in a real Jupyter kernel: on the main thread between cells (the speed of the user's own
loop), in the background while a cell runs, to the same weights either way; cells answer quickly;
an interrupt pauses; session.wait() drives the run to its end."""

from __future__ import annotations

import json
import statistics
import time

import pytest
from jupyter_client.manager import start_new_kernel
from jupyter_helpers import run_in_kernel

SETUP = """
import json, threading, time, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly_nb import Session
g = torch.Generator().manual_seed(0)
X = torch.randn(2048, 20, generator=g)
y = (X[:, :5].sum(1) > 0).long()
def session(epochs, name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
    return Session(model, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(), loader,
                   max_epochs=epochs, run_name=name, recluster_seconds=None)
def weights(s):
    return [round(float(p.detach().double().sum()), 12) for p in s.model.parameters()]
"""


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run_in_kernel(kc, SETUP)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def ask(kc, expression: str, timeout: float = 30.0):
    return json.loads(run_in_kernel(kc, f"print(json.dumps({expression}))", timeout=timeout))


def wait_until(kc, expression: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ask(kc, expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.2)


def test_between_cells_the_main_thread_trains_to_the_same_weights(kernel):
    _, kc = kernel
    run_in_kernel(kc, "s = session(6, 'kernel'); s.start()")
    wait_until(kc, "s.done")
    driver = ask(kc, "[s.status, s.global_step, s.parts.lifecycle.kernel.steps_on_main]")
    assert driver[:2] == ["finished", 6 * 64] and driver[2] > 0, "the main thread trained"
    assert ask(kc, "weights(s) == weights(session(6, 'script').run())"), "thread changes altered the training"
    assert ask(kc, "[t.name for t in threading.enumerate() if t.name.startswith('onthefly-train')]") == []


def test_two_runs_take_turns_on_the_main_thread(kernel):
    _, kc = kernel
    run_in_kernel(kc, "a = session(4, 'a'); b = session(4, 'b'); a.start(); b.start()")
    wait_until(kc, "a.done and b.done")
    turns = ask(kc, "[s.status for s in (a, b)] + [s.parts.lifecycle.kernel.steps_on_main for s in (a, b)]")
    assert turns[:2] == ["finished", "finished"] and min(turns[2:]) > 0, turns


def test_a_cell_that_sleeps_does_not_stall_training_and_cells_answer_quickly(kernel):
    _, kc = kernel
    run_in_kernel(kc, "s = session(10_000, 'long'); s.start()")
    moved = ask(kc, "(lambda before: (time.sleep(2), s.global_step - before)[1])(s.global_step)")
    assert moved > 20, "training went on while a cell slept"
    latencies = []
    for _ in range(30):
        started = time.perf_counter()
        run_in_kernel(kc, "1 + 1")
        latencies.append(time.perf_counter() - started)
    assert statistics.quantiles(latencies, n=20)[-1] < 0.1, f"trivial cells took {sorted(latencies)[-5:]}"
    before = ask(kc, "s.global_step")
    time.sleep(1)
    assert ask(kc, "s.global_step") > before, "training goes on between cells"
    run_in_kernel(kc, "s.stop()")
    assert ask(kc, "s.status") == "stopped"


def test_an_interrupt_pauses_the_run_and_says_so(kernel):
    km, kc = kernel
    run_in_kernel(kc, "s = session(10_000, 'interrupted'); s.start()")
    time.sleep(0.5)
    km.interrupt_kernel()
    wait_until(kc, "s.status == 'paused'", timeout=30)
    assert ask(kc, "[e['kind'] for e in s.events if e['kind'] in ('interrupted', 'paused')]")[:2] == [
        "interrupted", "paused"]
    step = ask(kc, "s.global_step")
    time.sleep(0.5)
    assert ask(kc, "s.global_step") == step, "a paused run does not step"
    run_in_kernel(kc, "s.resume()")
    wait_until(kc, f"s.global_step > {step}")
    run_in_kernel(kc, "s.stop()")


def test_wait_drives_the_run_to_its_end_and_an_interrupt_pauses_it(kernel):
    km, kc = kernel
    run_in_kernel(kc, "s = session(4, 'waited'); s.start(); s.wait()", timeout=120)
    assert ask(kc, "[s.status, s.global_step]") == ["finished", 4 * 64]
    msg_id = kc.execute("s = session(10_000, 'waiting'); s.start(); s.wait()")
    time.sleep(1.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    wait_until(kc, "s.status == 'paused'", timeout=30)
    run_in_kernel(kc, "s.stop()")
    assert ask(kc, "s.status") == "stopped"
