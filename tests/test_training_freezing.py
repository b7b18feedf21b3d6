"""Freezing the first coarse parameter groups of the timm backbone (`backbone_frozen_groups`); a training run
with frozen groups is tested with the other runs in test_training_run.py."""

import pytest
import torch
from conftest import tiny_grefel_config

from grefel_hf import GReFELForImageClassification
from grefel_hf.training.arguments import GReFELTrainingArguments
from grefel_hf.training.freezing import backbone_parameter_groups, freeze_backbone_groups


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

