"""The learning-rate schedule transformers does not have: OneCycle.

PyTorch's `OneCycleLR` (Smith and Topin, 2019) warms the learning rate up from max_lr / div_factor to max_lr along a
half cosine over the first `pct_start` of training, then anneals it along a half cosine to
max_lr / (div_factor · final_div_factor), and by default cycles the momentum (Adam's β1) the other way, 0.95 → 0.85
→ 0.95. None of transformers' schedulers draws that curve: their warm-ups are linear from 0 (`linear`, `cosine`,
`cosine_with_min_lr`, `cosine_warmup_with_min_lr`, `warmup_stable_decay`) and none moves the momentum. So
`--one_cycle` uses PyTorch's own scheduler, once per optimiser step, with each parameter group's learning rate as its
max_lr: a differential learning rate (the backbone's `backbone_lr_multiplier`) keeps its ratio all along.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import OneCycleLR


def one_cycle_scheduler(optimizer: Optimizer, num_training_steps: int, args) -> OneCycleLR:
    """`OneCycleLR` over `num_training_steps` optimiser steps, from the `one_cycle_*` training arguments.

    Raises:
        ValueError: there are no training steps, or momentum cycling is asked of an optimiser without momentum.
    """
    if num_training_steps < 1:
        raise ValueError(f"--one_cycle needs at least one training step, got {num_training_steps}")
    defaults = getattr(optimizer, "defaults", {})
    if args.one_cycle_momentum and "momentum" not in defaults and "betas" not in defaults:
        raise ValueError(f"--one_cycle_momentum needs an optimiser with momentum or Adam's betas; {args.optim} has "
                         "neither: set --one_cycle_momentum false")
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=num_training_steps,
        pct_start=args.one_cycle_pct_start,
        anneal_strategy="cos",
        cycle_momentum=args.one_cycle_momentum,
        div_factor=args.one_cycle_div_factor,
        final_div_factor=args.one_cycle_final_div_factor,
    )


__all__ = ["one_cycle_scheduler"]
