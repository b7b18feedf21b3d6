"""Freezing the first coarse parameter groups of the timm backbone (`backbone_frozen_groups`)."""

import pytest
import torch
from conftest import tiny_grefel_config

import grefel_hf.training.run as run_module
from grefel_hf import GReFELForImageClassification
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments, ModelArguments
from grefel_hf.training.freezing import backbone_parameter_groups, freeze_backbone_groups
from grefel_hf.training.run import build_trainer, run_training


def test_freezing_covers_the_stem_and_the_first_stages_only():
    model = GReFELForImageClassification(tiny_grefel_config("test_efficientnet"))
    groups = backbone_parameter_groups(model.grefel.backbone)
    assert groups[0][0].startswith("conv_stem") and groups[1][0].startswith("blocks.0.")
    frozen = freeze_backbone_groups(model, 2)
    assert frozen == [f"grefel.backbone.{name}" for name in groups[0] + groups[1]]
    for name, param in model.named_parameters():
        assert param.requires_grad == (name not in frozen), name
    assert any(name.startswith("grefel.backbone.blocks.1.") for name, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_backward_stops_at_the_first_trainable_stage(checkpointing):
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet")).train()
    if checkpointing:  # timm's checkpointing must still reach the stages after the frozen ones
        model.gradient_checkpointing_enable()
    frozen = set(freeze_backbone_groups(model, 2))  # the stem and layer1
    loss = model(pixel_values=torch.randn(4, 3, 48, 48), labels=torch.tensor([0, 1, 2, 3])).loss
    loss.backward()
    for name, param in model.named_parameters():
        if name in frozen:
            assert param.grad is None, name
    layer2 = model.grefel.backbone.layer2.parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in layer2)  # the first trainable stage learns


@pytest.mark.parametrize("count", [-1, 6])
def test_an_impossible_count_is_refused_with_the_number_of_groups(count):
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet"))  # 5 groups: the stem and 4 layers
    with pytest.raises(ValueError, match="backbone_frozen_groups") as err:
        freeze_backbone_groups(model, count)
    if count > 0:
        assert "only 5 parameter groups" in str(err.value)
    assert all(p.requires_grad for p in model.parameters())


def test_a_model_without_a_timm_backbone_is_refused():
    with pytest.raises(ValueError, match="has no timm backbone"):
        freeze_backbone_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)), 1)


def test_training_arguments_refuse_a_negative_count(tmp_path):
    with pytest.raises(ValueError, match="--backbone_frozen_groups must be >= 0"):
        GReFELTrainingArguments(output_dir=str(tmp_path), backbone_frozen_groups=-1, use_cpu=True)


def test_a_training_run_leaves_the_frozen_groups_untouched(tmp_path, monkeypatch):
    model_args = ModelArguments(backbone="test_resnet", image_size=48, embed_dim=32, anchors_per_class=2,
                                config_overrides="num_attention_heads=4,primary_hidden_sizes=[32]")
    data_args = DataArguments(max_train_samples=16, max_eval_samples=16)
    training_args = GReFELTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=2, save_strategy="no", eval_strategy="no",
        use_cpu=True, seed=3, disable_tqdm=True, dataloader_num_workers=0, use_ema=False, augment=False, mix_prob=0.0,
        learning_rate=0.05, backbone_frozen_groups=2,
    )
    seen = {}

    def build_and_record(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["trainer"] = build_trainer(model, *args, **kwargs)
        return seen["trainer"]

    monkeypatch.setattr(run_module, "build_trainer", build_and_record)
    run_training(model_args, data_args, training_args)
    trainer = seen["trainer"]
    frozen = set(trainer.frozen_parameter_names)
    assert frozen and all(name.startswith("grefel.backbone.") for name in frozen)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    after = dict(trainer.model.named_parameters())
    for name, before in seen["before"].items():
        if name in frozen:
            assert id(after[name]) not in optimised, name
            assert torch.equal(after[name].detach(), before), name
    trained = [n for n in after if n.startswith("grefel.backbone.layer2.")]
    assert any(not torch.equal(after[n].detach(), seen["before"][n]) for n in trained)
