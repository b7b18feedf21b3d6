"""Face-preserving training augmentation and the ``datasets`` batch transforms built on it.

The pipeline for one training batch:

1. geometric and colour augmentation on each PIL image at its native resolution (48x48 for FER faces, so it
   is cheap): horizontal flip, a mild affine (rotation, translation, scale), a mild perspective warp, colour
   jitter and Gaussian blur. Every magnitude is small, so eyes, brows and mouth stay in frame and keep their
   shape: the expression label must remain true after augmentation;
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
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


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
    rotation: float = 8.0,
    color_jitter: float = 0.25,
    translate: float = 0.08,
    scale: tuple[float, float] | None = (0.92, 1.08),
    perspective: float = 0.15,
    perspective_prob: float = 0.5,
    blur_sigma: tuple[float, float] | None = (0.1, 0.8),
    blur_prob: float = 0.5,
    blur_kernel_size: int = 5,
    hflip_prob: float = 0.5,
    fill: float = 0.0,
) -> v2.Transform:
    """The native-resolution part of the training augmentation, with switched-off steps left out.

    See :class:`GReFELTrainAugmentation` for the meaning of each argument.
    """
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
    """

    def __init__(
        self,
        image_processor: Callable[..., Any],
        rotation: float = 8.0,
        color_jitter: float = 0.25,
        translate: float = 0.08,
        scale: tuple[float, float] | None = (0.92, 1.08),
        perspective: float = 0.15,
        perspective_prob: float = 0.5,
        blur_sigma: tuple[float, float] | None = (0.1, 0.8),
        blur_prob: float = 0.5,
        blur_kernel_size: int = 5,
        erasing_prob: float = 0.15,
        erasing_scale: tuple[float, float] = (0.02, 0.33),
        hflip_prob: float = 0.5,
        fill: float = 0.0,
    ) -> None:
        for name, value in (
            ("perspective_prob", perspective_prob),
            ("blur_prob", blur_prob),
            ("erasing_prob", erasing_prob),
            ("hflip_prob", hflip_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name, value in (("rotation", rotation), ("color_jitter", color_jitter), ("translate", translate)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= perspective <= 1.0:
            raise ValueError(f"perspective must be in [0, 1], got {perspective}")
        if blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd integer, got {blur_kernel_size}")
        self.image_processor = image_processor
        self.pipeline = build_augmentation_pipeline(
            rotation=rotation,
            color_jitter=color_jitter,
            translate=translate,
            scale=scale,
            perspective=perspective,
            perspective_prob=perspective_prob,
            blur_sigma=blur_sigma,
            blur_prob=blur_prob,
            blur_kernel_size=blur_kernel_size,
            hflip_prob=hflip_prob,
            fill=fill,
        )
        # value=0 erases to the dataset mean, because the tensor is already normalised.
        self.erasing = (
            v2.RandomErasing(p=erasing_prob, scale=erasing_scale, value=0) if erasing_prob > 0 else None
        )

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Augment and process one image or a list of images; returns float ``(B, 3, H, W)``."""
        augmented = [self.pipeline(image) for image in _as_image_list(images)]
        pixel_values = self.image_processor(augmented, return_tensors="pt")["pixel_values"]
        if self.erasing is not None:
            # One call per image: on a batched tensor v2 would erase the same box in every image.
            pixel_values = torch.stack([self.erasing(image) for image in pixel_values])
        return pixel_values


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
        pixel_values = self.image_fn(self._column(batch, self.image_column))
        output: dict[str, list[Any]] = {"pixel_values": list(pixel_values.unbind(0))}
        label_source = self.soft_label_column or self.label_column
        if label_source is not None:
            output["labels"] = self._column(batch, label_source)
        return output


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
    "GReFELBatchTransform",
    "GReFELEvalPreprocessing",
    "GReFELTrainAugmentation",
    "build_augmentation_pipeline",
    "build_eval_transform",
    "build_train_transform",
]
