"""The model's map of its parameters into parts, as parameter groups, freezing and clipping read it.

GReFEL and the baseline say themselves which part each parameter belongs to (`parameter_parts()`: "backbone",
"primary_head", "branch" or "anchors") and which module is their timm backbone (`get_backbone()`). A model without
the map is one part, its heads.
"""

from __future__ import annotations

from torch import nn

PARTS = ("backbone", "primary_head", "branch", "anchors")


def parameter_parts_of(model: nn.Module) -> dict[str, str]:
    """`{parameter name: part}` from the model's own `parameter_parts()`; every parameter is "primary_head" for a
    model without one.

    Raises:
        ValueError: the map misses a parameter or names an unknown part.
    """
    names = [name for name, _ in model.named_parameters()]
    if not hasattr(model, "parameter_parts"):
        return dict.fromkeys(names, "primary_head")
    parts = model.parameter_parts()
    missing = [name for name in names if name not in parts]
    unknown = sorted({part for part in parts.values() if part not in PARTS})
    if missing or unknown:
        raise ValueError(f"{type(model).__name__}.parameter_parts() misses {missing[:5]} or names unknown parts "
                         f"{unknown} (expected {PARTS})")
    return parts


def backbone_of(model: nn.Module) -> nn.Module:
    """The model's timm backbone (`get_backbone()`).

    Raises:
        ValueError: the model has none.
    """
    if not hasattr(model, "get_backbone"):
        raise ValueError(f"{type(model).__name__} has no timm backbone (no get_backbone()), so its backbone "
                         "cannot be frozen or thawed by stage")
    return model.get_backbone()


__all__ = ["PARTS", "backbone_of", "parameter_parts_of"]
