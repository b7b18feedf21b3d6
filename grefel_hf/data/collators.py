"""Batch collators: face-aware CutMix / Mixup for training, plain stacking for evaluation.

The training loader gets :class:`GReFELMixCollator`; the evaluation loader must get
:class:`GReFELEvalCollator` (``Trainer`` reuses ``data_collator`` for evaluation, so a mixing collator there
would silently mix validation batches).

Training targets are always soft distributions of shape ``(batch, num_labels)`` that sum to 1: hard class
ids and FER+ vote distributions both become distributions, label smoothing is folded in, and the two mixed
samples' distributions are combined with the same weight λ as their pixels. The loss therefore applies no
further smoothing to soft targets.

Face-aware CutMix: facial-expression cues live around the eyes, brows and mouth, so pasting a patch over them
can erase the very evidence the (unmixed) label refers to. Following GReFEL seed 000, the cut box is sampled
in the periphery only and never intersects a protected central region. λ is then corrected by the area
actually cut, as timm's ``mixup.py`` does for boxes clipped at the image border.

All randomness comes from torch's RNG (an optional ``torch.Generator``, else the global one), so a run is
reproducible from its seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Tolerance for "a soft label sums to 1": FER+ vote distributions are stored as float32 fractions.
_SOFT_LABEL_SUM_ATOL = 1e-3

Box = tuple[int, int, int, int]
"""A pixel box ``(y0, y1, x0, x1)``, half-open: rows ``y0:y1`` and columns ``x0:x1``."""


@dataclass(frozen=True)
class MixingDefaults:
    """The default mixing of training batches: the collator's defaults, and those of the training arguments
    (``--mixup_alpha``, ``--cutmix_alpha``, ``--mix_prob``, ``--mix_switch_prob``), which read them here.

    Args:
        mixup_alpha: Mixup λ ~ Beta(α, α) (timm's default).
        cutmix_alpha: CutMix λ ~ Beta(α, α) (timm's default).
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than Mixup when both are enabled.
    """

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 0.5
    switch_prob: float = 0.5


MIXING_DEFAULTS = MixingDefaults()


# ----------------------------------------------------------------------------------------------------------
# Small pure helpers (sampling, boxes, targets)
# ----------------------------------------------------------------------------------------------------------


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """Draw λ ~ Beta(alpha, alpha) from torch's RNG.

    ``torch.distributions.Beta`` cannot take a ``torch.Generator``; it samples through the same Dirichlet
    kernel used here, which does accept one (a Beta(a, a) draw is the first coordinate of a
    Dirichlet([a, a]) draw).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 to sample Beta(alpha, alpha), got {alpha}")
    concentration = torch.tensor([float(alpha), float(alpha)], dtype=torch.float64)
    return float(torch._sample_dirichlet(concentration, generator=generator)[0])


def _uniform_int(low: int, high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[low, high]`` (both inclusive) from torch's RNG."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def protected_box_pixels(height: int, width: int, protected_region: Sequence[float]) -> Box:
    """Convert a protected region ``(x0, y0, x1, y1)`` in fractions into a pixel box ``(y0, y1, x0, x1)``.

    The box is rounded outwards (floor for the start, ceil for the end) so that every pixel touched by the
    fractional region is protected.
    """
    fx0, fy0, fx1, fy1 = protected_region
    return (
        math.floor(fy0 * height),
        min(height, math.ceil(fy1 * height)),
        math.floor(fx0 * width),
        min(width, math.ceil(fx1 * width)),
    )


def _peripheral_bands(height: int, width: int, protected: Box) -> list[Box]:
    """The four strips around the protected box (top, bottom, left, right), dropping empty ones.

    A box avoids the protected region exactly when it lies entirely inside one of these strips.
    """
    py0, py1, px0, px1 = protected
    bands = [(0, py0, 0, width), (py1, height, 0, width), (0, height, 0, px0), (0, height, px1, width)]
    return [band for band in bands if band[1] > band[0] and band[3] > band[2]]


def sample_peripheral_box(
    height: int,
    width: int,
    lam: float,
    protected_region: Sequence[float],
    generator: torch.Generator | None = None,
) -> Box:
    """Sample a CutMix box of area about ``(1 - lam) * H * W`` that never touches the protected region.

    The box size follows timm's rule (side ratio ``sqrt(1 - lam)``). Its position is chosen uniformly inside
    one peripheral strip around the protected region (see :func:`_peripheral_bands`). The strip is drawn
    uniformly among those that can hold a box of that size; when none can, among all strips, and the box is
    shrunk to fit it. Returns an empty box ``(0, 0, 0, 0)`` when the protected region leaves no periphery.
    """
    bands = _peripheral_bands(height, width, protected_box_pixels(height, width, protected_region))
    if not bands:
        return (0, 0, 0, 0)
    cut_ratio = math.sqrt(max(0.0, 1.0 - lam))
    cut_h, cut_w = round(height * cut_ratio), round(width * cut_ratio)
    if cut_h == 0 or cut_w == 0:
        return (0, 0, 0, 0)
    fitting = [b for b in bands if cut_h <= b[1] - b[0] and cut_w <= b[3] - b[2]]
    candidates = fitting or bands
    by0, by1, bx0, bx1 = candidates[_uniform_int(0, len(candidates) - 1, generator)]
    box_h, box_w = min(cut_h, by1 - by0), min(cut_w, bx1 - bx0)
    y0 = by0 + _uniform_int(0, (by1 - by0) - box_h, generator)
    x0 = bx0 + _uniform_int(0, (bx1 - bx0) - box_w, generator)
    return (y0, y0 + box_h, x0, x0 + box_w)


def box_overlaps(box: Box, other: Box) -> bool:
    """Whether two half-open pixel boxes ``(y0, y1, x0, x1)`` share at least one pixel."""
    return box[0] < other[1] and other[0] < box[1] and box[2] < other[3] and other[2] < box[3]


def smooth_targets(distributions: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Fold label smoothing into distributions of shape ``(batch, num_labels)``: ``(1 - s) * p + s / C``."""
    num_labels = distributions.shape[-1]
    return distributions * (1.0 - smoothing) + smoothing / num_labels


# ----------------------------------------------------------------------------------------------------------
# Validation and stacking shared by both collators
# ----------------------------------------------------------------------------------------------------------


def _get_label(example: Mapping[str, Any], index: int) -> Any:
    """The example's label, from ``labels`` (preferred) or ``label``."""
    for key in ("labels", "label"):
        if key in example and example[key] is not None:
            return example[key]
    raise ValueError(f"example {index} has no 'labels' (or 'label') entry; keys are {sorted(example)}")


def _is_soft_label(value: Any) -> bool:
    """Hard labels are scalars (int, 0-d tensor/array); soft labels are sequences / 1-d tensors."""
    if isinstance(value, torch.Tensor) or hasattr(value, "ndim"):
        return value.ndim > 0
    return isinstance(value, Sequence) and not isinstance(value, str)


def _hard_label(value: Any, num_labels: int | None, index: int) -> int:
    """Validate a hard class id and return it as a Python int."""
    number = value.item() if hasattr(value, "item") else value
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"example {index}: hard label must be an integer class id, got {value!r}")
    try:
        label = int(number)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"example {index}: label must be an int class id or a soft distribution, got {value!r}"
        ) from error
    if num_labels is not None and not 0 <= label < num_labels:
        raise ValueError(f"example {index}: label {label} is out of range [0, {num_labels - 1}]")
    return label


def _soft_label(value: Any, num_labels: int | None, index: int) -> torch.Tensor:
    """Validate a soft label distribution and return it as a float32 tensor of shape ``(num_labels,)``."""
    soft = torch.as_tensor(value, dtype=torch.float32).flatten()
    if num_labels is not None and soft.numel() != num_labels:
        raise ValueError(
            f"example {index}: soft label has {soft.numel()} values, expected num_labels={num_labels}"
        )
    if not torch.isfinite(soft).all() or (soft < 0).any():
        raise ValueError(f"example {index}: soft label must be finite and non-negative, got {soft.tolist()}")
    total = float(soft.sum())
    if abs(total - 1.0) > _SOFT_LABEL_SUM_ATOL:
        raise ValueError(
            f"example {index}: soft label must sum to 1 (±{_SOFT_LABEL_SUM_ATOL}), got sum {total:.6f}"
        )
    return soft


def stack_pixel_values(examples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """Validate the examples' ``pixel_values`` (float ``(C, H, W)``) and stack them into ``(B, C, H, W)``."""
    if len(examples) == 0:
        raise ValueError("cannot collate an empty list of examples")
    images = []
    for index, example in enumerate(examples):
        if "pixel_values" not in example:
            raise ValueError(f"example {index} has no 'pixel_values'; keys are {sorted(example)}")
        image = torch.as_tensor(example["pixel_values"])
        if image.ndim != 3 or not image.is_floating_point():
            raise ValueError(
                f"example {index}: pixel_values must be a float tensor of shape (C, H, W), "
                f"got dtype {image.dtype} and shape {tuple(image.shape)}"
            )
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"example {index}: pixel_values shape {tuple(image.shape)} differs from example 0's "
                f"{tuple(images[0].shape)}; all images in a batch must have the same size"
            )
        images.append(image)
    return torch.stack(images)


def labels_to_distributions(examples: Sequence[Mapping[str, Any]], num_labels: int) -> torch.Tensor:
    """Turn each example's hard or soft label into a distribution; returns float32 ``(B, num_labels)``."""
    rows = []
    for index, example in enumerate(examples):
        value = _get_label(example, index)
        if _is_soft_label(value):
            rows.append(_soft_label(value, num_labels, index))
        else:
            one_hot = torch.zeros(num_labels, dtype=torch.float32)
            one_hot[_hard_label(value, num_labels, index)] = 1.0
            rows.append(one_hot)
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------------------------
# Collators
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixDecision:
    """How one batch is mixed: ``lam`` is each sample's own weight (1.0 = unmixed), ``box`` the CutMix box."""

    lam: float
    box: Box | None = None


class GReFELMixCollator:
    """Training collator with face-aware CutMix / Mixup and label smoothing folded into soft targets.

    One λ (and one box) per batch; each sample is mixed with its partner in the flipped batch (sample ``i``
    with sample ``B - 1 - i``), as timm's batch mode does.

    Args:
        num_labels (`int`): number of classes; every target has this many entries.
        mixup_alpha (`float`, *optional*, defaults to 0.8): Mixup λ ~ Beta(α, α); 0 disables Mixup.
        cutmix_alpha (`float`, *optional*, defaults to 1.0): CutMix λ ~ Beta(α, α) before area correction;
            0 disables CutMix.
        prob (`float`, *optional*, defaults to 0.5): probability that a batch is mixed at all.
        switch_prob (`float`, *optional*, defaults to 0.5): when both are enabled, probability of CutMix
            rather than Mixup.
        label_smoothing (`float`, *optional*, defaults to 0.0): smoothing folded into every target; the trainer
            passes the training argument ``--label_smoothing_factor``.
        protected_region (`tuple[float, ...]`, *optional*, defaults to `(0.2, 0.25, 0.8, 0.85)`):
            ``(x0, y0, x1, y1)`` as fractions of width/height; the CutMix box never intersects it.
        generator (`torch.Generator`, *optional*): RNG for all draws; the global torch RNG when omitted.

    With both alphas at 0 the collator never mixes and only converts labels to smoothed distributions.
    """

    def __init__(
        self,
        num_labels: int,
        mixup_alpha: float = MIXING_DEFAULTS.mixup_alpha,
        cutmix_alpha: float = MIXING_DEFAULTS.cutmix_alpha,
        prob: float = MIXING_DEFAULTS.prob,
        switch_prob: float = MIXING_DEFAULTS.switch_prob,
        label_smoothing: float = 0.0,
        protected_region: Sequence[float] = (0.2, 0.25, 0.8, 0.85),
        generator: torch.Generator | None = None,
    ) -> None:
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(
                f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}"
            )
        for name, value in (
            ("prob", prob),
            ("switch_prob", switch_prob),
            ("label_smoothing", label_smoothing),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        protected_region = tuple(float(v) for v in protected_region)
        if len(protected_region) != 4:
            raise ValueError(f"protected_region must be (x0, y0, x1, y1), got {protected_region}")
        x0, y0, x1, y1 = protected_region
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(
                "protected_region must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "
                f"got {protected_region}"
            )
        if cutmix_alpha > 0 and (x0, y0, x1, y1) == (0.0, 0.0, 1.0, 1.0):
            raise ValueError(
                "protected_region covers the whole image, so CutMix could never cut; set cutmix_alpha=0"
            )
        self.num_labels = num_labels
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.protected_region = protected_region
        self.generator = generator

    def _uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def sample_mix(self, height: int, width: int) -> MixDecision:
        """Decide how one batch of ``height x width`` images is mixed (λ, and the box for CutMix)."""
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            return MixDecision(lam=1.0)
        if self._uniform() >= self.prob:
            return MixDecision(lam=1.0)
        use_cutmix = self.mixup_alpha == 0 or (self.cutmix_alpha > 0 and self._uniform() < self.switch_prob)
        if not use_cutmix:
            return MixDecision(lam=sample_beta(self.mixup_alpha, self.generator))
        sampled = sample_beta(self.cutmix_alpha, self.generator)
        box = sample_peripheral_box(height, width, sampled, self.protected_region, self.generator)
        # λ is what is really left of each sample after the (possibly shrunk) box is pasted over it.
        lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / (height * width)
        return MixDecision(lam=lam, box=box)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate examples into ``{"pixel_values": (B, C, H, W) float, "labels": (B, num_labels) float}``."""
        pixel_values = stack_pixel_values(examples)
        targets = smooth_targets(labels_to_distributions(examples, self.num_labels), self.label_smoothing)
        decision = self.sample_mix(pixel_values.shape[-2], pixel_values.shape[-1])
        if decision.lam < 1.0:
            partner_pixels, partner_targets = pixel_values.flip(0), targets.flip(0)
            if decision.box is None:
                pixel_values = pixel_values * decision.lam + partner_pixels * (1.0 - decision.lam)
            else:
                y0, y1, x0, x1 = decision.box
                pixel_values[..., y0:y1, x0:x1] = partner_pixels[..., y0:y1, x0:x1]
            targets = targets * decision.lam + partner_targets * (1.0 - decision.lam)
        return {"pixel_values": pixel_values, "labels": targets}


class GReFELEvalCollator:
    """Evaluation collator: stacks images and labels, never mixes and never smooths.

    Hard labels become int64 ``(B,)``; when every example carries a soft distribution the labels are float32
    ``(B, num_labels)``. A batch mixing hard and soft labels is rejected. Examples without any label
    (unlabelled test data) give only ``pixel_values``.

    Args:
        num_labels (`int`, *optional*): when given, class ids and soft-label lengths are checked against it.
    """

    def __init__(self, num_labels: int | None = None) -> None:
        self.num_labels = num_labels

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate examples into ``{"pixel_values": (B, C, H, W), "labels": (B,) int64 or (B, C) float}``."""
        batch = {"pixel_values": stack_pixel_values(examples)}
        has_label = [any(example.get(key) is not None for key in ("labels", "label")) for example in examples]
        if not any(has_label):
            return batch
        if not all(has_label):
            missing = has_label.index(False)
            raise ValueError(f"example {missing} has no label but others in the batch do")
        values = [_get_label(example, index) for index, example in enumerate(examples)]
        soft = [_is_soft_label(value) for value in values]
        if all(soft):
            batch["labels"] = torch.stack(
                [_soft_label(value, self.num_labels, index) for index, value in enumerate(values)]
            )
        elif not any(soft):
            batch["labels"] = torch.tensor(
                [_hard_label(value, self.num_labels, index) for index, value in enumerate(values)],
                dtype=torch.int64,
            )
        else:
            raise ValueError(
                f"example {soft.index(not soft[0])}: batch mixes hard and soft labels; "
                "an evaluation batch must use one kind"
            )
        return batch


def collate_eval(examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Functional form of :class:`GReFELEvalCollator` without a ``num_labels`` check."""
    return GReFELEvalCollator()(examples)


__all__ = [
    "GReFELEvalCollator",
    "GReFELMixCollator",
    "MIXING_DEFAULTS",
    "MixDecision",
    "MixingDefaults",
    "box_overlaps",
    "collate_eval",
    "labels_to_distributions",
    "protected_box_pixels",
    "sample_beta",
    "sample_peripheral_box",
    "smooth_targets",
    "stack_pixel_values",
]
