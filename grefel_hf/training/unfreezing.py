"""Progressive unfreezing: the backbone's stages thaw on a schedule in epochs, named in the backbone's own names.

A schedule maps an epoch to the stages that thaw at its start, for example ResNet-50's
`{10: [layer4], 20: [layer3], 30: [layer2], 40: [all]}`: the model's own heads train from the start, the backbone
stays frozen until epoch 10, and every stage thawed once stays thawed. A stage is named as the backbone names its
modules (`layer4`, `blocks.6`, `conv_stem`, `patch_embed`...; an unknown name is refused with the list of names
the backbone has); `all` is the whole backbone.

The optimiser's parameter groups hold every parameter from the start (they are built before the first freeze, with
each part's learning rate: the backbone's `backbone_lr_multiplier` differential rate included), so the learning-rate
schedule, checkpoints and DDP always see one fixed set of groups. A frozen parameter gets no gradient, and the
optimisers skip a parameter without one: no update, no weight decay and no optimiser state until it thaws. The
model is frozen in `on_train_begin`, after Trainer has built the optimiser and wrapped the model for DDP (whose
gradient reduction then covers the parameters that thaw later; Trainer runs DDP with `find_unused_parameters` for
these models, so frozen parameters are not waited for).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from torch import nn
from transformers import TrainerCallback

from .parameter_parts import backbone_of

logger = logging.getLogger(__name__)

WHOLE_BACKBONE = "all"


def parse_unfreeze_schedule(value: str | Mapping | None) -> dict[int, list[str]] | None:
    """`{epoch: [stage names]}` from a mapping (a recipe) or its JSON text (the command line), epochs ascending.

    Raises:
        ValueError: not a mapping of non-negative integer epochs to lists of stage names (the message says so).
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"--unfreeze_schedule must be JSON on the command line, e.g. "
                             f"'{{\"10\": [\"layer4\"], \"20\": [\"all\"]}}', got {value!r}") from err
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"--unfreeze_schedule must map epochs to lists of backbone stage names, got {value!r}")
    schedule: dict[int, list[str]] = {}
    for epoch, names in value.items():
        try:
            start = int(epoch)
        except (TypeError, ValueError):
            start = -1
        if start < 0 or str(start) != str(epoch).strip():
            raise ValueError(f"--unfreeze_schedule: epochs must be integers >= 0, got {epoch!r}")
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"--unfreeze_schedule: epoch {start} must list stage names, got {names!r}")
        schedule[start] = list(names)
    return dict(sorted(schedule.items()))


def backbone_stage_names(backbone: nn.Module) -> list[str]:
    """The names a schedule may use for `backbone`: its top-level modules and parameters, and the numbered members
    of its top-level module lists (`blocks.0`, `blocks.1`, ...), each only when it holds parameters."""
    names = [name for name, _ in backbone.named_parameters(recurse=False)]
    for name, child in backbone.named_children():
        if not any(True for _ in child.parameters()):
            continue
        names.append(name)
        if isinstance(child, nn.Sequential | nn.ModuleList):
            names += [f"{name}.{index}" for index, member in enumerate(child)
                      if any(True for _ in member.parameters())]
    return names


class ProgressiveUnfreezing(TrainerCallback):
    """Sets `requires_grad` of the backbone's parameters at the start of training and of every epoch, as scheduled.

    Args:
        model: the model to train (with `get_backbone()` and `named_parameters()`).
        schedule: `{epoch: [stage names]}`, as `parse_unfreeze_schedule` returns it.

    Raises:
        ValueError: the model has no timm backbone, or a name is not one of the backbone's stages.
    """

    def __init__(self, model: nn.Module, schedule: Mapping[int, list[str]]):
        backbone = backbone_of(model)
        qualified = {id(param): name for name, param in model.named_parameters()}
        self.backbone_parameters = {qualified[id(param)]: param for param in backbone.parameters()}
        known = backbone_stage_names(backbone)
        unknown = sorted({name for names in schedule.values() for name in names} - {*known, WHOLE_BACKBONE})
        if unknown:
            raise ValueError(f"--unfreeze_schedule names {unknown}, which the {type(backbone).__name__} backbone does "
                             f"not have; its stages are {known} (or '{WHOLE_BACKBONE}')")
        local = {name: param for name, param in backbone.named_parameters()}
        self.stages: dict[int, set[str]] = {}
        for epoch, names in schedule.items():
            chosen = {qualified[id(param)] for name, param in local.items()
                      if WHOLE_BACKBONE in names or any(name == s or name.startswith(f"{s}.") for s in names)}
            self.stages[epoch] = chosen
        self.current: set[str] | None = None

    def trainable_at(self, epoch: int) -> set[str]:
        """The backbone parameters (qualified names) that train during `epoch`."""
        return set().union(*(names for start, names in self.stages.items() if start <= epoch))

    def apply(self, epoch: float) -> set[str]:
        """Freeze and thaw the backbone for the epoch in progress at `epoch` (a fractional epoch counts as begun)."""
        trainable = self.trainable_at(math.floor(epoch + 1e-9))
        if trainable != self.current:
            for name, param in self.backbone_parameters.items():
                param.requires_grad_(name in trainable)
            logger.info("epoch %d: %d of %d backbone tensors train", math.floor(epoch + 1e-9), len(trainable),
                        len(self.backbone_parameters))
            self.current = trainable
        return trainable

    def on_train_begin(self, args, state, control, **kwargs: Any):
        self.apply(state.epoch or 0.0)

    def on_epoch_begin(self, args, state, control, **kwargs: Any):
        self.apply(state.epoch or 0.0)


__all__ = ["ProgressiveUnfreezing", "WHOLE_BACKBONE", "backbone_stage_names", "parse_unfreeze_schedule"]
