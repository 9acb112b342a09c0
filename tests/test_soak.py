"""A bounded soak: a run under control storms, fuzzed dashboard messages and frames, concurrent
slices and exports, then a script killed (-9) mid-export. Run alone with ``pytest -m soak``;
``SOAK_SECONDS`` sets how long the storm lasts (30 by default).

Afterwards: nothing hung, no optimizer step ran while the run was paused, the events are numbered
without a gap, every export that finished loads, and no temp file or loader worker is left."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import ROOT, classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from onthefly_nb import Session
from onthefly_nb.dashboard.commands import receive
from onthefly_nb.errors import OnTheFlyError

pytestmark = pytest.mark.soak
SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))


class CountingSteps:
    """Wraps ``optimizer.step``: how many steps ran, and how many while the session said paused."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps = self.while_paused = 0
        self.session: Session | None = None
        original = optimizer.step

        def step(*args, **kwargs):
            self.steps += 1
            if self.session is not None and self.session.status == "paused":
                self.while_paused += 1
            return original(*args, **kwargs)

        optimizer.step = step


def random_content(rng: random.Random) -> object:
    """A dashboard message, well-formed or not."""
    pick = rng.random()
    if pick < 0.4:
        name = rng.choice(["pause", "resume", "step", "stop", "validate", "health", "compare", "export", "bogus"])
        if name == "stop":
            name = "pause"  # the storm keeps the run alive; stopping is the end of the test
        content = {"type": "command", "name": name}
        if name == "step":
            content["n"] = rng.choice([1, 5, -1, 0, "x", 10**9])
        return content
    if pick < 0.6:
        return {"type": "plan", "id": rng.choice(["plan-1", "plan-999", "", 7]),
                "decision": rng.choice(["approve", "reject", "maybe"]),
                "params": rng.choice([{}, {"wait": 1}, {"factor": 2.0}, {"x": "y"}, []])}
    if pick < 0.8:
        return {"type": "select", "n": rng.randint(-2, 50)}
    return rng.choice([None, [], "pause", 3, {"type": None}, {"type": "command"}, {"a": [[[]]]}])


def storm(session: Session, rng: random.Random, until: float, errors: list[BaseException]) -> None:
    """Random control calls from one thread; refusals (OnTheFlyError, timeouts) are fine."""
    calls = [lambda: session.pause(timeout=5), session.resume, lambda: session.step(rng.randint(1, 5), wait=False),
             lambda: session.validate(wait=False), lambda: session.health(wait=False), session.resume]
    while time.monotonic() < until:
        try:
            rng.choice(calls)()
        except (OnTheFlyError, TimeoutError):
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        time.sleep(rng.random() * 0.02)


def fuzz_messages(session: Session, rng: random.Random, until: float, errors: list[BaseException]) -> None:
    while time.monotonic() < until:
        try:
            receive(session, random_content(rng), [])
        except BaseException as exc:  # noqa: BLE001 - receive must never raise
            errors.append(exc)
        time.sleep(0.002)


def fuzz_frames(url: str, rng: random.Random, until: float, errors: list[BaseException]) -> None:
    while time.monotonic() < until:
        try:
            with connect(url, max_size=None, open_timeout=10) as socket:
                for _ in range(50):
                    body = json.dumps({"type": "message", "content": random_content(rng), "buffers": []}).encode()
                    frame = struct.pack("<I", len(body)) + body if rng.random() < 0.8 else rng.randbytes(40)
                    socket.send(frame)
        except ConnectionClosed:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)


def slices_and_exports(session: Session, folder: Path, rng: random.Random, until: float,
                       exported: list, errors: list[BaseException]) -> None:
    n = 0
    while time.monotonic() < until:
        try:
            frame = session.slice("loss > q50")
            assert (frame["loss"] > frame["loss"].quantile(0) - 1).all()
            session.export_slice(str(folder / f"slice-{n % 3}.parquet"), "loss > q75")
            if n % 5 == 0:
                exported.append((folder / f"session-{n}.zip", session.export(folder / f"session-{n}.zip",
                                                                           wait=False)))
        except (OnTheFlyError, TimeoutError):
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        n += 1
        time.sleep(rng.random() * 0.1)


def test_a_run_under_storms_keeps_every_promise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the fuzzed Export commands save beside the "notebook"
    data = classification_data(4096, seed=5)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    counter = CountingSteps(optimizer)
    workers_before = len(psutil.Process().children(recursive=True))
    session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(data, batch_size=32, shuffle=True,
                      num_workers=2, persistent_workers=True), DataLoader(data, batch_size=512),
                      max_epochs=100_000, recluster_seconds=2.0, health_every=200, run_name="soak")
    counter.session = session
    bridge = session.bridge(port=0)
    session.start()
    errors: list[BaseException] = []
    exported: list = []
    until = time.monotonic() + SECONDS
    threads = [threading.Thread(target=storm, args=(session, random.Random(i), until, errors)) for i in range(4)]
    threads += [threading.Thread(target=fuzz_messages, args=(session, random.Random(10), until, errors)),
                threading.Thread(target=fuzz_frames, args=(bridge.websocket_url, random.Random(11), until, errors)),
                threading.Thread(target=slices_and_exports,
                                 args=(session, tmp_path, random.Random(12), until, exported, errors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    hung = [t.name for t in threads if t.is_alive()]
    session.resume()
    session.stop(timeout=60)
    bridge.stop()
    assert not hung, f"threads still running after the storm: {hung}"
    assert not errors, errors[:3]
    assert session.status == "stopped" and session.global_step > 0
    assert counter.while_paused == 0, f"{counter.while_paused} optimizer steps ran while paused"
    seqs = [e["seq"] for e in session.events]
    assert seqs == list(range(len(seqs))), "events are numbered without a gap"
    finished = [(path, future) for path, future in exported if future.done() and future.exception() is None]
    assert finished, "at least one export finished during the storm"
    for path, _ in finished[-3:]:
        restored = small_model()
        loaded = Session.load(path, model=restored, optimizer=torch.optim.Adam(restored.parameters(), lr=1e-2),
                              loss_fn=nn.CrossEntropyLoss(), train_loader=DataLoader(data, batch_size=32))
        assert loaded.global_step > 0
    assert not list(tmp_path.glob(".*tmp*")), "no temp file is left"
    deadline = time.monotonic() + 20
    while len(psutil.Process().children(recursive=True)) > workers_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(psutil.Process().children(recursive=True)) == workers_before, "no loader worker is left"
    print(f"\nsoak: {SECONDS:.0f} s, {session.global_step} steps, {len(seqs)} events, "
          f"{sum(e['kind'] == 'rejected_message' for e in session.events)} refusal events, "
          f"{len(finished)} of {len(exported)} exports finished")


KILLED = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from onthefly_nb import Session
x = torch.randn(300_000, 16); y = (x[:, 0] > 0).long()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                  DataLoader(TensorDataset(x, y), batch_size=64), max_epochs=1000, recluster_seconds=None)
session.start()
session.wait_for(step=10)
session.export("run.zip")
print("first export written", flush=True)
while True:
    session.export("run.zip")
"""


def test_a_script_killed_mid_export_leaves_the_last_archive_whole(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(KILLED))
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert process.stdout.readline().strip() == "first export written"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".run.zip.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.005)  # kill it while the next export is being written
        assert list(tmp_path.glob(".run.zip.*.tmp")), "caught an export in the middle"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    restored = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    loaded = Session.load(tmp_path / "run.zip", model=restored, optimizer=torch.optim.SGD(restored.parameters(),
                          lr=0.1), loss_fn=nn.CrossEntropyLoss(),
                          train_loader=DataLoader(torch.utils.data.TensorDataset(torch.randn(300_000, 16),
                                                                                 torch.zeros(300_000).long()),
                                                  batch_size=64))
    assert loaded.global_step >= 10
    loaded.export(tmp_path / "run.zip")  # the next write there sweeps what the killed one left
    assert not list(tmp_path.glob(".run.zip.*")), "the dead writer's temp file is swept"
