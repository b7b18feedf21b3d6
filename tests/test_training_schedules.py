"""OneCycle: the learning rate of every parameter group (differential rates kept) and Adam's β1 follow PyTorch's
OneCycleLR step by step; its arguments are checked before any work."""

import pytest
import torch
from transformers import TrainerCallback

from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import prepare_run

LR, BACKBONE_MULTIPLIER, STEPS = 1e-2, 0.1, 6


class _Recorder(TrainerCallback):
    def __init__(self):
        self.steps: list[list[tuple[float, float]]] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.steps.append([(group["lr"], group["betas"][0]) for group in optimizer.param_groups])


def test_one_cycle_drives_every_group_as_pytorch_does(tmp_path):
    training_args = GReFELTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=STEPS, learning_rate=LR,
        backbone_lr_multiplier=BACKBONE_MULTIPLIER, one_cycle=True, warmup_steps=0, one_cycle_pct_start=0.5,
        augment=False, mix_prob=0.0, use_ema=False, eval_strategy="no", save_strategy="no", use_cpu=True,
        disable_tqdm=True, report_to=[], dataloader_num_workers=0)
    trainer = prepare_run(ModelArguments(model_type="baseline", backbone="test_resnet", image_size=32),
                          DataArguments(max_train_samples=24, max_eval_samples=8), training_args)
    recorder = _Recorder()
    trainer.add_callback(recorder)
    trainer.train()
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.OneCycleLR)
    peaks = [LR * (BACKBONE_MULTIPLIER if g["name"].startswith("backbone") else 1.0)
             for g in trainer.optimizer.param_groups]
    reference_optimizer = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": peak}
                                             for peak in peaks])
    reference = torch.optim.lr_scheduler.OneCycleLR(reference_optimizer, max_lr=peaks, total_steps=STEPS,
                                                    pct_start=0.5)
    for step, groups in enumerate(recorder.steps):
        expected = [value for g in reference_optimizer.param_groups for value in (g["lr"], g["betas"][0])]
        assert [value for group in groups for value in group] == pytest.approx(expected), step
        reference_optimizer.step()
        reference.step()
    first, peak = recorder.steps[0][0][0], max(step[0][0] for step in recorder.steps)
    assert first == pytest.approx(LR / 25) and peak == pytest.approx(LR)  # warm-up from lr / 25 to lr


def test_one_cycle_arguments_are_checked():
    with pytest.raises(ValueError, match="--one_cycle brings its own warm-up .* set --warmup_steps 0, got 0.05"):
        GReFELTrainingArguments(output_dir="x", one_cycle=True)
    with pytest.raises(ValueError, match=r"--one_cycle_pct_start must be in \(0, 1\), got 1.0"):
        GReFELTrainingArguments(output_dir="x", one_cycle=True, warmup_steps=0, one_cycle_pct_start=1.0)
    with pytest.raises(ValueError, match="--one_cycle_final_div_factor must be > 0"):
        GReFELTrainingArguments(output_dir="x", one_cycle=True, warmup_steps=0, one_cycle_final_div_factor=0)
