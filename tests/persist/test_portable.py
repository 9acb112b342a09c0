"""Exporting a session and continuing it in a fresh process, bit for bit; refusing bad archives."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import planted_data
from torch import nn
from torch.utils.data import DataLoader

from onthefly_nb import Session
from onthefly_nb.errors import ArchiveError, ConfigurationError, StateError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("resume_run.py")


def run_script(mode: str, out: Path, workers: int, persistent: bool, case: str = "plain") -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), mode, str(out), str(workers), str(int(persistent)), case],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, f"{mode} failed:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize(("persistent", "case", "modes"), [
    (False, "plain", ("full", "part", "resume")),
    (True, "plain", ("full", "part", "resume")),
    (False, "reweight", ("full", "part", "reexport", "resume")),
], ids=["workers", "persistent-workers", "reweighted-and-exported-twice"])
def test_export_then_import_in_a_fresh_process_continues_bit_for_bit(tmp_path, persistent, case, modes):
    """Shuffled batches from 2 loader workers, dropout, Adam and a StepLR: training to step 130
    in one go equals training to 45 (part-way through an epoch), exporting, importing in a new
    process and training on to 130: weights, optimizer state and per-sample store, every bit. The
    last case reweights the sampler mid-epoch and exports the loaded session again before its
    first step."""
    for mode in modes:
        run_script(mode, tmp_path, workers=2, persistent=persistent, case=case)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert (resumed["step"], resumed["epoch"]) == (full["step"], full["epoch"]) == (130, 5)
    for name, value in full["model"].items():
        assert torch.equal(value, resumed["model"][name]), f"weights differ: {name}"
    assert full["optimizer"]["param_groups"] == resumed["optimizer"]["param_groups"]
    for param, state in full["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, resumed["optimizer"]["state"][param][key]), f"optimizer {param}.{key} differs"
    differ = (full["store"] != resumed["store"]).any(1).sum().item()
    assert differ == 0, f"the per-sample store differs in {differ} rows"
    kinds = resumed["events"]
    assert kinds.index("imported") > kinds.index("paused"), "the saved events come back, then the import"
    assert kinds.count("epoch_end") == full["events"].count("epoch_end")


def small_session(**kwargs) -> Session:
    data, _ = planted_data(n=1200, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    return Session(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=50, shuffle=True), DataLoader(data, batch_size=400),
                   max_epochs=50, recluster_seconds=None, **kwargs)


def rebuild(**kwargs) -> dict:
    s = small_session()
    return {"model": s.model, "optimizer": s.optimizer, "loss_fn": s.loss_fn, "train_loader": s.train_loader,
            "val_loader": s.val_loader, **kwargs}


def test_experts_merges_plans_and_selection_come_back(tmp_path):
    session = small_session()
    session.start(paused=True)
    session.step(60)
    try:
        session.select([3, 5, 8])
        expert = session.fork("loss > q95", budget=20, name="tail")
        merge = session.merge(["tail"])
        session.reweight([1, 2, 3], factor=4)
        session.health()
        path = session.export(tmp_path / "run.zip")
    finally:
        session.stop()
    exported = next(e for e in session.events if e["kind"] == "exported")
    assert exported["path"] == path and exported["pause_ms"] >= 0

    loaded = Session.load(path, **rebuild())
    assert loaded.global_step == 60 and loaded.status == "idle"
    assert loaded.selection.tolist() == [3, 5, 8]
    back = loaded.experts["tail"]
    assert back.losses == expert.losses and back.slice == "loss > q95" and back.state == "trained"
    for name, value in expert.model.state_dict().items():
        assert torch.equal(value, back.model.state_dict()[name])
    assert np.array_equal(back.indices, expert.indices)
    assert [(n["id"], n["kind"], n["state"]) for n in loaded.lineage[1:]] == \
        [(n["id"], n["kind"], n["state"]) for n in session.lineage[1:]]
    assert loaded.parts.merges.merges[merge.name].after == merge.after
    assert loaded.parts.run.loop.sampler.weights[[1, 2, 3]].tolist() == [4.0, 4.0, 4.0]
    assert loaded.health_report == session.health_report
    statuses = {p["id"]: p["status"] for p in loaded.plans}
    for plan in session.plans:
        expected = "expired" if plan["status"] == "proposed" else plan["status"]
        assert statuses[plan["id"]] == expected
    loaded.start(paused=True)
    loaded.step(5)
    assert loaded.global_step == 65
    loaded.stop()


def test_loading_with_objects_that_do_not_match_says_what_differs(tmp_path):
    session = small_session()
    session.start(paused=True)
    session.step(3)
    path = session.export(tmp_path / "run.zip")
    session.stop()
    with pytest.raises(ConfigurationError, match="Session.load needs model, optimizer, loss_fn, train_loader"):
        Session.load(path)
    wide = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
    with pytest.raises(ConfigurationError, match=r"model built now does not match the saved one.*other shapes \['0.w"):
        Session.load(path, **rebuild(model=wide, optimizer=torch.optim.SGD(wide.parameters(), lr=0.1)))
    data, _ = planted_data(n=600, seed=0)
    with pytest.raises(ConfigurationError, match="trained on 1200 samples but train_loader's dataset has 600"):
        Session.load(path, **rebuild(train_loader=DataLoader(data, batch_size=50)))
    with pytest.raises(ConfigurationError, match="the folder .* does not exist"):
        session.export(tmp_path / "missing" / "run.zip")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="it exists; name a new folder or a .zip file"):
        session.export(tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    inside = small_session()
    inside.start(paused=True)
    asked = inside.parts.run.controller.submit(lambda: inside.export(tmp_path / "inside.zip"))  # on the training thread
    with pytest.raises(StateError, match="would wait for itself"):
        asked.result(timeout=30)
    inside.stop()
    made = Session.load(path, factory=lambda config: rebuild())
    assert made.global_step == 3 and made.run_name == session.run_name
    same = (made.parts.checkup.every, made.settings.max_epochs) == (session.parts.checkup.every, 50)
    assert same, "settings come back"


def rewrite_member(path: Path, name: str, data: bytes, fix_manifest: bool) -> None:
    """Replace one member of a zip archive; with ``fix_manifest`` its size and checksum are updated too."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = data
    if fix_manifest:
        manifest = json.loads(members["manifest.json"])
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_bad_archives_are_refused_before_anything_runs(tmp_path):
    session = small_session()
    session.start(paused=True)
    session.step(3)
    good = Path(session.export(tmp_path / "run.zip"))
    session.stop()

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated"):
        Session.load(truncated, **rebuild())

    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        weights = bytearray(archive.read("tensors/model.safetensors"))
    weights[-1] ^= 0xFF
    rewrite_member(tampered, "tensors/model.safetensors", bytes(weights), fix_manifest=False)
    with pytest.raises(ArchiveError, match="tensors/model.safetensors"):
        Session.load(tampered, **rebuild())

    newer = tmp_path / "newer.zip"
    newer.write_bytes(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    manifest["format_version"] += 1
    rewrite_member(newer, "manifest.json", json.dumps(manifest).encode(), fix_manifest=False)
    with pytest.raises(ArchiveError, match="newer"):
        Session.load(newer, **rebuild())

    marker = tmp_path / "the-payload-ran"
    crafted = tmp_path / "crafted.zip"
    crafted.write_bytes(good.read_bytes())
    rewrite_member(crafted, "states/optimizer.pt", pickle.dumps(_Payload(marker)), fix_manifest=True)
    with pytest.raises(ArchiveError, match="states/optimizer.pt"):
        Session.load(crafted, **rebuild())
    assert not marker.exists(), "unpickling the crafted archive ran its code"
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: unpickled carelessly, it runs
    assert marker.exists()


def test_an_archive_of_another_optimizer_is_refused_at_load(tmp_path):
    session = small_session()  # SGD with momentum
    session.start(paused=True)
    session.step(3)
    path = session.export(tmp_path / "sgd.zip")
    session.stop()
    objects = rebuild()
    adam = torch.optim.Adam(objects["model"].parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="trained with SGD but this optimizer is Adam"):
        Session.load(path, **{**objects, "optimizer": adam})
    config = json.loads(zipfile.ZipFile(path).read("documents/config.json"))
    del config["optimizer"]  # an archive that does not name its optimizer: the state's keys tell
    rewrite_member(Path(path), "documents/config.json", json.dumps(config).encode(), fix_manifest=True)
    with pytest.raises(ConfigurationError, match="saved optimizer state has no .*betas"):
        Session.load(path, **{**objects, "optimizer": adam})


def tampered(good: Path, target: Path, name: str, change) -> Path:
    """A copy of ``good`` whose member ``name`` is changed by ``change(bytes) -> bytes``, manifest re-signed."""
    target.write_bytes(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        data = archive.read(name)
    rewrite_member(target, name, change(data), fix_manifest=True)
    return target


def npz_with(data: bytes, key: str, value: np.ndarray) -> bytes:
    import io

    with np.load(io.BytesIO(data)) as arrays:
        found = dict(arrays)
    found[key] = value
    buffer = io.BytesIO()
    np.savez(buffer, **found)
    return buffer.getvalue()


def json_with(data: bytes, **fields) -> bytes:
    return json.dumps({**json.loads(data), **fields}).encode()


@pytest.mark.parametrize(("name", "change", "names"), [
    ("documents/config.json", lambda d: json_with(d, position="step 3"), "run state"),
    ("documents/config.json", lambda d: json_with(d, clip_norm={"norm": 1}), "clip"),
    ("documents/plans.json", lambda d: b'[{"id": 3}]', "plans state"),
    ("arrays/store.npz", lambda d: npz_with(d, "block", np.zeros((1200, 14), np.float64)), "store is float64"),
    ("arrays/store.npz", lambda d: npz_with(d, "block", np.zeros((12, 14), np.uint32)), "store is uint32 (12, 14)"),
    ("arrays/history.npz", lambda d: npz_with(d, "rows", np.zeros((3, 2))), "history is float64 (3, 2)"),
    ("arrays/selection.npz", lambda d: npz_with(d, "indices", np.array([5000], np.uint32)), "outside the dataset"),
    ("documents/metrics.json", lambda d: b'{"validation": 3}', "metrics's validation must be a list"),
    ("events.jsonl", lambda d: b'{"seq": 0}\n', "events[0] needs the field 'time'"),
], ids=["position", "clip-norm", "plans", "store-dtype", "store-shape", "history", "selection", "metrics", "events"])
def test_a_tampered_but_self_consistent_archive_is_refused_naming_what(tmp_path, name, change, names):
    session = small_session()
    session.start(paused=True)
    session.step(3)
    good = Path(session.export(tmp_path / "run.zip"))
    session.stop()
    bad = tampered(good, tmp_path / "bad.zip", name, change)
    with pytest.raises(ArchiveError, match=re.escape(names)):
        Session.load(bad, **rebuild())
