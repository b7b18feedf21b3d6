"""Gradient-norm clipping by part: the geometry branch apart from the backbone and the primary head."""

import json

import pytest
import torch
from accelerate.utils import DistributedType
from conftest import tiny_grefel_config
from safetensors.torch import load_file
from test_training_run import _args, _deterministic
from torch import nn

import grefel_hf.training.run as run_module
from grefel_hf import GReFELForImageClassification
from grefel_hf.training.clipping import (
    check_part_clipping_supported,
    clip_grad_norm_by_part,
    gradient_clip_parts,
)
from grefel_hf.training.run import build_trainer, run_training

# The isolated primary head: p sees only its own loss and the branch sends no gradient into the backbone, so the
# backbone's and p's raw gradients do not depend on the branch's loss weights.
ISOLATED_MODEL = {"primary_input": "backbone", "num_attention_heads": 4, "primary_hidden_sizes": "[32]", "dropout": 0.0}
ISOLATED_OBJECTIVE = {"blend_trains_primary": False, "branch_gradient_scale": 0.0, "path_loss_weight": 1.0}


def _is_primary(name):
    return name.startswith(("grefel.backbone.", "primary_head."))


def test_the_parts_are_backbone_and_primary_head_then_the_branch():
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet"))
    frozen = model.grefel.backbone.conv1[0].weight
    frozen.requires_grad_(False)  # frozen parameters are in no part
    primary, branch = ({id(p) for p in part} for part in gradient_clip_parts(model))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(_is_primary(names[i]) for i in primary)
    assert not any(_is_primary(names[i]) for i in branch)
    assert id(model.primary_head.classifier.weight) in primary and id(model.grefel.anchors) in branch
    assert id(model.reliability.score.weight) in branch and id(model.grefel.level_embeddings) in branch
    assert id(frozen) not in primary | branch
    assert len(primary) + len(branch) == sum(1 for p in model.parameters() if p.requires_grad)


def test_a_model_without_a_branch_is_one_part():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    (part,) = gradient_clip_parts(model)
    assert [id(p) for p in part] == [id(p) for p in model.parameters()]


def test_each_part_is_clipped_to_the_limit_on_its_own():
    big, small, other = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    big.grad, small.grad, other.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 0.4]), torch.tensor([4.0, 0.0])
    total = clip_grad_norm_by_part([[big, small], [other]], max_norm=1.0)
    assert total.item() == pytest.approx((9 + 0.16 + 16) ** 0.5)  # the norm of all gradients before clipping
    first = torch.linalg.vector_norm(torch.cat([big.grad, small.grad]))
    assert first.item() == pytest.approx(1.0, rel=1e-5)
    assert other.grad.tolist() == pytest.approx([1.0, 0.0], rel=1e-5)
    assert (small.grad[1] / big.grad[0]).item() == pytest.approx(0.4 / 3.0)  # direction within a part is kept


def test_a_part_under_the_limit_is_untouched():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([0.5]), torch.tensor([30.0])
    clip_grad_norm_by_part([[a], [b]], max_norm=1.0)
    assert a.grad.item() == pytest.approx(0.5) and b.grad.item() == pytest.approx(1.0, rel=1e-5)


def test_per_part_clipping_is_refused_exactly_where_the_engine_clips_gradients_itself():
    def refused(engine):
        try:
            check_part_clipping_supported(engine)
        except ValueError as err:
            return "clip_branch_separately is not supported" in str(err)
        return False

    refusing = {engine for engine in DistributedType if refused(engine)}
    assert refusing == {DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.XLA}
    assert DistributedType.NO not in refusing and DistributedType.MULTI_CPU not in refusing  # CPU and DDP runs


def _one_clipped_step(tmp_path, monkeypatch, name, *, separately, anchor_weight):
    """One SGD step with a tight clipping limit, no weight decay; the branch's loss weight is the only difference
    between runs. Returns the backbone's and p's update and the logged grad_norm."""
    initial = {}

    def build_and_record(model, *args, **kwargs):
        initial.update({n: p.detach().clone() for n, p in model.named_parameters() if _is_primary(n)})
        return build_trainer(model, *args, **kwargs)

    monkeypatch.setattr(run_module, "build_trainer", build_and_record)
    out = tmp_path / name
    training = {**_deterministic(), **ISOLATED_OBJECTIVE, "anchor_margin": 10.0,
                "anchor_margin_loss_weight": anchor_weight, "max_grad_norm": 1e-3, "weight_decay": 0.0}
    run_training(*_args(out, model=ISOLATED_MODEL, max_steps=1, data={"max_train_samples": 8},
                        clip_branch_separately=separately, select_inference_mode=False, **training))
    state = json.loads((out / "trainer_state.json").read_text())
    grad_norm = next(entry["grad_norm"] for entry in state["log_history"] if "grad_norm" in entry)
    weights = load_file(out / "model.safetensors")
    update = torch.cat([(weights[n].float() - before).flatten() for n, before in initial.items()])
    return update, grad_norm


def test_separate_clipping_keeps_the_branch_out_of_the_backbones_and_primary_heads_step(tmp_path, monkeypatch):
    def step(name, separately, anchor_weight):
        return _one_clipped_step(tmp_path, monkeypatch, name, separately=separately, anchor_weight=anchor_weight)

    light, light_norm = step("light", True, 0.1)
    heavy, heavy_norm = step("heavy", True, 100.0)
    assert heavy_norm > 5 * light_norm  # the branch's gradients did grow, and the logged norm counts them
    # p and the backbone took the plain classifier's step: lr × max_grad_norm, whatever the branch did
    assert light.norm().item() == pytest.approx(0.5 * 1e-3, rel=1e-3)
    assert (light - heavy).abs().max().item() < 1e-7
    # Clipped together, the same change in the branch's loss shrinks the backbone's and p's step.
    shared_light, shared_light_norm = step("shared-light", False, 0.1)
    shared_heavy, _ = step("shared-heavy", False, 100.0)
    assert shared_light_norm == pytest.approx(light_norm, rel=1e-5)  # same gradients before clipping
    assert shared_heavy.norm() < 0.5 * shared_light.norm() < 0.5 * light.norm()
