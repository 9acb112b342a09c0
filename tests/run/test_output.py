"""What the process prints while a run is live reaches the dashboard's output panel, and still
reaches the stream it was printed to; the streams are put back when the run ends."""

from __future__ import annotations

import sys
import warnings

import torch
from conftest import classification_data, small_model
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.dashboard.contract import check_traits
from onthefly_nb.run.output import LINES_KEPT, OutputLog


class ChattyLoss(nn.Module):
    """Cross-entropy that prints every 10th batch and warns once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls % 10 == 0:
            print(f"batch {self.calls}", end="")
            print(" done")
        if self.calls == 5:
            warnings.warn("a warning from the loss", UserWarning, stacklevel=2)
        return nn.functional.cross_entropy(outputs, targets)


def test_prints_and_warnings_of_the_run_reach_the_output_trait_and_their_own_stream(capsys):
    stdout, stderr = sys.stdout, sys.stderr
    model = small_model()
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.1), ChattyLoss(),
                      DataLoader(classification_data(320), batch_size=16), max_epochs=1, recluster_seconds=None,
                      health_every=None)
    with warnings.catch_warnings():  # pytest records warnings; print them to stderr, as Python does by default
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        session.run()
    assert sys.stdout is stdout and sys.stderr is stderr, "the streams are put back at the end"
    printed = capsys.readouterr()
    assert "batch 10 done" in printed.out and "a warning from the loss" in printed.err
    traits = session.parts.view.values()
    check_traits(traits)
    lines = [(line["stream"], line["text"]) for line in traits["output"]]
    assert ("stdout", "batch 10 done") in lines and ("stdout", "batch 20 done") in lines
    assert any(stream == "stderr" and "UserWarning: a warning from the loss" in text for stream, text in lines)
    print("after the run")
    assert "after the run" not in [line["text"] for line in session.parts.view.values()["output"]]


def test_the_log_keeps_the_latest_lines_and_what_a_redrawn_line_shows_last():
    log = OutputLog()
    log.write("stdout", "progress 10%\rprogress 50%\rprogress 100%\n")
    for i in range(LINES_KEPT + 5):
        log.write("stdout", f"line {i}\n")
    log.write("stderr", "half a line")
    texts = [line["text"] for line in log.lines()]
    assert len(texts) == LINES_KEPT and texts[-1] == f"line {LINES_KEPT + 4}" and "progress 100%" not in texts
    log.write("stderr", ", then the rest\n")
    assert log.lines()[-1] == {**log.lines()[-1], "stream": "stderr", "text": "half a line, then the rest"}
    fresh = OutputLog()
    fresh.write("stdout", "progress 10%\rprogress 100%\n")
    assert [line["text"] for line in fresh.lines()] == ["progress 100%"]
