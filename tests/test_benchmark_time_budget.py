"""The CPU-budget benchmark's wall-clock schedule (benchmarks/time_budget.py), driven by a fake clock."""

import os
import sys
from functools import partial

import pytest
from conftest import REPO_ROOT
from transformers import TrainerCallback

from grefel_hf.factory import build_image_processor
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.data import attach_transforms, load_dataset_dict, prepare_training_data
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import build_model, build_trainer

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from time_budget import TimeBudgetTrainer, warmup_cosine  # noqa: E402


def test_warmup_cosine_rises_then_falls_to_zero():
    assert warmup_cosine(0.0, 0.2) == 0.0
    assert warmup_cosine(0.1, 0.2) == pytest.approx(0.5)
    assert warmup_cosine(0.2, 0.2) == pytest.approx(1.0)
    assert warmup_cosine(0.6, 0.2) == pytest.approx(0.5)  # halfway through the cosine
    assert warmup_cosine(1.0, 0.2) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1.7, 0.2) == pytest.approx(0.0, abs=1e-12)  # past the budget: clamped
    assert warmup_cosine(0.0, 0.0) == pytest.approx(1.0)  # no warm-up


class _Recorder(TrainerCallback):
    """The learning rate each step of `trainer` runs with, and its τ after it."""

    def __init__(self, trainer):
        self.trainer, self.learning_rates, self.trust = trainer, [], []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.learning_rates.append(optimizer.param_groups[0]["lr"])

    def on_step_end(self, args, state, control, **kwargs):
        self.trust.append(self.trainer.trust)


def _budget_trainer(tmp_path, budget_seconds, clock, **training):
    data_args = DataArguments(max_train_samples=32, max_eval_samples=8)
    model_args = ModelArguments(backbone="test_vit", image_size=32, embed_dim=32, anchors_per_class=2,
                                num_attention_heads=4, primary_hidden_sizes="[32]")
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=50, learning_rate=1e-3, backbone_lr_multiplier=1.0,
                    save_strategy="no", eval_strategy="no", use_cpu=True, seed=7, disable_tqdm=True, use_ema=False,
                    mix_prob=0.0, augment=False, dataloader_num_workers=0, report_to=[], **training)
    training_args = GReFELTrainingArguments(**settings)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    return build_trainer(model, processor, attach_transforms(data, processor, {}), training_args,
                         trainer_cls=partial(TimeBudgetTrainer, budget_seconds=budget_seconds, clock=clock))


def test_schedule_and_trust_ramp_follow_the_clock_and_training_stops_when_the_budget_is_spent(tmp_path):
    holder = {}
    # every training step "takes" one second of the fake clock
    trainer = _budget_trainer(tmp_path, 8.0, clock=lambda: float(holder["trainer"].state.global_step),
                              warmup_steps=0.25)
    holder["trainer"] = trainer
    recorder = _Recorder(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    assert trainer.state.global_step == 8  # the budget, not max_steps=50, ended the run
    assert recorder.trust == pytest.approx([k / 8 for k in range(8)])  # τ set before each step
    # step k runs with the rate the scheduler set after step k - 1, when (k - 1) of 8 seconds were spent
    expected = [0.0] + [1e-3 * warmup_cosine((k - 1) / 8, 0.25) for k in range(1, 8)]
    assert recorder.learning_rates == pytest.approx(expected)
    assert max(recorder.learning_rates) == pytest.approx(1e-3)  # warm-up reached the peak at 2 of 8 seconds


def test_the_warm_up_must_be_a_ratio_of_the_budget(tmp_path):
    with pytest.raises(ValueError, match="warmup_steps as a ratio"):
        _budget_trainer(tmp_path, 8.0, clock=lambda: 0.0, warmup_steps=10)
    with pytest.raises(ValueError, match="budget_seconds must be positive"):
        _budget_trainer(tmp_path, 0.0, clock=lambda: 0.0)
