"""torchrun launches on CPU (gloo, 2 ranks): the per-sample store equals one process training on
the same global batches, and Pause from rank 0 pauses every rank (tests/ddp_run.py runs them)."""

from __future__ import annotations

import json
import socket
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


def launch_nodes(mode: str, out: Path) -> None:
    """Two "nodes" on this machine: two torchrun launches of one rank each, meeting on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
                               str(SCRIPT), mode, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=240) for node in nodes]
    finally:
        for node in nodes:  # one node failing leaves the other waiting for it
            node.kill()
    for rank, (node, (stdout, stderr)) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"{mode}, node {rank} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"


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


def test_two_nodes_keep_the_store_one_process_keeps_and_pause_reaches_both(stores, tmp_path):
    single, _, _ = stores
    launch_nodes("ddp", tmp_path)
    nodes = np.load(tmp_path / "ddp.npy")
    exact = [COLUMNS.index(c) for c in ("seen", "last_step", "label")]
    np.testing.assert_array_equal(nodes[:, exact], single[:, exact])
    close = [COLUMNS.index(c) for c in ("loss", "loss_mean", "margin", "hardness")]
    np.testing.assert_allclose(nodes[:, close], single[:, close], rtol=1e-4, atol=1e-5)
    launch_nodes("pause", tmp_path)
    facts = json.loads((tmp_path / "pause.json").read_text())
    assert facts["rank1_before"] == facts["rank1_after"] == {"step": facts["rank0_paused_at"], "status": "paused"}
