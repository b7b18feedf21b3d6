"""Sharpness-aware minimisation (SAM, Foret et al. 2021; adaptive SAM, Kwon et al. 2021) inside Trainer's step.

SAM takes the optimiser step with the gradient at perturbed weights w + e, where e = ρ·g/‖g‖ points up the loss
(ASAM: e = ρ·w²·g/‖w·g‖, so each weight moves in proportion to its size). The gradient g is the one Trainer
accumulated over the whole accumulation window (all-reduced over processes under DDP), so SAM with gradient
accumulation or several processes takes the step plain SAM would take on the full effective batch:

1. Trainer's usual forward and backward passes over the window's micro-batches, remembered on the way;
2. after the last one, perturb the weights by e, and run forward and backward again over the same micro-batches
   (gradients synchronised on the last one only, as in the first pass);
3. restore the weights; Trainer clips and steps with the second gradient.

The perturbation's direction does not depend on a gradient scale, so under fp16 the scaled gradients are used as
they are; when they hold an inf or NaN (an overflow), the second pass is skipped and the gradient scaler skips the
step as usual. BatchNorm running statistics are left untouched by the second pass, so they count each batch once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn

from .clipping import OWN_GRADIENT_ENGINES


def check_sam_supported(distributed_type: DistributedType) -> None:
    """Refuse SAM where the engine shards or owns the gradients (DeepSpeed, FSDP, XLA)."""
    if distributed_type in OWN_GRADIENT_ENGINES:
        raise ValueError(f"--sam_rho is not supported under {distributed_type}, which shards or owns the gradients; "
                         "use it with CPU, single-GPU or DDP training, or set --sam_rho 0")


@torch.no_grad()
def sam_perturbation(parameters: Sequence[nn.Parameter], rho: float, adaptive: bool = False) -> list[torch.Tensor] | None:
    """The perturbation e of each parameter from its current gradient, or None when the gradients are all zero or
    not finite (then SAM's second pass is skipped)."""
    grads = [param.grad for param in parameters]
    scaled = [param.abs() * grad for param, grad in zip(parameters, grads, strict=True)] if adaptive else grads
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in scaled]))
    if not torch.isfinite(norm) or norm.item() == 0.0:
        return None
    factor = rho / (norm + 1e-12)
    return [(param.square() * grad if adaptive else grad) * factor.to(grad.dtype)
            for param, grad in zip(parameters, grads, strict=True)]


@contextmanager
def perturbed_weights(parameters: Sequence[nn.Parameter], perturbation: Sequence[torch.Tensor]) -> Iterator[None]:
    """Weights w + e inside the block; exactly w again afterwards."""
    originals = [param.detach().clone() for param in parameters]
    with torch.no_grad():
        for param, offset in zip(parameters, perturbation, strict=True):
            param.add_(offset)
    try:
        yield
    finally:
        with torch.no_grad():
            for param, original in zip(parameters, originals, strict=True):
                param.copy_(original)


@contextmanager
def batch_norm_statistics_kept(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with batch statistics as usual but leave their running statistics unchanged."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for module in norms:
        module.momentum = 0.0  # running = (1 − 0)·running + 0·batch
    try:
        yield
    finally:
        for module, (momentum, tracked) in zip(norms, saved, strict=True):
            module.momentum = momentum
            module.num_batches_tracked.copy_(tracked)


class SharpnessAwareStep:
    """What SAM needs between Trainer's micro-batches: its settings and the current window's micro-batches.

    Args:
        rho: radius ρ of the perturbation.
        adaptive: ASAM's weight-scaled perturbation.
    """

    def __init__(self, rho: float, adaptive: bool = False):
        if rho <= 0:
            raise ValueError(f"SAM needs a radius rho > 0, got {rho}")
        self.rho, self.adaptive = rho, adaptive
        self.window: list[tuple[Any, Any]] = []

    def remember(self, inputs, num_items_in_batch) -> None:
        """Keep a micro-batch of the current accumulation window for the second pass."""
        self.window.append((inputs, num_items_in_batch))

    def take_window(self) -> list[tuple[Any, Any]]:
        """The window's micro-batches, in order; the next window starts empty."""
        window, self.window = self.window, []
        return window


__all__ = ["SharpnessAwareStep", "batch_norm_statistics_kept", "check_sam_supported", "perturbed_weights",
           "sam_perturbation"]
