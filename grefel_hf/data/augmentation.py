"""Face-preserving training augmentation and the ``datasets`` batch transforms built on it.

The pipeline for one training batch:

1. geometric and colour augmentation on each PIL image at its native resolution (48x48 for FER faces, so it
   is cheap): horizontal flip, a mild affine (rotation, translation, scale), a mild perspective warp, colour
   jitter and Gaussian blur, and optionally torchvision's RandAugment. Every magnitude is small, so eyes, brows and
   mouth stay in frame and keep their shape: the expression label must remain true after augmentation. An image
   is augmented at all with probability `apply_prob`, or with its class's own probability (`class_apply_probs`,
   e.g. more often for the rare fear and sad faces); an image that is not gets step 2 only;
2. the Hugging Face image processor (RGB conversion, resize, rescale, normalise), called once for the batch;
3. random erasing on the normalised tensor, erasing to 0 (the normalised mean).

Every augmentation can be switched off with a zero (or ``None``), and a switched-off augmentation is left out
of the pipeline entirely, so with all of them off the output equals the plain image processor's output.

Randomness comes from torch's global RNG only (torchvision ``transforms.v2`` draws from it), so a run is
reproducible from ``torch.manual_seed`` and each ``DataLoader`` worker gets its own stream.

``datasets.Dataset.with_transform`` receives :class:`GReFELBatchTransform` objects (see
:func:`build_train_transform` / :func:`build_eval_transform`). They are classes rather than closures so they
pickle into ``DataLoader`` worker processes. Trainer must run with ``remove_unused_columns=False``, or it
drops the ``image`` column before the transform sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class AugmentationDefaults:
    """The default strengths of the training augmentation, small enough that an expression stays true: the defaults
    of the functions below, and those of the training arguments (``--aug_*``), which read them here. See
    :class:`GReFELTrainAugmentation` for what each one does."""

    rotation: float = 8.0
    color_jitter: float = 0.25
    translate: float = 0.08
    scale: tuple[float, float] = (0.92, 1.08)
    perspective: float = 0.15
    blur_sigma: tuple[float, float] = (0.1, 0.8)
    erasing_prob: float = 0.15
    hflip_prob: float = 0.5
    randaugment_ops: int = 0
    randaugment_magnitude: int = 9
    apply_prob: float = 1.0


AUGMENTATION_DEFAULTS = AugmentationDefaults()


def _as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[PIL.Image.Image | torch.Tensor]:
    """Validate one image or a sequence of them; numpy arrays become PIL images so ``v2`` transforms them."""
    if isinstance(images, PIL.Image.Image | np.ndarray | torch.Tensor):
        images = [images]
    result = []
    for index, image in enumerate(images):
        if isinstance(image, np.ndarray):
            image = PIL.Image.fromarray(image)
        if not isinstance(image, PIL.Image.Image | torch.Tensor):
            raise ValueError(
                f"image {index}: expected a PIL image, numpy array or (C, H, W) tensor, "
                f"got {type(image).__name__}"
            )
        result.append(image)
    if not result:
        raise ValueError("expected at least one image, got an empty sequence")
    return result


def build_augmentation_pipeline(
    rotation: float = AUGMENTATION_DEFAULTS.rotation,
    color_jitter: float = AUGMENTATION_DEFAULTS.color_jitter,
    translate: float = AUGMENTATION_DEFAULTS.translate,
    scale: tuple[float, float] | None = AUGMENTATION_DEFAULTS.scale,
    perspective: float = AUGMENTATION_DEFAULTS.perspective,
    perspective_prob: float = 0.5,
    blur_sigma: tuple[float, float] | None = AUGMENTATION_DEFAULTS.blur_sigma,
    blur_prob: float = 0.5,
    blur_kernel_size: int = 5,
    hflip_prob: float = AUGMENTATION_DEFAULTS.hflip_prob,
    fill: float = 0.0,
    randaugment_ops: int = AUGMENTATION_DEFAULTS.randaugment_ops,
    randaugment_magnitude: int = AUGMENTATION_DEFAULTS.randaugment_magnitude,
) -> v2.Transform:
    """The native-resolution part of the training augmentation, with switched-off steps left out.

    See :class:`GReFELTrainAugmentation` for the meaning of each argument.

    Raises:
        ValueError: a probability outside [0, 1], a negative strength, or an even blur kernel (naming it).
    """
    for name, value in (("perspective_prob", perspective_prob), ("blur_prob", blur_prob), ("hflip_prob", hflip_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    for name, value in (("rotation", rotation), ("color_jitter", color_jitter), ("translate", translate)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not 0.0 <= perspective <= 1.0:
        raise ValueError(f"perspective must be in [0, 1], got {perspective}")
    if blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
        raise ValueError(f"blur_kernel_size must be a positive odd integer, got {blur_kernel_size}")
    steps: list[Callable] = []
    if hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_prob))
    use_scale = scale is not None and tuple(scale) != (1.0, 1.0)
    if rotation > 0 or translate > 0 or use_scale:
        steps.append(
            v2.RandomAffine(
                degrees=rotation,
                translate=(translate, translate) if translate > 0 else None,
                scale=tuple(scale) if use_scale else None,
                fill=fill,
            )
        )
    if perspective > 0 and perspective_prob > 0:
        steps.append(v2.RandomPerspective(distortion_scale=perspective, p=perspective_prob, fill=fill))
    if color_jitter > 0:
        # Saturation is a no-op on grayscale FER faces but matters for RGB datasets (RAF-DB, AffectNet).
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    if blur_sigma is not None and max(blur_sigma) > 0 and blur_prob > 0:
        blur = v2.GaussianBlur(kernel_size=blur_kernel_size, sigma=tuple(blur_sigma))
        steps.append(v2.RandomApply([blur], p=blur_prob))
    if randaugment_ops > 0:
        steps.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude, fill=fill))
    # v2.Compose refuses an empty list; with everything switched off the images pass through untouched.
    return v2.Compose(steps) if steps else v2.Identity()


class GReFELTrainAugmentation:
    """Training images → augmented, processed ``pixel_values`` of shape ``(B, 3, H, W)``.

    Args:
        image_processor (`Callable`): a Hugging Face image processor (``GReFELImageProcessor``,
            ``ViTImageProcessor(do_convert_rgb=True)``, ...), called as
            ``image_processor(images, return_tensors="pt")["pixel_values"]``.
        rotation (`float`, *optional*, defaults to 8.0): maximum rotation in degrees; 0 disables.
        color_jitter (`float`, *optional*, defaults to 0.25): brightness, contrast and saturation jitter;
            0 disables.
        translate (`float`, *optional*, defaults to 0.08): maximum shift as a fraction of width/height;
            0 disables.
        scale (`tuple[float, float]`, *optional*, defaults to `(0.92, 1.08)`): zoom range; `None` or `(1, 1)`
            disables.
        perspective (`float`, *optional*, defaults to 0.15): perspective distortion scale; 0 disables.
        perspective_prob (`float`, *optional*, defaults to 0.5): probability of the perspective warp.
        blur_sigma (`tuple[float, float]`, *optional*, defaults to `(0.1, 0.8)`): Gaussian blur sigma range
            in native-resolution pixels; `None` disables.
        blur_prob (`float`, *optional*, defaults to 0.5): probability of the blur.
        blur_kernel_size (`int`, *optional*, defaults to 5): odd blur kernel size (covers sigma 0.8 at ±2.5σ).
        erasing_prob (`float`, *optional*, defaults to 0.15): probability of random erasing; 0 disables.
        erasing_scale (`tuple[float, float]`, *optional*, defaults to `(0.02, 0.33)`): range of the erased
            fraction of the image area.
        hflip_prob (`float`, *optional*, defaults to 0.5): probability of a horizontal flip; 0 disables.
        fill (`float`, *optional*, defaults to 0.0): pixel value for areas uncovered by affine/perspective.
        randaugment_ops (`int`, *optional*, defaults to 0): operations of torchvision's RandAugment per image;
            0 disables it.
        randaugment_magnitude (`int`, *optional*, defaults to 9): RandAugment's magnitude (0-30).
        apply_prob (`float`, *optional*, defaults to 1.0): probability that an image is augmented at all.
        class_apply_probs (`Sequence[float]`, *optional*): that probability per class id (replacing
            `apply_prob`); the images' class ids must then be passed to `__call__`.
    """

    def __init__(
        self,
        image_processor: Callable[..., Any],
        erasing_prob: float = AUGMENTATION_DEFAULTS.erasing_prob,
        erasing_scale: tuple[float, float] = (0.02, 0.33),
        apply_prob: float = AUGMENTATION_DEFAULTS.apply_prob,
        class_apply_probs: Sequence[float] | None = None,
        **pipeline_settings: Any,
    ) -> None:
        for name, value in (("erasing_prob", erasing_prob), ("apply_prob", apply_prob),
                            *((f"class_apply_probs[{i}]", p) for i, p in enumerate(class_apply_probs or ()))):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.image_processor = image_processor
        # rotation, color_jitter, translate, scale, perspective(_prob), blur_*, hflip_prob, fill, randaugment_*
        self.pipeline = build_augmentation_pipeline(**pipeline_settings)
        self.apply_prob = apply_prob
        self.class_apply_probs = None if class_apply_probs is None else torch.tensor(class_apply_probs)
        # GReFELBatchTransform passes each image's class id when this is set
        self.uses_labels = class_apply_probs is not None
        # value=0 erases to the dataset mean, because the tensor is already normalised.
        self.erasing = (
            v2.RandomErasing(p=erasing_prob, scale=erasing_scale, value=0) if erasing_prob > 0 else None
        )

    def __call__(self, images: ImageInput | Sequence[ImageInput],
                 labels: Sequence[int] | None = None) -> torch.Tensor:
        """Augment and process one image or a list of images (with their class ids when the probability of
        augmenting depends on the class); returns float ``(B, 3, H, W)``."""
        images = _as_image_list(images)
        chosen = self._chosen(len(images), labels)
        augmented = [self.pipeline(image) if keep else image for image, keep in zip(images, chosen, strict=True)]
        pixel_values = self.image_processor(augmented, return_tensors="pt")["pixel_values"]
        if self.erasing is not None:
            # One call per image: on a batched tensor v2 would erase the same box in every image.
            pixel_values = torch.stack([self.erasing(image) if keep else image
                                        for image, keep in zip(pixel_values, chosen, strict=True)])
        return pixel_values

    def _chosen(self, count: int, labels: Sequence[int] | None) -> list[bool]:
        """Which images to augment. With every probability 1 no random number is drawn, so the augmentation's
        random stream is the same as without the option."""
        if self.class_apply_probs is None:
            if self.apply_prob >= 1.0:
                return [True] * count
            return (torch.rand(count) < self.apply_prob).tolist()
        if labels is None or len(labels) != count:
            raise ValueError(f"class-specific augmentation probabilities need the class id of each of the {count} "
                             f"images, got {labels!r}")
        ids = torch.as_tensor([int(label) for label in labels])
        if ids.min() < 0 or ids.max() >= len(self.class_apply_probs):
            raise ValueError(f"class ids must be in [0, {len(self.class_apply_probs)}), got {ids.tolist()}")
        return (torch.rand(count) < self.class_apply_probs[ids]).tolist()


class GReFELEvalPreprocessing:
    """Evaluation images → ``pixel_values`` through the image processor only, never augmented.

    Args:
        image_processor (`Callable`): the same image processor as for training.
    """

    def __init__(self, image_processor: Callable[..., Any]) -> None:
        self.image_processor = image_processor

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Process one image or a list of images; returns float ``(B, 3, H, W)``."""
        return self.image_processor(_as_image_list(images), return_tensors="pt")["pixel_values"]


class GReFELBatchTransform:
    """A ``datasets.Dataset.with_transform`` function: batch of rows → ``pixel_values`` and ``labels``.

    Args:
        image_fn (`Callable`): images → ``(B, 3, H, W)`` tensor (:class:`GReFELTrainAugmentation` or
            :class:`GReFELEvalPreprocessing`).
        image_column (`str`, *optional*, defaults to `"image"`): column holding the images.
        label_column (`str`, *optional*, defaults to `"label"`): column of hard class ids; `None` for
            unlabelled data.
        soft_label_column (`str`, *optional*): when set, ``labels`` come from this column of soft
            distributions (FER+ ``soft_label``) instead of ``label_column``.
    """

    def __init__(
        self,
        image_fn: Callable[[list[Any]], torch.Tensor],
        image_column: str = "image",
        label_column: str | None = "label",
        soft_label_column: str | None = None,
    ) -> None:
        self.image_fn = image_fn
        self.image_column = image_column
        self.label_column = label_column
        self.soft_label_column = soft_label_column

    def _column(self, batch: Mapping[str, Any], name: str) -> list[Any]:
        if name not in batch:
            hint = " (with Trainer, set remove_unused_columns=False)" if name == self.image_column else ""
            raise ValueError(f"batch has no column {name!r}{hint}; columns are {sorted(batch)}")
        return list(batch[name])

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Transform a batch dict of columns into ``{"pixel_values": [tensors], "labels": [...]}``."""
        images = self._column(batch, self.image_column)
        if getattr(self.image_fn, "uses_labels", False) and self.label_column is not None:
            pixel_values = self.image_fn(images, labels=self._column(batch, self.label_column))
        else:
            pixel_values = self.image_fn(images)
        output: dict[str, list[Any]] = {"pixel_values": list(pixel_values.unbind(0))}
        label_source = self.soft_label_column or self.label_column
        if label_source is not None:
            output["labels"] = self._column(batch, label_source)
        return output


def class_apply_probabilities(by_name: Mapping[str, float], label_names: Sequence[str],
                              default: float) -> list[float]:
    """Per-class-id probabilities of augmenting an image: `by_name[class name]`, else `default`.

    Raises:
        ValueError: `by_name` names a class that `label_names` does not have.
    """
    unknown = sorted(set(by_name) - set(label_names))
    if unknown:
        raise ValueError(f"--aug_class_probs names {unknown}, which are not classes of the training set "
                         f"{list(label_names)}")
    return [float(by_name.get(name, default)) for name in label_names]


def build_train_transform(
    image_processor: Callable[..., Any],
    use_soft_labels: bool = False,
    image_column: str = "image",
    label_column: str = "label",
    soft_label_column: str = "soft_label",
    **augmentation_kwargs: Any,
) -> GReFELBatchTransform:
    """The training ``with_transform`` function: augmentation + processor, hard or soft labels.

    ``augmentation_kwargs`` are passed to :class:`GReFELTrainAugmentation`.
    """
    return GReFELBatchTransform(
        GReFELTrainAugmentation(image_processor, **augmentation_kwargs),
        image_column=image_column,
        label_column=label_column,
        soft_label_column=soft_label_column if use_soft_labels else None,
    )


def build_eval_transform(
    image_processor: Callable[..., Any],
    use_soft_labels: bool = False,
    image_column: str = "image",
    label_column: str | None = "label",
    soft_label_column: str = "soft_label",
) -> GReFELBatchTransform:
    """The evaluation ``with_transform`` function: the image processor only, never any augmentation."""
    return GReFELBatchTransform(
        GReFELEvalPreprocessing(image_processor),
        image_column=image_column,
        label_column=label_column,
        soft_label_column=soft_label_column if use_soft_labels else None,
    )


__all__ = [
    "AUGMENTATION_DEFAULTS",
    "AugmentationDefaults",
    "GReFELBatchTransform",
    "GReFELEvalPreprocessing",
    "GReFELTrainAugmentation",
    "build_augmentation_pipeline",
    "class_apply_probabilities",
    "build_eval_transform",
    "build_train_transform",
]
