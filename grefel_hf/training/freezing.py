"""Freezing the first parameter groups of a model's timm backbone.

timm orders a backbone's parameters into coarse groups for layer-wise learning-rate decay
(`backbone.group_matcher(coarse=True)`): the stem first, then one group per stage (EfficientNet's block stages,
ResNet's layers, a ViT's blocks). Freezing the first N groups stops backpropagation at the first trainable layer.
The early layers run at the highest resolution, and they then cost no backward pass and no optimiser update, so a
training step gets cheaper: freezing EfficientNet-Lite0's stem and first two stages (3 groups) makes a CPU step at
80 px 0.67x (plain head) to 0.73x (GReFEL) as long (benchmarks/frozen_groups.py). Their BatchNorm layers stay in
training mode: they keep normalising with batch statistics and updating their running statistics.
"""

from __future__ import annotations

import logging

from timm.models import group_parameters
from torch import nn

from .parameter_parts import backbone_of, parameter_parts_of

logger = logging.getLogger(__name__)


def backbone_parameter_groups(backbone: nn.Module) -> list[list[str]]:
    """The backbone's parameter names in timm's coarse groups, in order: the stem, then one group per stage."""
    return [list(names) for names in group_parameters(backbone, backbone.group_matcher(coarse=True)).values()]


def freeze_backbone_groups(model: nn.Module, count: int) -> list[str]:
    """Stop gradients to the first `count` coarse parameter groups of the model's timm backbone.

    Returns the qualified names of the frozen parameters (none when `count` is 0); each is in the "backbone" part of
    the model's parameter map. Raises `ValueError` for a negative count, for more groups than the backbone has, or
    for a model without a timm backbone.
    """
    if count < 0:
        raise ValueError(f"backbone_frozen_groups must be >= 0, got {count}")
    if count == 0:
        return []
    backbone = backbone_of(model)
    groups = backbone_parameter_groups(backbone)
    if count > len(groups):
        raise ValueError(f"backbone_frozen_groups is {count}, but the {type(backbone).__name__} backbone has only "
                         f"{len(groups)} parameter groups (the stem, then one per stage)")
    qualified = {id(param): name for name, param in model.named_parameters()}
    parts = parameter_parts_of(model)
    parameters = dict(backbone.named_parameters())
    frozen = []
    for name in (name for group in groups[:count] for name in group):
        parameters[name].requires_grad_(False)
        frozen.append(qualified[id(parameters[name])])
    outside = [name for name in frozen if parts[name] != "backbone"]
    if outside:
        raise ValueError(f"the backbone's groups hold parameters the model maps outside its backbone: {outside[:5]}")
    logger.info("froze the backbone's first %d of %d parameter groups: %d tensors, %d parameters", count,
                len(groups), len(frozen), sum(parameters[name].numel() for group in groups[:count] for name in group))
    return frozen


__all__ = ["backbone_parameter_groups", "freeze_backbone_groups"]
