"""The GReFEL training objective: one small function per term, and `GReFELLoss` that weighs and sums them.

Distances are RMS distances (‖u − v‖₂ / √D), so margins do not depend on the embedding size.
This file is saved next to checkpoints as remote code: it imports only torch and the standard library.
"""

from __future__ import annotations

import math

import torch
from torch import nn
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


class GReFELLoss(nn.Module):
    """The weighted multi-term GReFEL objective. All weights, margins and the smoothing come from the config.

    `forward` returns `(total, parts)` where `parts` maps each term's name to its unweighted value, so a trainer
    can log every part. Terms with weight 0 are skipped.
    """

    def __init__(self, config):
        super().__init__()
        # No buffers here: from_pretrained materialises non-persistent buffers as uninitialised memory, so the
        # class weights are read from the config at each call instead.
        self.config = config

    def forward(
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
        cfg = self.config
        targets = target_distribution(labels, final_probs.shape[1], cfg.label_smoothing)
        class_weights = None
        if cfg.class_weights is not None:
            class_weights = torch.tensor(cfg.class_weights, dtype=final_probs.dtype, device=final_probs.device)
        terms = {
            "classification": (cfg.classification_loss_weight,
                               lambda: classification_loss(final_probs, targets, class_weights)),
            "paths": (cfg.path_loss_weight if path_probs else 0.0,
                      lambda: path_classification_loss(path_probs, targets)),
            "anchor_margin": (cfg.anchor_margin_loss_weight, lambda: anchor_margin_loss(anchors, cfg.anchor_margin)),
            "center": (cfg.center_loss_weight, lambda: center_loss(embeddings, anchors, targets, confidence)),
            "diversity": (cfg.diversity_loss_weight,
                          lambda: geometry_diversity_loss(anchors, cfg.diversity_margin)),
            "reliability": (cfg.reliability_loss_weight,
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
