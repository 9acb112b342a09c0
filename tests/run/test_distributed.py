"""torchrun launches on CPU (gloo, 2 ranks): the per-sample store equals one process training on
the same global batches, and Pause from rank 0 pauses every rank (tests/ddp_run.py runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ddp_run.py")
COLUMNS = ["loss", "loss_mean", "seen", "last_step", "hardness", "margin", "label", "prediction"]


def launch(mode: str, out: Path, ranks: int = 2) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--standalone",
               str(SCRIPT), mode, str(out)] if ranks > 1 else [sys.executable, str(SCRIPT), mode, str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, f"{mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, Path]:
    out = tmp_path_factory.mktemp("ddp")
    launch("single", out, ranks=1)
    launch("ddp", out)
    return np.load(out / "single.npy"), np.load(out / "ddp.npy"), out


def test_two_gloo_ranks_keep_the_store_one_process_keeps(stores):
    single, ddp, out = stores
    assert single.shape == ddp.shape == (512, len(COLUMNS))
    exact = [COLUMNS.index(c) for c in ("seen", "last_step", "label")]
    np.testing.assert_array_equal(ddp[:, exact], single[:, exact])
    assert (single[:, COLUMNS.index("seen")] == 3).all(), "every sample seen once an epoch, from either rank"
    close = [COLUMNS.index(c) for c in ("loss", "loss_mean", "margin", "hardness")]
    np.testing.assert_allclose(ddp[:, close], single[:, close], rtol=1e-4, atol=1e-5)
    finals = [json.loads((out / f"final{r}.json").read_text()) for r in (0, 1)]
    assert finals == [{"step": 48, "status": "finished"}] * 2


def test_pause_from_rank0_pauses_every_rank_and_stop_stops_them_at_one_step(tmp_path):
    launch("pause", tmp_path)
    facts = json.loads((tmp_path / "pause.json").read_text())
    paused_at = facts["rank0_paused_at"]
    assert facts["rank1_before"] == facts["rank1_after"] == {"step": paused_at, "status": "paused"}, facts
    finals = [json.loads((tmp_path / f"final{r}.json").read_text()) for r in (0, 1)]
    assert finals[0] == finals[1] and finals[0]["status"] == "stopped" and finals[0]["step"] >= paused_at + 10
