"""What training with onthefly_nb costs in a notebook, measured as a user compares it: in a real
Jupyter kernel, the loop a user writes in a cell against ``quickstart(...)`` with its dashboard
displayed (and ``Session.start()``, ``Trainer(...).fit(...)`` which blocks, and a cell that waits
with ``session.wait()``), interleaved round by round in the same kernel, on the reference
quickstart's model and data. The facade trains with the reference's semantics (gradients clipped to
1.0), so its runs are compared with the user's loop that clips too; ``Session`` with the plain one.

While a run trains between cells the bench polls it with a tiny cell every half second, as a
user looking at the notebook would run cells; the time per step of a run is its ``started`` to
``finished`` events over its steps, the time per step of the user's loop is measured in its cell.

    .venv/bin/python bench/notebook.py [--rounds 5] [--epochs 40] [--device cuda] [--model conv --batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

SETUP = """
import json, time, torch
from torch import nn
from torch.utils.data import DataLoader
from onthefly import Trainer, quickstart
from onthefly_nb import Session
from IPython.display import display
import sys
sys.path.insert(0, {bench!r})
from problems import make_problem  # bench/problems.py
device = torch.device({device!r})
ds, _ = make_problem({model!r}, 4096)
def model_and_optimizer():
    model = make_problem({model!r}, 1)[1].to(device)  # seeded: the same weights every call
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)
def per_step(session):
    times = {{e["kind"]: e["time"] for e in session.events}}
    return (times["finished"] - times["started"]) / session.global_step * 1e6
"""
PLAIN = """
model, optimizer = model_and_optimizer()
loss_fn = nn.CrossEntropyLoss()
loader = DataLoader(ds, batch_size={batch}, shuffle=True)
steps, start = 0, time.perf_counter()
for epoch in range({epochs}):
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        if {clip}:  # the reference's semantics: gradients clipped to 1.0
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
if device.type == "cuda":
    torch.cuda.synchronize()
print(json.dumps((time.perf_counter() - start) / steps * 1e6))
"""
SESSION = """
model, optimizer = model_and_optimizer()
session = Session(model, optimizer, nn.CrossEntropyLoss(), DataLoader(ds, batch_size={batch}, shuffle=True),
                  max_epochs={epochs}, project="bench", run_name="session")
display(session.dashboard())
session.start()
"""
QUICKSTART = """
model, optimizer = model_and_optimizer()
session = quickstart(project="bench", run_name="quickstart", model=model, optimizer=optimizer,
                     loss_fn=nn.CrossEntropyLoss(), train_loader=DataLoader(ds, batch_size={batch}, shuffle=True),
                     max_epochs={epochs})
"""
TRAINER = """
model, optimizer = model_and_optimizer()
session = Trainer(project="bench", run_name="trainer", max_epochs={epochs}).fit(
    model=model, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(),
    train_loader=DataLoader(ds, batch_size={batch}, shuffle=True))
"""
WAITED = QUICKSTART + "session.wait()\n"
POLL = "print(json.dumps(session.done))"
RESULT = "print(json.dumps(per_step(session)))"


def run(kc, code: str, timeout: float = 600) -> str:
    """Execute ``code`` in the kernel; its stdout (raises with the traceback on an error)."""
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


def session_per_step(kc, code: str) -> float:
    run(kc, code)
    while not json.loads(run(kc, POLL)):
        time.sleep(0.5)
    return json.loads(run(kc, RESULT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=("mlp", "conv"), default="mlp",
                        help="mlp (the reference quickstart) or conv")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run(kc, SETUP.format(device=args.device, model=args.model, bench=str(Path(__file__).resolve().parent)))
        pairs = {"Session.start() + dashboard": (SESSION, False), "quickstart + dashboard": (QUICKSTART, True),
                 "Trainer.fit + dashboard (blocks)": (TRAINER, True),
                 "quickstart, then session.wait()": (WAITED, True)}
        loops = {False: "user's loop in a cell", True: "user's loop with clipping (the reference's semantics)"}
        plain: dict[bool, list[float]] = {False: [], True: []}
        times: dict[str, list[float]] = {name: [] for name in pairs}
        for round_ in range(args.rounds + 1):  # round 0 warms up and is discarded
            base = {clip: json.loads(run(kc, PLAIN.format(epochs=args.epochs, clip=clip, batch=args.batch_size)))
                    for clip in loops}
            measured = {name: session_per_step(kc, code.format(epochs=args.epochs, batch=args.batch_size))
                        for name, (code, _) in pairs.items()}
            if round_:
                for clip, value in base.items():
                    plain[clip].append(value)
                for name, value in measured.items():
                    times[name].append(value / base[pairs[name][1]])  # ratios to the loop run beside them
        print(f"kernel, {args.model}, device {args.device}, 4096 samples, batch {args.batch_size}, "
              f"{args.epochs} epochs x {args.rounds} rounds")
        for clip, label in loops.items():
            print(f"  {label:54s} median {statistics.median(plain[clip]):8.1f} us/step")
        for name, ratios in times.items():
            against = "with clipping" if pairs[name][1] else "plain"
            print(f"  {name:34s} ratio {statistics.median(ratios):.3f}x against the loop {against} "
                  f"(median of per-round ratios; best {min(ratios):.3f}x)")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
