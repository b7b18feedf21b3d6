"""Each GReFEL loss term on hand-made inputs, and GReFELLoss's total and named parts."""

import math

import pytest
import torch
from torch.nn import functional as F

from grefel_hf import GReFELConfig
from grefel_hf.losses import (
    GReFELLoss,
    GReFELObjective,
    anchor_margin_loss,
    center_loss,
    classification_loss,
    geometry_diversity_loss,
    normalized_entropy,
    path_classification_loss,
    reliability_target_loss,
    rms_distance,
    target_distribution,
)


def test_rms_distance_matches_the_definition():
    u, v = torch.randn(4, 6), torch.randn(5, 6)
    expected = torch.stack([torch.stack([((a - b) ** 2).mean().sqrt() for b in v]) for a in u])
    torch.testing.assert_close(rms_distance(u, v), expected, atol=1e-5, rtol=1e-5)
    same = torch.ones(1, 3)
    same.requires_grad_(True)
    rms_distance(same, torch.ones(1, 3)).sum().backward()
    assert torch.isfinite(same.grad).all()  # coincident points keep a finite gradient


def test_targets_and_entropy():
    smoothed = target_distribution(torch.tensor([2]), 4, label_smoothing=0.2)
    torch.testing.assert_close(smoothed, torch.tensor([[0.05, 0.05, 0.85, 0.05]]))
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert target_distribution(soft, 4, label_smoothing=0.2) is soft  # soft labels are used as given
    assert normalized_entropy(torch.full((1, 4), 0.25)).item() == pytest.approx(1.0)
    assert normalized_entropy(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).item() == pytest.approx(0.0)


def test_classification_loss_with_class_weights_matches_torch():
    probs = torch.softmax(torch.randn(6, 3), dim=-1)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([1.0, 2.0, 0.5])
    targets = F.one_hot(labels, 3).float()
    expected = F.nll_loss(probs.log(), labels, weight=weights)
    torch.testing.assert_close(classification_loss(probs, targets, weights), expected)
    torch.testing.assert_close(classification_loss(probs, targets), F.nll_loss(probs.log(), labels))


def test_anchor_margin_and_diversity_are_bounded():
    collapsed = torch.zeros(3, 2, 8)
    assert anchor_margin_loss(collapsed, margin=1.0).item() == pytest.approx(1.0, abs=1e-5)  # the upper bound
    assert geometry_diversity_loss(collapsed, margin=0.5).item() == pytest.approx(0.5, abs=1e-5)
    spread = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 8) * 10.0
    assert anchor_margin_loss(spread, margin=1.0).item() == 0.0
    one_per_class = torch.randn(3, 1, 8)
    assert geometry_diversity_loss(one_per_class, margin=0.5).item() == 0.0


def test_center_loss_pulls_toward_the_nearest_anchor_of_the_class():
    anchors = torch.tensor([[[0.0, 0.0], [4.0, 4.0]], [[10.0, 10.0], [-10.0, -10.0]]])
    embeddings = torch.tensor([[4.0, 4.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    confidence = torch.tensor([1.0, 0.5])
    # sample 0 sits on an anchor of class 0; sample 1 is RMS 10 away from both class-1 anchors
    assert center_loss(embeddings, anchors, targets, confidence).item() == pytest.approx(0.5 * 0.5 * 100.0)


def test_path_and_reliability_losses():
    targets = F.one_hot(torch.tensor([0, 1]), 2).float()
    right = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    uniform = torch.full((2, 2), 0.5)
    expected = (classification_loss(right, targets) + classification_loss(uniform, targets)) / 2
    torch.testing.assert_close(path_classification_loss((right, uniform), targets), expected)
    confident_and_right = reliability_target_loss(torch.tensor([0.99, 0.99]), right, targets)
    confident_and_wrong = reliability_target_loss(torch.tensor([0.99, 0.99]), right.flip(1), targets)
    assert confident_and_right < 0.05 < math.log(2) < confident_and_wrong


def test_grefel_loss_returns_the_weighted_total_and_named_parts():
    config = GReFELObjective(label_smoothing=0.0, diversity_loss_weight=0.0, reliability_loss_weight=0.2)
    loss_fn = GReFELLoss(config)
    probs = torch.softmax(torch.randn(4, 3), dim=-1)
    kwargs = dict(labels=torch.tensor([0, 1, 2, 0]), final_probs=probs, primary_probs=probs,
                  confidence=torch.full((4,), 0.5), embeddings=torch.randn(4, 8), anchors=torch.randn(3, 2, 8),
                  path_probs=(probs, probs))
    total, parts = loss_fn(**kwargs)
    assert set(parts) == {"classification", "paths", "anchor_margin", "center", "reliability"}  # diversity is 0
    weights = {"classification": config.classification_loss_weight, "paths": config.path_loss_weight,
               "anchor_margin": config.anchor_margin_loss_weight, "center": config.center_loss_weight,
               "reliability": config.reliability_loss_weight}
    torch.testing.assert_close(total, sum(weights[name] * value for name, value in parts.items()))
    with pytest.raises(ValueError, match="class ids in"):
        loss_fn(**{**kwargs, "labels": torch.tensor([0, 1, 2, 3])})


def test_objective_is_checked_against_the_model_config():
    config = GReFELConfig(num_labels=3, primary_input="embedding")
    GReFELObjective().check(config)
    cases = [
        (GReFELObjective(class_weights=[1.0, 2.0]), "class_weights has 2 entries but the model has 3 labels"),
        (GReFELObjective(class_weights=[1.0, -1.0, 1.0]), "class_weights must be finite and >= 0"),
        (GReFELObjective(branch_gradient_scale=1.5), r"branch_gradient_scale must be in \[0, 1\], got 1.5"),
        (GReFELObjective(branch_gradient_scale=0.0), "branch_gradient_scale=0 with primary_input='embedding'"),
        (GReFELObjective(blend_trains_primary=False, path_loss_weight=0.0), "needs path_loss_weight > 0"),
        (GReFELObjective(label_smoothing=1.0), r"label smoothing must be in \[0, 1\)"),
        (GReFELObjective(center_loss_weight=-0.1), "center_loss_weight must be >= 0"),
    ]
    for objective, message in cases:
        with pytest.raises(ValueError, match=message):
            objective.check(config)
    GReFELObjective(branch_gradient_scale=0.0).check(GReFELConfig(num_labels=3, primary_input="backbone"))
