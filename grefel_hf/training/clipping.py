"""Gradient-norm clipping by part: the geometry branch apart from the backbone and the primary head.

Trainer clips the norm of all gradients together. In GReFEL the branch's gradients then count in the norm that
scales the backbone's and the primary head's steps, even when the branch sends no gradient into the backbone
(`branch_gradient_scale=0`): a large branch gradient shrinks p's update. Clipping each part to `max_grad_norm` on
its own gives the backbone and p the clipping a plain classifier would get.
"""

from __future__ import annotations

import torch
from accelerate.utils import DistributedType
from torch import nn

from .parameter_parts import parameter_parts_of

# Distributed types whose engine clips, shards or owns the gradients: per-part clipping and SAM are refused there.
OWN_GRADIENT_ENGINES = (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.XLA)


def check_part_clipping_supported(distributed_type: DistributedType) -> None:
    """Refuse per-part clipping where the engine clips gradients itself (DeepSpeed, FSDP, XLA)."""
    if distributed_type in OWN_GRADIENT_ENGINES:
        raise ValueError(f"clip_branch_separately is not supported under {distributed_type}, which clips or shards "
                         "gradients itself; use it with CPU, single-GPU or DDP training, or set it to False")


def gradient_clip_parts(model: nn.Module) -> list[list[nn.Parameter]]:
    """The trainable parameters of `model` in clipping parts, from its parameter map: [backbone and primary head,
    GReFEL's branch and anchors]. A model without a branch is one part, so it is clipped as Trainer clips it."""
    parts = parameter_parts_of(model)
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    main = [param for name, param in trainable if parts[name] in ("backbone", "primary_head")]
    branch = [param for name, param in trainable if parts[name] in ("branch", "anchors")]
    return [part for part in (main, branch) if part]


def clip_grad_norm_by_part(parts: list[list[nn.Parameter]], max_norm: float) -> torch.Tensor:
    """Clip each part's gradient norm to `max_norm`; returns the norm of all gradients before clipping."""
    norms = [torch.nn.utils.clip_grad_norm_(part, max_norm) for part in parts]
    return torch.linalg.vector_norm(torch.stack([norm.float() for norm in norms]))
