"""Fork a specialist on a slice, compare it with the run, merge it back (weight averaging)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import planted_data
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from onthefly_nb import Session
from onthefly_nb.data.batches import default_unpack
from onthefly_nb.errors import ConfigurationError, StateError
from onthefly_nb.experts.adapters import fuse, with_adapters
from onthefly_nb.experts.distill import distill
from onthefly_nb.experts.merging import average, fisher_average, fisher_diagonal
from onthefly_nb.experts.workshop import ForkOptions, fork_batches
from onthefly_nb.run.evaluation import evaluate


def test_averaging_identical_models_returns_their_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    twin.load_state_dict(model.state_dict())
    merged = average([model, twin, model])
    for name, value in model.state_dict().items():
        torch.testing.assert_close(merged[name], value, rtol=0, atol=1e-7)


def test_averaging_is_the_elementwise_mean_and_recomputes_batchnorm():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    inputs = [torch.randn(32, 3) for _ in range(4)]
    merged = average([a, b], inputs)
    torch.testing.assert_close(merged["0.weight"], (a[0].weight + b[0].weight).detach() / 2)
    check = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    check.load_state_dict(merged)
    features = check[0](torch.cat(inputs)).detach()
    torch.testing.assert_close(merged["1.running_mean"], features.mean(0), rtol=1e-4, atol=1e-5)
    assert merged["1.running_mean"].abs().sum() > 0, "BatchNorm statistics were recomputed, not averaged zeros"


def test_fisher_diagonal_is_the_mean_squared_per_sample_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    loss = nn.CrossEntropyLoss(reduction="none")
    fisher = fisher_diagonal(model, [(x[:6], y[:6]), (x[6:], y[6:])], loss)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(10):  # the definition, one sample at a time
        model.zero_grad()
        loss(model(x[i:i + 1]), y[i:i + 1]).sum().backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad.pow(2) / 10
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-7)


def test_fisher_weights_favour_the_model_with_more_fisher_information():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.fill_(1.0), b.weight.fill_(3.0), a.bias.fill_(0.0), b.bias.fill_(4.0)
    fishers = [{"weight": torch.tensor([[9.0, 1.0]]), "bias": torch.tensor([0.0])},
               {"weight": torch.tensor([[1.0, 1.0]]), "bias": torch.tensor([0.0])}]
    merged = fisher_average([a, b], fishers)
    torch.testing.assert_close(merged["weight"], torch.tensor([[1.2, 2.0]]))  # (9*1 + 1*3) / 10, plain mean
    torch.testing.assert_close(merged["bias"], torch.tensor([2.0]))  # no information anywhere: the mean


def test_fork_batches_mix_the_slice_with_general_data():
    rows = np.arange(100, 140)
    batches = fork_batches(1000, rows, batch_size=10, budget=12, general_share=0.3, seed=0)
    assert len(batches) == 12 and all(len(b) == 10 for b in batches)
    focused = np.array([b[:7] for b in batches]).ravel()
    assert np.isin(focused, rows).all()
    assert np.bincount(focused - 100, minlength=40).min() >= 2, "slice samples are drawn in shuffled passes"
    with pytest.raises(ConfigurationError, match="general_share must be in"):
        ForkOptions(5, general_share=1.0).check()
    with pytest.raises(ConfigurationError, match="fork mode 'sometimes' is not available; use one of wait, alt"):
        ForkOptions(5, mode="sometimes").check()


def trained_generalist(seed: int = 0, hidden: int | None = None, dropout: float = 0.0,
                       **kwargs) -> tuple[Session, np.ndarray]:
    """A linear model (or an MLP with ``hidden`` units and dropout) trained 200 steps on planted data, paused."""
    data, planted = planted_data(seed=seed)
    torch.manual_seed(0)
    model = nn.Linear(6, 2) if hidden is None else nn.Sequential(
        nn.Linear(6, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))
    val = DataLoader(data, batch_size=512)
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=64, shuffle=True), val, max_epochs=200, recluster_seconds=None,
                      **kwargs)
    session.start(paused=True)
    session.step(200)
    return session, planted


def test_a_fork_specialises_on_its_slice_and_leaves_the_run_alone():
    session, planted = trained_generalist()
    try:
        before = {k: v.clone() for k, v in session.model.state_dict().items()}
        subgroup = np.flatnonzero(planted)
        expert = session.fork(subgroup, budget=150, name="blob", general_share=0.0)
        assert expert.state == "trained" and len(expert.losses) == 150 and expert.step == 200
        for k, v in session.model.state_dict().items():
            assert torch.equal(v, before[k]), "forking changed the run's weights"
        assert session.global_step == 200 and session.status == "paused"

        table = session.compare()
        assert list(table.index) == [session.run_name, "blob"]
        run_loss, blob_loss = table["slice blob loss"]
        assert blob_loss < 0.5 * run_loss, table
        assert table.loc["blob", "slice blob accuracy"] > 0.9 > table.loc[session.run_name, "slice blob accuracy"]
        assert "validation accuracy" in table.columns
        nodes = {n["id"]: n for n in session.lineage}
        assert nodes["blob"]["parent"] == session.run_name and nodes["blob"]["kind"] == "fork"
        kinds = [e["kind"] for e in session.events]
        assert kinds.index("forked") < kinds.index("fork_trained")
    finally:
        session.stop()


def test_an_alternating_fork_trains_between_the_runs_steps_without_disturbing_either():
    """mode='alternate': the run and the fork take a step each; the run's trajectory (dropout and
    shuffling included, across an epoch end, and through a merge) is that of a run without a fork,
    and the expert equals the one a waiting fork trains from the same state."""
    plain, planted = trained_generalist(hidden=16, dropout=0.2)
    plain.step(60)  # to step 260: the fifth epoch ends at 252
    expected_run = {k: v.clone() for k, v in plain.model.state_dict().items()}
    plain.stop()
    session, _ = trained_generalist(hidden=16, dropout=0.2)
    waiting, _ = trained_generalist(hidden=16, dropout=0.2)
    try:
        subgroup = np.flatnonzero(planted)
        expert = session.fork(subgroup, budget=20, name="blob", general_share=0.3, mode="alternate")
        assert expert.state == "training" and expert.losses == []
        session.step(12)
        assert len(expert.losses) == 12 and expert.state == "training"
        session.step(18)
        assert len(expert.losses) == 20 and expert.state == "trained"
        session.merge(["blob"])  # evaluations, a BatchNorm pass and a baseline fork: none draws from the run
        session.compare()
        session.step(30)
        for k, v in session.model.state_dict().items():
            assert torch.equal(v, expected_run[k]), f"the alternating fork disturbed the run's {k}"
        twin = waiting.fork(subgroup, budget=20, name="blob", general_share=0.3)
        assert expert.losses == twin.losses
        for k, v in twin.model.state_dict().items():
            assert torch.equal(v, expert.model.state_dict()[k]), f"alternating changed the expert's {k}"
        forked = next(e for e in session.events if e["kind"] == "forked")
        trained = next(e for e in session.events if e["kind"] == "fork_trained")
        assert forked["mode"] == "alternate" and (forked["step"], trained["step"]) == (200, 220)
        assert any(p["kind"] == "merge" for p in session.plans), "a finished alternating fork proposes a merge"
    finally:
        session.stop(), waiting.stop()


def test_an_alternating_fork_left_unfinished_completes_when_the_run_ends():
    session, planted = trained_generalist(max_steps=205)
    expert = session.fork(np.flatnonzero(planted), budget=30, name="blob", mode="alternate")
    session.resume().wait(60)
    assert session.status == "finished" and session.global_step == 205
    assert expert.state == "trained" and len(expert.losses) == 30
    late = session.fork(np.flatnonzero(planted), budget=5, name="late", mode="alternate")
    assert late.state == "trained" and len(late.losses) == 5, "on an ended run an alternating fork trains at once"


def test_merge_is_a_candidate_until_committed():
    session, planted = trained_generalist()
    try:
        session.fork(np.flatnonzero(planted), budget=50, name="blob")
        run_weights = {k: v.clone() for k, v in session.model.state_dict().items()}
        merge = session.merge()
        assert merge.experts == ["blob"] and merge.state == "candidate"
        assert set(merge.before) == set(merge.after) == {"slices", "held_out", "validation"}
        assert merge.after["held_out"]["samples"] == len(session.experts["blob"].held_out) > 0
        for k, v in session.model.state_dict().items():
            assert torch.equal(v, run_weights[k]), "a merge candidate changed the run"
        expected = (run_weights["weight"] + session.experts["blob"].model.weight.detach()) / 2
        session.commit(merge.name)
        torch.testing.assert_close(session.model.weight.detach(), expected)
        assert session.experts["blob"].state == "merged"
        with pytest.raises(StateError, match="already committed"):
            session.commit(merge.name)
        card = next(p for p in session.plans if p["kind"] == "merge")  # proposed when blob was trained
        assert card["status"] == "expired" and "blob is merged now" in card["result"]
        with pytest.raises(StateError, match="already expired"):
            card.approve(wait=True)  # it would have merged blob a second time
        nodes = {n["id"]: n for n in session.lineage}
        assert nodes[merge.name]["kind"] == "merge" and nodes[merge.name]["merged_from"] == ["blob"]
        session.resume()
        session.step(5)
        assert session.status == "paused", "training goes on after a commit"
    finally:
        session.stop()


def test_a_fisher_merge_keeps_each_model_where_it_knows_most():
    session, planted = trained_generalist()
    try:
        session.fork(np.flatnonzero(planted), budget=150, name="blob")
        swa, fisher = session.merge(method="swa"), session.merge(method="fisher")
        assert fisher.method == "fisher" and set(fisher.after) == {"slices", "held_out", "validation"}
        assert not torch.equal(swa.weights["weight"], fisher.weights["weight"])
        for merge in (swa, fisher):
            assert merge.after["slices"]["loss"] < merge.before["slices"]["loss"], merge
    finally:
        session.stop()


def test_bad_fork_and_merge_requests_say_what_to_do():
    session, planted = trained_generalist()
    try:
        with pytest.raises(ConfigurationError, match="budget must be a whole number"):
            session.fork([1, 2, 3], budget=0)
        with pytest.raises(ConfigurationError, match="holds no samples"):
            session.fork("loss < -1")
        with pytest.raises(ConfigurationError, match="no trained experts to merge"):
            session.merge()
        session.fork([1, 2, 3], budget=2, name="tiny")
        with pytest.raises(ConfigurationError, match="exists already"):
            session.fork([4, 5], budget=2, name="tiny")
        with pytest.raises(ConfigurationError, match="not available; use one of swa, fisher, distill, adapter"):
            session.merge(method="ties")
        with pytest.raises(ConfigurationError, match="no merge 'nope'"):
            session.discard("nope")
        with pytest.raises(ConfigurationError, match="router features 'pixels' are not available; use one of auto"):
            session.gate(features="pixels")
        with pytest.raises(ConfigurationError, match="fork mode 'later' is not available"):
            session.fork([4, 5], budget=2, mode="later")
        assert session.status == "paused" and session.global_step == 200
    finally:
        session.stop()


def test_a_clustering_proposes_a_fork_card_that_forks_when_approved():
    session, planted = trained_generalist()
    try:
        session.cluster()
        fork = [p for p in session.plans if p["kind"] == "fork"]
        assert fork, f"no fork card; clusters:\n{session.clusters}"
        assert fork[0]["params"] == {"budget": 300, "general_share": 0.2}
        result = fork[0].approve(wait=True, budget=40)  # a plan card is a dict that can be decided
        expert = next(iter(session.experts.values()))
        assert len(expert.losses) == 40 and "40 steps on cluster 0" in result
        assert np.isin(expert.indices, np.flatnonzero(planted)).mean() > 0.8
        compare = session.snapshot()["compare"]
        assert compare["columns"][0] == "model" and [r[0] for r in compare["rows"]] == [session.run_name, expert.name]

        # the fork proposes a merge; the merge proposes committing it, with before and after
        merge_card = next(p for p in session.plans if p["kind"] == "merge")
        assert expert.name in merge_card["evidence"]
        merge_card.approve(wait=True)
        commit = next(p for p in session.plans if p["kind"] == "commit_merge")
        assert "held-out validation samples of the experts' regions" in commit["evidence"]
        assert "validation accuracy" in commit["evidence"]
        assert "training on instead" in commit["evidence"]
        assert [e.kind for e in session.experts.values()] == ["fork", "baseline"], "a matched baseline was made"
        weights = session.model.weight.detach().clone()
        commit.reject()
        (merge,) = session.parts.merges.merges.values()
        assert merge.state == "discarded" and torch.equal(session.model.weight.detach(), weights)
        nodes = {n["id"]: n for n in session.lineage}
        assert nodes[merge.name]["state"] == "discarded" and nodes[expert.name]["state"] == "trained"
    finally:
        session.stop()


def test_a_reweight_card_samples_the_hard_cluster_more_often_from_the_next_epoch():
    session, planted = trained_generalist()
    try:
        session.cluster()
        card = next(p for p in session.plans if p["kind"] == "reweight")
        assert card["params"] == {"factor": 3.0} and "hard samples" in card["evidence"]
        rows = session.slice("cluster == 0")["index"].to_numpy()
        assert np.isin(rows, np.flatnonzero(planted)).mean() > 0.8
        card.approve(wait=True, factor=5)
        batches = len(session.train_loader)  # 63 an epoch; step 200 is within the fourth
        session.step(4 * batches - 200)  # the rest of this epoch keeps the loader's order
        seen = session.store.seen.copy()
        assert np.all(seen == 4), "the epoch under way was not reweighted"
        session.step(batches)
        visits = session.store.seen - seen
        others = np.setdiff1d(np.arange(len(visits)), rows)
        ratio = visits[rows].mean() / visits[others].mean()
        assert 4.0 < ratio < 6.0, f"the cluster was visited {ratio:.2f}x as often, not 5x"
        assert visits.sum() == batches * 64, "as many full batches as an epoch, drawn with replacement"
        session.reweight(None)
        seen = session.store.seen.copy()
        session.step(batches)
        assert np.all(session.store.seen - seen == 1), "reweight(None) restores the loader's own order"
        kinds = [e["kind"] for e in session.events]
        assert kinds.count("reweighted") == 2 and "plan_executed" in kinds
    finally:
        session.stop()


def test_a_fork_of_a_regression_run_with_a_tensor_dataset():
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    model = nn.Linear(3, 1)
    session = Session(model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(),
                      DataLoader(data, batch_size=16, shuffle=True), max_epochs=2, recluster_seconds=None)
    session.start().wait(timeout=60)
    expert = session.fork("loss > q50", budget=20, fresh_optimizer=True, lr=0.05)
    assert expert.lr == 0.05 and len(expert.losses) == 20 and expert.state == "trained"
    assert "slice " + expert.name + " loss" in session.compare().columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fork_then_merge_or_gate_beats_the_matched_compute_baseline(seed):
    """An MLP generalist underfits a planted subgroup (5 % of the data, labels flipped). A fork on
    it (half its batches general data) merged back by weight averaging must lower the held-out
    subgroup's loss below that of the run trained on for the same number of steps, without costing
    more than one point of overall validation accuracy. A gate routes the subgroup better than the
    run alone; a matched baseline counts its router's steps too."""
    data, planted = planted_data(seed=seed)
    held_out, held_out_planted = planted_data(seed=seed + 100)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
    val = DataLoader(held_out, batch_size=512)
    session = Session(model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=64, shuffle=True), val, max_epochs=100, recluster_seconds=None)
    try:
        session.start(paused=True)
        session.step(150)
        session.fork(np.flatnonzero(planted), budget=150, name="subgroup", general_share=0.5)
        baseline = session.baseline()
        assert baseline.budget == 150 and baseline.kind == "baseline"
        swa = session.merge(method="swa")
        merged = copy.deepcopy(session.model)
        merged.load_state_dict(swa.weights)
        gate = session.gate()
        assert gate.feature_layer is None, "small input vectors: the router reads the inputs"
        penultimate = session.gate(features="penultimate")
        assert penultimate.feature_layer == "2", "the router reads the input of the last Linear"
        router = [e["router_steps"] for e in session.events if e["kind"] == "gated"]
        assert router[0] == 30 * 16, "30 epochs of 4000 samples in batches of 256"
        counted = session.baseline()  # the forks' and the routers' steps
        assert counted.budget == 150 + sum(router)
        subgroup = DataLoader(Subset(held_out, np.flatnonzero(held_out_planted).tolist()), batch_size=512)
        score = {name: (evaluate(m, subgroup, nn.CrossEntropyLoss(reduction="none"), default_unpack, cpu)["loss"],
                        evaluate(m, val, nn.CrossEntropyLoss(reduction="none"), default_unpack, cpu)["accuracy"])
                 for name, m in {"run": session.model, "baseline": baseline.model, "swa": merged, "gate": gate,
                                 "penultimate gate": penultimate}.items()}
        assert score["swa"][0] < 0.8 * score["baseline"][0], score  # the merge took the fork's 150 steps
        assert score["swa"][1] >= score["baseline"][1] - 0.01, score
        for gated in ("gate", "penultimate gate"):  # against the baseline that counts their routers' steps, they
            assert score[gated][0] < 0.8 * score["run"][0], score  # lose (bench/specialists.py measures it)
    finally:
        session.stop()


@pytest.mark.parametrize("features", ["inputs", "penultimate"])
def test_the_exported_mixture_predicts_the_same_in_a_fresh_process(tmp_path, features):
    session, planted = trained_generalist(hidden=16)
    try:
        session.fork(np.flatnonzero(planted), budget=60, name="blob")
        mixture = session.gate(epochs=5, features=features)
        x = session.train_loader.dataset.tensors[0][:300]
        path = mixture.export(tmp_path / "mixture", x[:8])
        expected = mixture(x).detach()
    finally:
        session.stop()
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "expected.pt")
    script = (  # no onthefly_nb import: the mixture stands alone
        "import sys, torch\n"
        f"m = torch.export.load({str(path)!r}).module()\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=True)\n"
        "assert 'onthefly_nb' not in sys.modules\n"
        "torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)\n"
        "print('same predictions')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "same predictions" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "mixture" / "weights.safetensors").stat().st_size > 0
    manifest = json.loads((tmp_path / "mixture" / "manifest.json").read_text())
    assert manifest["router_features"] == ("inputs" if features == "inputs" else "3")  # the last Linear


cpu = torch.device("cpu")


def test_distillation_pulls_the_student_to_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    student = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(512, 4)
    y = torch.zeros(512, dtype=torch.long)

    def gap() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.kl_div(student(x).log_softmax(1), teacher(x).log_softmax(1),
                                                    reduction="batchmean", log_target=True))

    before = gap()
    no_task = lambda out, target: out.sum() * 0.0  # noqa: E731 - the KL term alone
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 512, 64)] * 40
    distill(student, teacher, torch.optim.Adam(student.parameters(), lr=1e-2), no_task, batches)
    assert gap() < 0.05 * before, (before, gap())


def test_a_distilled_merge_learns_the_subgroup_without_losing_the_rest():
    data, planted = planted_data(seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))  # a student that can fit the subgroup
    session = Session(model, torch.optim.Adam(model.parameters(), lr=3e-3), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=64, shuffle=True), DataLoader(planted_data(seed=100)[0], 512),
                      max_epochs=100, recluster_seconds=None)
    session.start(paused=True)
    session.step(150)
    try:
        session.fork(np.flatnonzero(planted), budget=100, name="blob", general_share=0.5)
        merge = session.merge(method="distill", steps=100)
        assert merge.method == "distill"
        assert merge.after["slices"]["loss"] < 0.8 * merge.before["slices"]["loss"], merge
        assert merge.after["validation"]["accuracy"] >= merge.before["validation"]["accuracy"] - 0.01, merge
        assert [e["kind"] for e in session.events].count("gated") == 1, "the teacher is the gated mixture"
        baseline = next(e for e in session.experts.values() if e.kind == "baseline")
        assert baseline.budget == 200, "the baseline matches the fork's 100 steps plus distillation's 100"
    finally:
        session.stop()


def test_a_fused_adapter_gives_the_adapted_models_outputs():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    adapted = with_adapters(base, rank=2, layers=["0", "2"])
    x = torch.randn(64, 5)
    torch.testing.assert_close(adapted(x), base(x))  # B starts at zero: an untrained adapter changes nothing
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == {"0.A", "0.B", "2.A", "2.B"}
    with torch.no_grad():
        for layer in (adapted[0], adapted[2]):
            layer.B.normal_()
    fused = copy.deepcopy(base)
    fused.load_state_dict(fuse(base, [adapted]))
    torch.testing.assert_close(fused(x), adapted(x), rtol=1e-5, atol=1e-5)
    delta = adapted[0].B @ adapted[0].A
    assert torch.linalg.matrix_rank(delta.detach()) <= 2
    with pytest.raises(ConfigurationError, match="named \\['9'\\]; the model's Linear layers are: 0, 2"):
        with_adapters(base, rank=2, layers=["9"])


def test_an_adapter_fork_trains_few_weights_and_fuses_back():
    session, planted = trained_generalist()
    try:
        frozen = session.model.weight.detach().clone()
        expert = session.fork(np.flatnonzero(planted), budget=80, name="lora", adapter_rank=1, lr=0.05)
        assert expert.adapter_rank == 1 and len(expert.losses) == 80
        assert expert.losses[-1] < expert.losses[0]
        assert torch.equal(expert.model.base.weight, frozen), "the base weights stay frozen"
        with pytest.raises(ConfigurationError, match="method='adapter' fuses experts forked with adapter_rank"):
            session.merge(["lora"], method="swa")
        merge = session.merge(["lora"], method="adapter")
        delta = (expert.model.B @ expert.model.A * expert.model.scale).detach()
        torch.testing.assert_close(merge.weights["weight"], frozen + delta)
        assert merge.after["slices"]["loss"] < merge.before["slices"]["loss"]
    finally:
        session.stop()


def test_forks_asked_for_before_a_step_get_names_of_their_own():
    data, _ = planted_data(512)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32, shuffle=True), max_epochs=50, recluster_seconds=None)
    session.start(paused=True)
    try:
        first = session.fork(list(range(20)), budget=3, wait=False)
        second = session.fork(list(range(100, 120)), budget=3, wait=False)
        experts = first.result(30), second.result(30)
    finally:
        session.stop(timeout=10)
    assert experts[0].name != experts[1].name
    assert set(session.experts) == {e.name for e in experts}
    assert [e["expert"] for e in session.events if e["kind"] == "forked"] == [e.name for e in experts]


def test_a_merge_that_fits_the_slices_noise_is_called_a_loss_on_held_out_data():
    train, blob = planted_data(2000, 0, share=10, blob="coin")  # the blob's training labels are coin flips
    val, _ = planted_data(2000, 1, share=10, blob="same")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 2))
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=512),
                      max_epochs=100, recluster_seconds=None, health_every=None)
    session.start(paused=True)
    try:
        session.step(150)
        expert = session.fork(np.flatnonzero(blob), budget=300, name="noise")
        assert 100 < len(expert.held_out) < 400, "about a tenth of the validation samples lie in the blob"
        card = next(p for p in session.plans if p["kind"] == "merge")
        assert f"on {len(expert.held_out)} held-out validation samples of its region" in card["evidence"]
        card.approve(wait=True)
        merge = next(iter(session.parts.merges.merges.values()))
        assert merge.after["slices"]["loss"] < merge.before["slices"]["loss"], "on the rows it memorised it 'helps'"
        assert merge.after["held_out"]["loss"] > merge.before["held_out"]["loss"]
        commit = next(p for p in session.plans if p["kind"] == "commit_merge")
        assert "it hurts" in commit["evidence"], commit["evidence"]
    finally:
        session.stop()
