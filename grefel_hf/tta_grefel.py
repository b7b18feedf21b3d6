"""Test-time augmentation (TTA): one implementation for evaluation, training, the pipeline and prediction.

A view is a cheap, label-preserving change of an already processed batch (`pixel_values`, shape (B, C, H, W)): the
image itself, its mirror, or a shift by a small fraction of its size (edges replicated). The model's final
distributions over the views are averaged, and so are its reliability scores.

This file is saved next to checkpoints as remote code (the pipeline uses it): it imports only torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

TTA_VIEWS = ("identity", "hflip", "shift_left", "shift_right", "shift_up", "shift_down")
"""Every view, in the order `--tta_views N` takes the first N of."""

MAX_TTA_SHIFT = 0.25
"""Largest shift, as a fraction of the image size: beyond it a view would cut off part of the face."""

_SHIFTS = {"shift_left": (0, -1), "shift_right": (0, 1), "shift_up": (-1, 0), "shift_down": (1, 0)}


def resolve_views(views: int | Sequence[str]) -> tuple[str, ...]:
    """The view names of `views`: a count N (the first N of `TTA_VIEWS`) or names from `TTA_VIEWS`.

    Raises:
        ValueError: a count outside 1..6, an unknown name, or a repeated one.
    """
    if isinstance(views, int):
        if not 1 <= views <= len(TTA_VIEWS):
            raise ValueError(f"the number of TTA views must be in 1..{len(TTA_VIEWS)}, got {views}")
        return TTA_VIEWS[:views]
    names = tuple(views)
    unknown = [name for name in names if name not in TTA_VIEWS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"TTA views must be distinct names from {TTA_VIEWS}, got {list(names)}")
    return names


def check_shift(shift: float) -> None:
    """Refuse a shift outside (0, MAX_TTA_SHIFT]."""
    if not 0.0 < shift <= MAX_TTA_SHIFT:
        raise ValueError(f"the TTA shift must be a fraction of the image size in (0, {MAX_TTA_SHIFT}], got {shift}")


def make_view(pixel_values: torch.Tensor, name: str, shift: float = 0.05) -> torch.Tensor:
    """One view of a (B, C, H, W) batch; a shift moves the image by round(shift × width) pixels (at least 1)."""
    if name == "identity":
        return pixel_values
    if name == "hflip":
        return pixel_values.flip(-1)
    dy, dx = _SHIFTS[name]
    pixels = max(1, round(shift * pixel_values.shape[-1]))
    padded = F.pad(pixel_values, (pixels, pixels, pixels, pixels), mode="replicate")
    height, width = pixel_values.shape[-2:]
    top, left = pixels - dy * pixels, pixels - dx * pixels
    return padded[..., top : top + height, left : left + width]


def tta_views(pixel_values: torch.Tensor, views: int | Sequence[str] = 6, shift: float = 0.05) -> list[torch.Tensor]:
    """The views `views` (a count or names, see `resolve_views`) of a processed batch."""
    check_shift(shift)
    return [make_view(pixel_values, name, shift) for name in resolve_views(views)]


def predict_probabilities(model, pixel_values: torch.Tensor, views: int | Sequence[str] = 1,
                          shift: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean final distribution (B, C) of `model` over the views of `pixel_values`, and its reliability (B,).

    `model` returns log-probabilities as `logits` (GReFEL and the baseline do). The reliability is the mean of the
    model's own reliability over the views; a model that returns none gets one minus the normalised entropy of the
    mean distribution.
    """
    outputs = [model(pixel_values=view) for view in tta_views(pixel_values, views, shift)]
    probs = torch.stack([out.logits.float().exp() for out in outputs]).mean(dim=0)
    if all(out.get("reliability") is not None for out in outputs):
        return probs, torch.stack([out.reliability.float() for out in outputs]).mean(dim=0)
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(dim=-1) / torch.log(torch.tensor(float(probs.shape[-1])))
    return probs, (1.0 - entropy).clamp(0.0, 1.0)


__all__ = ["MAX_TTA_SHIFT", "TTA_VIEWS", "check_shift", "make_view", "predict_probabilities", "resolve_views",
           "tta_views"]
