"""attach_huggingface: per-sample losses keyed by index from a transformers.Trainer's own forward
pass, on tiny randomly initialised models built from configs (no downloads)."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import Dataset

from onthefly_nb.errors import ConfigurationError

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from onthefly_nb.integrations.huggingface import attach_huggingface, per_sample_cross_entropy  # noqa: E402


class Sequences(Dataset):
    """Random token sequences; the class is whether token 1 occurs more often than token 2."""

    def __init__(self, n: int = 96, length: int = 12, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, 40, (n, length), generator=g)
        self.ids[:, :4] = torch.randint(1, 3, (n, 4), generator=g)
        self.labels = ((self.ids == 1).sum(1) > (self.ids == 2).sum(1)).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def arguments(tmp_path, **kwargs) -> transformers.TrainingArguments:
    defaults = {"output_dir": str(tmp_path), "per_device_train_batch_size": 8, "num_train_epochs": 2,
                "report_to": [], "save_strategy": "no", "logging_strategy": "no", "use_cpu": True,
                "disable_tqdm": True, "seed": 0}
    return transformers.TrainingArguments(**{**defaults, **kwargs})


def test_a_trainer_run_records_every_samples_loss_under_its_index(tmp_path):
    """With a learning rate of 0 the model never changes, so each sample's recorded loss must
    equal its loss under that model: keyed by the right index under the Trainer's shuffling."""
    model, data = tiny_bert(), Sequences()
    trainer = transformers.Trainer(model=model, args=arguments(tmp_path, learning_rate=0.0, eval_strategy="epoch"),
                                   train_dataset=data, eval_dataset=Sequences(32, seed=1))
    session = attach_huggingface(trainer, project="hf", run_name="tiny-bert", recluster_seconds=None)
    trainer.train()

    assert session.status == "finished" and session.global_step == trainer.state.global_step == 24
    frame = session.slice(features=False).set_index("index").sort_index()
    assert (frame["seen"] == 2).all()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=data.ids, attention_mask=torch.ones_like(data.ids)).logits
    expected = per_sample_cross_entropy(logits, data.labels)
    torch.testing.assert_close(torch.tensor(frame["loss"].to_numpy()), expected, rtol=1e-4, atol=1e-5)
    assert (frame["label"].to_numpy() == data.labels.numpy()).all()
    validations = session.metrics["validation"]
    assert len(validations) == 2 and validations[-1]["loss"] == pytest.approx(validations[-1]["eval_loss"])
    assert session.optimizer is trainer.optimizer


def test_a_causal_language_model_gets_one_loss_per_sequence(tmp_path):
    config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)

    class Text(Sequences):
        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            labels = self.ids[i].clone()
            labels[:3] = -100  # a prompt the loss ignores
            return {"input_ids": self.ids[i], "labels": labels}

    trainer = transformers.Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1, learning_rate=1e-3),
                                   train_dataset=Text(64))
    session = attach_huggingface(trainer, run_name="tiny-gpt2", recluster_seconds=None)
    trainer.train()
    frame = session.slice(features=False)
    assert session.status == "finished" and (frame["seen"] == 1).all() and frame["loss"].between(0, 10).all()


def test_pause_and_stop_a_trainer_run_from_the_session(tmp_path):
    model, data = tiny_bert(), Sequences()
    trainer = transformers.Trainer(model=model, args=arguments(tmp_path, num_train_epochs=200), train_dataset=data)
    session = attach_huggingface(trainer, recluster_seconds=None)
    session.start()  # trainer.train() on the session's thread
    try:
        while session.global_step < 10:
            time.sleep(0.01)
        session.pause()
        frozen = (session.global_step, trainer.state.global_step)
        time.sleep(0.5)
        assert (session.global_step, trainer.state.global_step) == frozen and session.status == "paused"
        session.step(3)
        assert (session.global_step, trainer.state.global_step) == (frozen[0] + 3, frozen[1] + 3)
    finally:
        session.stop()
    assert session.status == "stopped" and trainer.state.global_step < 200 * 12


def test_attach_huggingface_says_what_it_needs(tmp_path):
    with pytest.raises(ConfigurationError, match="trainer must be a transformers.Trainer"):
        attach_huggingface(object())
    with pytest.raises(ConfigurationError, match="cannot take a per-sample cross entropy"):
        per_sample_cross_entropy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def test_health_sees_a_trainer_runs_gradients_and_its_decayed_learning_rate_passes(tmp_path):
    """The Trainer clears the gradients right after its optimizer step, before the step boundary;
    the session keeps them for a check that is due. Its linear schedule ends at a learning rate of 0."""
    model, data = tiny_bert(), Sequences()
    trainer = transformers.Trainer(model=model, args=arguments(tmp_path, learning_rate=1e-3), train_dataset=data)
    session = attach_huggingface(trainer, project="hf", run_name="health", recluster_seconds=None, health_every=5)
    trainer.train()
    assert any(e["kind"] == "health" for e in session.events), "the periodic check ran"
    checks = {r["check"]: r for r in session.health_report["results"]}
    assert checks["gradients"]["status"] in ("pass", "warn") and "total norm" in checks["gradients"]["evidence"]
    assert trainer.optimizer.param_groups[0]["lr"] == 0
    final = session.health().set_index("check")
    assert final.loc["learning rate", "status"] == "pass", final.loc["learning rate", "evidence"]
