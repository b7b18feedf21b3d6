"""Progressive unfreezing: at each boundary epoch `requires_grad`, what the optimiser updates and its parameter
groups (differential learning rates included) are exactly as scheduled."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_training_run import _launch
from transformers import TrainerCallback

from grefel_hf import BaselineConfig, BaselineForImageClassification, save_grefel_folder
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import prepare_run
from grefel_hf.training.unfreezing import ProgressiveUnfreezing, backbone_stage_names, parse_unfreeze_schedule

SCHEDULE = {1: ["layer4"], 2: ["layer3", "layer2"], 3: ["all"]}
THAWED = {0: (), 1: ("layer4",), 2: ("layer4", "layer3", "layer2"), 3: None}  # None: the whole backbone
LR, BACKBONE_MULTIPLIER = 1e-3, 0.1


class _EpochRecorder(TrainerCallback):
    """At each epoch's start (after the unfreezing callback) and end: requires_grad, weights, optimiser groups."""

    def __init__(self):
        self.epochs: list[dict] = []

    def _weights(self, model):
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    def on_epoch_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        groups = [{"lr": g["lr"], "params": {id(p) for p in g["params"]}, "name": g["name"]}
                  for g in optimizer.param_groups]
        self.epochs.append({"epoch": round(state.epoch), "requires_grad": {n: p.requires_grad for n, p in
                                                                          model.named_parameters()},
                            "start": self._weights(model), "groups": groups})

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.epochs[-1]["with_gradient"] = {name for name, p in model.named_parameters() if p.grad is not None}

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.epochs[-1]["end"] = self._weights(model)
        self.epochs[-1]["state"] = {id(p) for p in optimizer.state if optimizer.state[p]}


def _expected_trainable(name: str, epoch: int) -> bool:
    if not name.startswith("baseline.backbone."):
        return True  # the heads train from the start
    stages = THAWED[epoch]
    return stages is None or any(name.startswith(f"baseline.backbone.{stage}.") for stage in stages)


def test_requires_grad_updates_and_parameter_groups_follow_the_schedule_at_each_boundary_epoch(tmp_path):
    model_args = ModelArguments(model_type="baseline", backbone="test_resnet", image_size=32)
    data_args = DataArguments(max_train_samples=8, max_eval_samples=8)
    training_args = GReFELTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=4, learning_rate=LR,
        backbone_lr_multiplier=BACKBONE_MULTIPLIER, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0,
        unfreeze_schedule=SCHEDULE, augment=False, mix_prob=0.0, use_ema=False, eval_strategy="no",
        save_strategy="no", use_cpu=True, disable_tqdm=True, report_to=[], dataloader_num_workers=0)
    trainer = prepare_run(model_args, data_args, training_args)
    recorder = _EpochRecorder()
    trainer.add_callback(recorder)
    trainer.train()
    model = trainer.model
    ids = {name: id(p) for name, p in model.named_parameters()}
    assert [e["epoch"] for e in recorder.epochs] == [0, 1, 2, 3]
    ever_trained: set[str] = set()
    for record in recorder.epochs:
        epoch = record["epoch"]
        expected = {name for name in ids if _expected_trainable(name, epoch)}
        assert {name for name, flag in record["requires_grad"].items() if flag} == expected, epoch
        # the optimiser steps exactly the scheduled parameters (it skips one without a gradient), and the frozen
        # ones keep their weights (a trainable one may get an exactly zero gradient, so most but not all move)
        assert record["with_gradient"] == expected, epoch
        changed = {name for name in ids if not torch.equal(record["start"][name], record["end"][name])}
        assert changed <= expected and len(changed) > 0.9 * len(expected), epoch
        # the optimiser holds every parameter once, from the start; the frozen ones get no update and no state
        held = [pid for group in record["groups"] for pid in group["params"]]
        assert sorted(held) == sorted(ids.values())
        for group in record["groups"]:
            assert group["lr"] == pytest.approx(LR * (BACKBONE_MULTIPLIER if group["name"].startswith("backbone")
                                                      else 1.0)), group["name"]
            in_backbone = {n.startswith("baseline.backbone.") for n, pid in ids.items() if pid in group["params"]}
            assert in_backbone == {group["name"].startswith("backbone")}, group["name"]
        ever_trained |= expected
        assert record["state"] == {ids[name] for name in ever_trained}, epoch


def test_stage_names_are_the_backbones_own_and_a_bad_schedule_is_refused():
    model = BaselineForImageClassification(BaselineConfig(backbone="test_efficientnet", image_size=32))
    names = backbone_stage_names(model.get_backbone())
    assert {"conv_stem", "bn1", "blocks", "blocks.0", "conv_head"} <= set(names) and "global_pool" not in names
    callback = ProgressiveUnfreezing(model, {0: ["blocks.4", "conv_head", "bn2"], 2: ["all"]})
    assert callback.trainable_at(1) == {name for name in model.parameter_parts()
                                        if name.startswith(("baseline.backbone.blocks.4.", "baseline.backbone.conv_head.",
                                                            "baseline.backbone.bn2."))}
    with pytest.raises(ValueError, match=r"names \['layer4'\], which the EfficientNet backbone does not have; its "
                                         r"stages are \['conv_stem', 'bn1', 'blocks', 'blocks.0'"):
        ProgressiveUnfreezing(model, {1: ["layer4"]})
    assert parse_unfreeze_schedule('{"10": ["layer4"], "2": ["all"]}') == {2: ["all"], 10: ["layer4"]}
    with pytest.raises(ValueError, match="epochs must be integers >= 0, got '-1'"):
        parse_unfreeze_schedule({"-1": ["all"]})
    with pytest.raises(ValueError, match="epoch 3 must list stage names, got 'layer4'"):
        parse_unfreeze_schedule({3: "layer4"})
    with pytest.raises(ValueError, match="must be JSON on the command line"):
        parse_unfreeze_schedule("{10: layer4}")
    with pytest.raises(ValueError, match="--unfreeze_schedule and --backbone_frozen_groups both freeze"):
        GReFELTrainingArguments(output_dir="x", unfreeze_schedule={1: ["all"]}, backbone_frozen_groups=2)


_DDP_SETTINGS = dict(num_train_epochs=2, optim="sgd", learning_rate=0.5, backbone_lr_multiplier=1.0, weight_decay=0.0,
                     max_grad_norm=0.0, warmup_steps=0, lr_scheduler_type="constant", label_smoothing_factor=0.0,
                     augment=False, mix_prob=0.0, use_ema=False, eval_strategy="no", save_strategy="no", use_cpu=True,
                     disable_tqdm=True, unfreeze_schedule={"1": ["blocks.1"]})
"""Plain SGD steps (no momentum, decay, clipping, augmentation or mixing): a function of the gradients alone."""


def _command_line(settings: dict) -> list[str]:
    values = {name: json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)
              for name, v in settings.items()}
    return [token for name, value in values.items() for token in (f"--{name}", value)]


def test_two_process_ddp_thaws_as_one_process_does(tmp_path):
    """Stages that thaw after DDP wrapped the model are still averaged over the processes: 2 processes x 4 images
    take the same two steps (head only, then a thawed stage too) as 1 process x 8 images, from the same weights."""
    single = prepare_run(ModelArguments(model_type="baseline", backbone="test_vit", image_size=32),
                         DataArguments(max_train_samples=8, max_eval_samples=8),
                         GReFELTrainingArguments(output_dir=str(tmp_path / "single"), per_device_train_batch_size=8,
                                                 **_DDP_SETTINGS))
    save_grefel_folder(single.model, single.processing_class, tmp_path / "initial")
    single.train()
    ddp = _launch(["--model_name_or_path", str(tmp_path / "initial"), "--output_dir", str(tmp_path / "ddp"),
                   "--max_train_samples", "8", "--max_eval_samples", "8", "--per_device_train_batch_size", "4",
                   *_command_line(_DDP_SETTINGS)], cwd=tmp_path, processes=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    trained, initial = (load_file(tmp_path / run / "model.safetensors") for run in ("ddp", "initial"))
    expected = {name: p.detach() for name, p in single.model.named_parameters()}
    thawed = [name for name in expected if name.startswith("baseline.backbone.blocks.1.")]
    assert thawed and all(not torch.equal(initial[name], expected[name]) for name in thawed)  # it did thaw
    assert max((trained[name] - expected[name]).abs().max().item() for name in expected) < 2e-5
