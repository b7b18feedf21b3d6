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

logger = logging.getLogger(__name__)


def find_timm_backbone(model: nn.Module) -> tuple[str, nn.Module]:
    """The first submodule named ``backbone`` that has timm's ``group_matcher``, with its qualified name."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "backbone" and hasattr(module, "group_matcher"):
            return name, module
    raise ValueError(f"{type(model).__name__} has no timm backbone (a submodule named 'backbone' with timm's "
                     "group_matcher), so backbone_frozen_groups cannot be applied")


def backbone_parameter_groups(backbone: nn.Module) -> list[list[str]]:
    """The backbone's parameter names in timm's coarse groups, in order: the stem, then one group per stage."""
    return [list(names) for names in group_parameters(backbone, backbone.group_matcher(coarse=True)).values()]


def freeze_backbone_groups(model: nn.Module, count: int) -> list[str]:
    """Stop gradients to the first `count` coarse parameter groups of the model's timm backbone.

    Returns the qualified names of the frozen parameters (none when `count` is 0). Raises `ValueError` for a
    negative count, for more groups than the backbone has, or for a model without a timm backbone.
    """
    if count < 0:
        raise ValueError(f"backbone_frozen_groups must be >= 0, got {count}")
    if count == 0:
        return []
    prefix, backbone = find_timm_backbone(model)
    groups = backbone_parameter_groups(backbone)
    if count > len(groups):
        raise ValueError(f"backbone_frozen_groups is {count}, but the {type(backbone).__name__} backbone has only "
                         f"{len(groups)} parameter groups (the stem, then one per stage)")
    parameters = dict(backbone.named_parameters())
    frozen = [name for group in groups[:count] for name in group]
    for name in frozen:
        parameters[name].requires_grad_(False)
    logger.info("froze the backbone's first %d of %d parameter groups: %d tensors, %d parameters", count,
                len(groups), len(frozen), sum(parameters[name].numel() for name in frozen))
    return [f"{prefix}.{name}" if prefix else name for name in frozen]


__all__ = ["backbone_parameter_groups", "find_timm_backbone", "freeze_backbone_groups"]
