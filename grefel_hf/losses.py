"""The GReFEL training objective: one small function per term, and `GReFELLoss` that weighs and sums them.

Distances are RMS distances (‖u − v‖₂ / √D), so margins do not depend on the embedding size.
This file is saved next to checkpoints as remote code: it imports only torch and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

_PROB_EPS = 1e-8
_SOFT_LABEL_TOLERANCE = 1e-3


def rms_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pairwise RMS distances between the rows of `u` (..., N, D) and `v` (..., M, D), shape (..., N, M).

    Computed as ‖u‖² + ‖v‖² − 2·u·v (one matrix product instead of an (N, M, D) difference tensor). A small
    epsilon under the square root keeps the gradient finite when two points coincide.
    """
    dim = u.shape[-1]
    sq = u.pow(2).sum(-1, keepdim=True) + v.pow(2).sum(-1).unsqueeze(-2) - 2.0 * (u @ v.transpose(-1, -2))
    return torch.sqrt((sq / dim).clamp_min(0.0) + 1e-12)


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution over the last axis divided by log C, in [0, 1]."""
    num_classes = probs.shape[-1]
    entropy = -(probs * probs.clamp_min(_PROB_EPS).log()).sum(dim=-1)
    return (entropy / math.log(num_classes)).clamp(0.0, 1.0)


def target_distribution(labels: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Turn hard labels (B,) into smoothed one-hot targets, or validate soft labels (B, C) and return them.

    Soft labels (FER+ vote distributions, CutMix/Mixup targets) are returned unchanged: whoever produced them
    decided their smoothing.

    Raises:
        ValueError: when a hard label is out of range, or soft labels have the wrong shape, negative mass or rows
            that do not sum to 1.
    """
    if labels.dim() == 1 and not labels.is_floating_point():
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            bad = labels[(labels < 0) | (labels >= num_classes)][:5].tolist()
            raise ValueError(f"labels must be class ids in [0, {num_classes}), got {bad}")
        one_hot = F.one_hot(labels.long(), num_classes).float()
        return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes
    if labels.dim() == 2 and labels.is_floating_point():
        if labels.shape[1] != num_classes:
            raise ValueError(f"soft labels must have shape (batch, {num_classes}), got {tuple(labels.shape)}")
        row_sums = labels.sum(dim=1)
        if (labels < 0).any() or ((row_sums - 1.0).abs() > _SOFT_LABEL_TOLERANCE).any():
            raise ValueError("soft labels must be non-negative and each row must sum to 1; got row sums "
                             f"{row_sums[:5].tolist()}")
        return labels
    raise ValueError("labels must be integer class ids of shape (batch,) or float distributions of shape "
                     f"(batch, {num_classes}); got dtype {labels.dtype} and shape {tuple(labels.shape)}")


def classification_loss(
    final_probs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy between target distributions (B, C) and the final GReFEL distribution (B, C).

    With class weights, each sample is weighted by the target mass it puts on each class, and the result is
    normalised by the total weight (as `F.cross_entropy(weight=...)` does for hard labels).
    """
    per_sample = -(targets * final_probs.clamp_min(_PROB_EPS).log()).sum(dim=1)
    if class_weights is None:
        return per_sample.mean()
    sample_weights = targets @ class_weights.to(targets)
    return (sample_weights * per_sample).sum() / sample_weights.sum().clamp_min(_PROB_EPS)


def path_classification_loss(path_probs: tuple[torch.Tensor, ...], targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each path's own distribution (primary p, anchor g, attentive t).

    q blends p with r = blend(g, t) by confidence, so an untrained path drags q toward its own bias wherever p is
    unsure (most FER images). Supervising every path directly keeps each one a classifier in its own right.
    """
    return torch.stack([classification_loss(probs, targets) for probs in path_probs]).mean()


def anchor_margin_loss(anchors: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge that pushes anchors of different classes at least `margin` apart; bounded in [0, margin].

    Args:
        anchors: (C, K, D) class anchors.
    """
    num_classes, per_class, dim = anchors.shape
    dist = rms_distance(anchors.reshape(-1, dim), anchors.reshape(-1, dim))
    cls = torch.arange(num_classes, device=anchors.device).repeat_interleave(per_class)
    other_class = cls.unsqueeze(0) != cls.unsqueeze(1)
    return F.relu(margin - dist[other_class]).mean()


def geometry_diversity_loss(anchors: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge that keeps the anchors of one class at least `margin` apart from each other; bounded in [0, margin]."""
    per_class = anchors.shape[1]
    if per_class < 2:
        return anchors.new_zeros(())
    dist = rms_distance(anchors, anchors)  # (C, K, K)
    off_diagonal = ~torch.eye(per_class, dtype=torch.bool, device=anchors.device)
    return F.relu(margin - dist[:, off_diagonal]).mean()


def center_loss(
    embeddings: torch.Tensor, anchors: torch.Tensor, targets: torch.Tensor, confidence: torch.Tensor
) -> torch.Tensor:
    """Pull each embedding toward the nearest anchor of its class, weighted by the (detached) primary confidence.

    With soft targets, the squared distance to each class's nearest anchor is weighted by the target mass.
    """
    num_classes, per_class, dim = anchors.shape
    sq = rms_distance(embeddings, anchors.reshape(-1, dim)).pow(2)  # (B, C*K)
    nearest = sq.view(-1, num_classes, per_class).min(dim=2).values  # (B, C)
    per_sample = (targets * nearest).sum(dim=1)
    return (confidence.detach() * per_sample).mean()


def reliability_target_loss(
    confidence: torch.Tensor, primary_probs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy teaching the primary confidence to predict whether the primary prediction is right."""
    correct = (primary_probs.argmax(dim=1) == targets.argmax(dim=1)).float()
    return F.binary_cross_entropy(confidence.clamp(_PROB_EPS, 1 - _PROB_EPS), correct)


@dataclass
class GReFELObjective:
    r"""
    How a GReFEL model is trained: the weights of its loss terms, label smoothing, class weights and how the
    gradients are routed. None of it is saved with the model: `GReFELTrainer` holds one, filled from the training
    arguments of the same names (`label_smoothing` from `--label_smoothing_factor`, `class_weights` from
    `--class_balance`), and computes the loss with it from the model's outputs. With every setting at its default it
    is the model's own default loss (the `loss` its forward pass returns given `labels`).

    Args:
        classification_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the cross-entropy on the final distribution.
        path_loss_weight (`float`, *optional*, defaults to 0.5):
            Weight of the mean cross-entropy of each path's own distribution (p, g, t). Without it the anchor and
            attentive paths learn only through q and drag it toward their bias (0 disables it).
        anchor_margin_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of the bounded hinge that pushes anchors of different classes at least `anchor_margin` apart.
        anchor_margin (`float`, *optional*, defaults to 1.0):
            Margin of that hinge, in RMS distance units.
        center_loss_weight (`float`, *optional*, defaults to 0.05):
            Weight of the confidence-weighted pull of each embedding toward its class's nearest anchor.
        diversity_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the hinge that keeps the anchors of one class `diversity_margin` apart (0 disables it).
        diversity_margin (`float`, *optional*, defaults to 0.5):
            Margin of that hinge.
        reliability_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the binary cross-entropy teaching the primary confidence to predict whether p is right (the
            enhanced reliability variant learns something specific only with it; 0 disables it).
        label_smoothing (`float`, *optional*, defaults to 0.11):
            Smoothing of hard labels; soft labels (FER+ votes, CutMix/Mixup targets) are used as given.
        class_weights (`list[float]`, *optional*):
            Per-class weights of the classification loss (inverse frequencies, the paper's answer to imbalance);
            `None` weighs all classes equally.
        branch_gradient_scale (`float`, *optional*, defaults to 1.0):
            Scale in [0, 1] of the gradient GReFEL's branch sends back into the backbone. 1 is end to end (the
            paper); 0 lets only the primary head train the backbone (needs `primary_input="backbone"`). Predictions
            are the same for every value.
        blend_trains_primary (`bool`, *optional*, defaults to `True`):
            Whether the cross-entropy on the final blend reaches the primary head (the paper: True). False trains p
            by its own path cross-entropy alone, like a plain head (needs `path_loss_weight > 0`). Predictions are
            the same either way.
    """

    classification_loss_weight: float = 1.0
    path_loss_weight: float = 0.5
    anchor_margin_loss_weight: float = 0.1
    anchor_margin: float = 1.0
    center_loss_weight: float = 0.05
    diversity_loss_weight: float = 0.0
    diversity_margin: float = 0.5
    reliability_loss_weight: float = 0.0
    label_smoothing: float = 0.11
    class_weights: list[float] | None = None
    branch_gradient_scale: float = 1.0
    blend_trains_primary: bool = True

    def model_kwargs(self) -> dict[str, Any]:
        """The settings that route gradients inside the model's forward pass, as its keyword arguments."""
        return {"branch_gradient_scale": self.branch_gradient_scale, "blend_trains_primary": self.blend_trains_primary}

    def loss(self, model, outputs, labels: torch.Tensor,
             trust: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`(total, parts)` of this objective for a GReFEL model's `outputs` (a `GReFELImageClassifierOutput`,
        from a forward pass given `model_kwargs()`) on `labels`; `model` supplies the class anchors.

        Args:
            trust: τ of the training blend (1 − τ)·p + τ·q that the classification term scores (the trust ramp,
                which the trainer raises from 0 to 1 over training). None scores the model's own final distribution,
                `exp(logits)`, as at inference.
        """
        p, q = outputs.primary_probs, outputs.corrected_probs
        if trust is None:
            final = outputs.logits.exp()
        else:  # the blend reaches p only when blend_trains_primary, as q does
            final = (1.0 - trust) * (p if self.blend_trains_primary else p.detach()) + trust * q
        return GReFELLoss(self)(
            labels=labels, final_probs=final, primary_probs=p, confidence=outputs.confidences[:, 0],
            embeddings=outputs.embeddings, anchors=model.grefel.anchors,
            path_probs=(p, outputs.anchor_probs, outputs.attentive_probs),
        )

    def check(self, config) -> None:
        """Raise a `ValueError` naming the setting when it is impossible, or impossible for `config`'s model."""
        for name in ("classification_loss_weight", "path_loss_weight", "anchor_margin_loss_weight",
                     "center_loss_weight", "diversity_loss_weight", "reliability_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        check_class_weights(self.class_weights, config.num_labels)
        if not 0.0 <= self.branch_gradient_scale <= 1.0:
            raise ValueError(f"branch_gradient_scale must be in [0, 1], got {self.branch_gradient_scale!r}")
        if self.branch_gradient_scale == 0 and config.primary_input == "embedding":
            raise ValueError("branch_gradient_scale=0 with primary_input='embedding' leaves nothing to train the "
                             "backbone: the primary head reads the branch's embedding. Use primary_input='backbone' "
                             "or a scale above 0")
        if not self.blend_trains_primary and not self.path_loss_weight:
            raise ValueError("blend_trains_primary=False needs path_loss_weight > 0: with the blend detached from "
                             "the primary head, its own path cross-entropy is all that trains it")


def check_class_weights(class_weights: list[float] | None, num_labels: int) -> None:
    """Refuse class weights of the wrong length, or negative or non-finite ones."""
    if class_weights is None:
        return
    if len(class_weights) != num_labels:
        raise ValueError(f"class_weights has {len(class_weights)} entries but the model has {num_labels} labels")
    if any(not math.isfinite(w) or w < 0 for w in class_weights):
        raise ValueError(f"class_weights must be finite and >= 0, got {list(class_weights)}")


class GReFELLoss:
    """The weighted multi-term GReFEL objective; every weight, margin and the smoothing come from a `GReFELObjective`.

    Calling it returns `(total, parts)` where `parts` maps each term's name to its unweighted value, so a trainer
    can log every part. Terms with weight 0 are skipped.
    """

    def __init__(self, objective: GReFELObjective):
        self.objective = objective

    def __call__(
        self,
        *,
        labels: torch.Tensor,
        final_probs: torch.Tensor,
        primary_probs: torch.Tensor,
        confidence: torch.Tensor,
        embeddings: torch.Tensor,
        anchors: torch.Tensor,
        path_probs: tuple[torch.Tensor, ...] = (),
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obj = self.objective
        targets = target_distribution(labels, final_probs.shape[1], obj.label_smoothing)
        class_weights = None
        if obj.class_weights is not None:
            class_weights = torch.tensor(obj.class_weights, dtype=final_probs.dtype, device=final_probs.device)
        terms = {
            "classification": (obj.classification_loss_weight,
                               lambda: classification_loss(final_probs, targets, class_weights)),
            "paths": (obj.path_loss_weight if path_probs else 0.0,
                      lambda: path_classification_loss(path_probs, targets)),
            "anchor_margin": (obj.anchor_margin_loss_weight, lambda: anchor_margin_loss(anchors, obj.anchor_margin)),
            "center": (obj.center_loss_weight, lambda: center_loss(embeddings, anchors, targets, confidence)),
            "diversity": (obj.diversity_loss_weight,
                          lambda: geometry_diversity_loss(anchors, obj.diversity_margin)),
            "reliability": (obj.reliability_loss_weight,
                            lambda: reliability_target_loss(confidence, primary_probs, targets)),
        }
        parts: dict[str, torch.Tensor] = {}
        total = final_probs.new_zeros(())
        for name, (weight, compute) in terms.items():
            if weight:
                parts[name] = compute()
                total = total + weight * parts[name]
        return total, parts


__all__ = [
    "GReFELLoss",
    "GReFELObjective",
    "check_class_weights",
    "anchor_margin_loss",
    "center_loss",
    "classification_loss",
    "geometry_diversity_loss",
    "normalized_entropy",
    "path_classification_loss",
    "reliability_target_loss",
    "rms_distance",
    "target_distribution",
]
