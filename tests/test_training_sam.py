"""SAM as a Trainer option: the step equals a hand-written reference step, with and without gradient accumulation,
adaptive or not, under bf16 autocast and under two-process DDP; BatchNorm statistics count each batch once."""

import copy
import json
import os

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from test_training_run import _launch
from torch import nn

from grefel_hf import save_grefel_folder
from grefel_hf.data.collators import GReFELEvalCollator
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import prepare_run
from grefel_hf.training.sam import (
    batch_norm_statistics_kept,
    check_sam_supported,
    perturbed_weights,
    sam_perturbation,
)

RHO, LR = 0.5, 0.5


def _trainer(tmp_path, backbone="test_vit", batch=8, accumulation=1, **training):
    """A tiny baseline on the first 8 generated images: one optimiser step of plain SGD (no momentum, decay,
    clipping, augmentation, mixing or smoothing), so that the step is a function of the gradients alone."""
    model_args = ModelArguments(model_type="baseline", backbone=backbone, image_size=32)
    data_args = DataArguments(max_train_samples=8, max_eval_samples=8)
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=batch,
                    gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=LR,
                    weight_decay=0.0, max_grad_norm=0.0, warmup_steps=0, lr_scheduler_type="constant",
                    label_smoothing_factor=0.0, augment=False, mix_prob=0.0, use_ema=False, save_strategy="no",
                    eval_strategy="no", use_cpu=True, disable_tqdm=True, report_to=[],
                    dataloader_num_workers=0, sam_rho=RHO, **{"seed": 7, **training})
    return prepare_run(model_args, data_args, GReFELTrainingArguments(**settings))


def _all_training_images(trainer):
    """The 8 training images as one batch, with the training transform (no augmentation: deterministic)."""
    return GReFELEvalCollator()([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


def _reference_step(model, batch, rho, adaptive):
    """SAM by hand (Foret et al. 2021; ASAM, Kwon et al. 2021), then one SGD step; returns the new weights."""
    model = copy.deepcopy(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(model(**batch).loss, params)
    scaled = [p.abs() * g for p, g in zip(params, grads, strict=True)] if adaptive else grads
    norm = torch.sqrt(sum((s**2).sum() for s in scaled))
    offsets = [rho * (p**2 if adaptive else 1) * g / norm for p, g in zip(params, grads, strict=True)]
    with torch.no_grad():
        for p, e in zip(params, offsets, strict=True):
            p.add_(e)
    second = torch.autograd.grad(model(**batch).loss, params)
    with torch.no_grad():
        for p, e, g in zip(params, offsets, second, strict=True):
            p.sub_(e).sub_(LR * g)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _plain_sgd_step(model, batch):
    model = copy.deepcopy(model).train()
    params = list(model.parameters())
    grads = torch.autograd.grad(model(**batch).loss, params)
    return {name: (p - LR * g).detach() for (name, p), g in zip(model.named_parameters(), grads, strict=True)}


def _max_difference(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("accumulation", [1, 2], ids=["one-batch", "accumulated-2x4"])
def test_the_sam_step_equals_the_reference_step(accumulation, adaptive, tmp_path):
    trainer = _trainer(tmp_path, batch=8 // accumulation, accumulation=accumulation, sam_adaptive=adaptive)
    initial = copy.deepcopy(trainer.model)
    batch = _all_training_images(trainer)
    expected = _reference_step(initial, batch, RHO, adaptive)
    trainer.train()
    actual = {name: p.detach() for name, p in trainer.model.named_parameters()}
    assert _max_difference(actual, expected) < 2e-5
    # the test can tell SAM from a plain step: that one lands clearly elsewhere
    assert _max_difference(_plain_sgd_step(initial, batch), expected) > 1e-3


def test_sam_under_bf16_autocast_takes_the_reference_step_to_bf16_precision(tmp_path):
    trainer = _trainer(tmp_path, bf16=True)
    initial = copy.deepcopy(trainer.model)
    batch = _all_training_images(trainer)
    expected, plain = _reference_step(initial, batch, RHO, False), _plain_sgd_step(initial, batch)
    trainer.train()
    actual = {name: p.detach() for name, p in trainer.model.named_parameters()}
    assert all(torch.isfinite(value).all() for value in actual.values())
    assert _max_difference(actual, expected) < 0.25 * _max_difference(plain, expected)


def test_the_second_pass_leaves_batchnorm_statistics_as_one_forward_pass_leaves_them(tmp_path):
    trainer = _trainer(tmp_path, backbone="test_resnet")
    reference = copy.deepcopy(trainer.model).train()
    batch = _all_training_images(trainer)
    with torch.no_grad():
        reference(**batch)  # the first pass's update of the running statistics, once
    trainer.train()
    norms = [name for name, m in trainer.model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    buffers, expected = dict(trainer.model.named_buffers()), dict(reference.named_buffers())
    for name in norms:
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(buffers[f"{name}.{buffer}"], expected[f"{name}.{buffer}"], atol=1e-5,
                                       rtol=1e-4)


def test_perturbation_helpers_skip_overflow_restore_exactly_and_refuse_sharded_engines():
    weight = nn.Parameter(torch.tensor([1.0, -2.0]))
    weight.grad = torch.tensor([float("inf"), 1.0])
    assert sam_perturbation([weight], 0.05) is None  # an fp16 overflow: no second pass, the scaler skips the step
    weight.grad = torch.zeros(2)
    assert sam_perturbation([weight], 0.05) is None
    weight.grad = torch.tensor([3.0, 4.0])
    (offset,) = sam_perturbation([weight], 0.5)
    torch.testing.assert_close(offset, torch.tensor([0.3, 0.4]))
    before = weight.detach().clone()
    with perturbed_weights([weight], [offset]):
        torch.testing.assert_close(weight.detach(), before + offset)
    assert torch.equal(weight.detach(), before)
    norm = nn.BatchNorm1d(2)
    with batch_norm_statistics_kept(norm):
        norm(torch.randn(4, 2) + 5)
    assert torch.equal(norm.running_mean, torch.zeros(2)) and norm.num_batches_tracked.item() == 0
    assert norm.momentum == 0.1
    check_sam_supported(DistributedType.MULTI_GPU)
    with pytest.raises(ValueError, match="--sam_rho is not supported under .*DEEPSPEED"):
        check_sam_supported(DistributedType.DEEPSPEED)
    with pytest.raises(ValueError, match="--sam_adaptive needs --sam_rho > 0"):
        GReFELTrainingArguments(output_dir="x", sam_adaptive=True)


def test_two_process_ddp_with_accumulation_takes_the_reference_step(tmp_path):
    """2 processes x 2 accumulated micro-batches of 2 images, started from a saved model, take the reference step on
    all 8 images at once from it: the perturbation comes from the all-reduced gradient of the whole window."""
    trainer = _trainer(tmp_path / "reference")
    save_grefel_folder(trainer.model, trainer.processing_class, tmp_path / "initial")
    expected = _reference_step(trainer.model, _all_training_images(trainer), RHO, False)
    cli = ["--output_dir", str(tmp_path / "ddp"), "--model_name_or_path", str(tmp_path / "initial"),
           "--backbone_lr_multiplier", "1.0", "--max_train_samples", "8", "--max_eval_samples", "8", "--max_steps",
           "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--augment", "false",
           "--mix_prob", "0", "--label_smoothing_factor", "0", "--use_ema", "false", "--optim", "sgd",
           "--learning_rate", str(LR), "--weight_decay", "0", "--max_grad_norm", "0", "--warmup_steps", "0",
           "--lr_scheduler_type", "constant", "--eval_strategy", "no", "--save_strategy", "no", "--use_cpu", "true",
           "--disable_tqdm", "true", "--sam_rho", str(RHO)]
    ddp = _launch(cli, cwd=tmp_path, processes=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "train_results.json").read_text())["epoch"] == pytest.approx(1.0)
    trained = load_file(os.path.join(tmp_path, "ddp", "model.safetensors"))
    assert max((trained[name] - expected[name]).abs().max().item() for name in expected) < 2e-5
