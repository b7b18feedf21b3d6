"""Creating fresh GReFEL and baseline models and their matching image processors.

A fresh model's backbone can start from offline pretrained weights (a local file or a known source such as
`"efficientnet-lite0"`, see `grefel_hf.backbone_weights`); timm's downloader is never used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import timm
import torch
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

from .backbone_weights import get_backbone_weights_spec, load_backbone_weights
from .configuration_baseline import BaselineConfig
from .configuration_grefel import GReFELConfig
from .image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil
from .modeling_baseline import BaselineForImageClassification
from .modeling_grefel import GReFELForImageClassification

logger = logging.getLogger(__name__)

BackboneWeights = str | os.PathLike | Mapping[str, torch.Tensor]
ModelConfig = GReFELConfig | BaselineConfig

MODEL_CLASSES = {
    GReFELConfig.model_type: GReFELForImageClassification,
    BaselineConfig.model_type: BaselineForImageClassification,
}
"""The classifier class `create_model` builds for each config's `model_type`."""


def backbone_normalization(config: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the backbone's pretrained weights expect, from timm's metadata (no download)."""
    pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
    if pretrained_cfg is None or pretrained_cfg.mean is None:
        return tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD)
    return tuple(pretrained_cfg.mean), tuple(pretrained_cfg.std)


def build_image_processor(config: ModelConfig, backend: str = "torchvision"):
    """An image processor for `config`: RGB conversion, resize to `image_size`, the backbone's normalisation.

    Args:
        backend: `"torchvision"` (fast, batched) or `"pil"` (no torchvision needed).
    """
    classes = {"torchvision": GReFELImageProcessor, "pil": GReFELImageProcessorPil}
    if backend not in classes:
        raise ValueError(f"backend must be one of {sorted(classes)}, got {backend!r}")
    mean, std = backbone_normalization(config)
    size = {"height": config.image_size, "width": config.image_size}
    return classes[backend](size=size, image_mean=list(mean), image_std=list(std))


def create_model(config: ModelConfig, backbone_weights: BackboneWeights | None = None):
    """A fresh classifier for `config` (`GReFELForImageClassification` or `BaselineForImageClassification`), its
    backbone optionally filled from offline pretrained weights.

    Args:
        backbone_weights: a `.safetensors` or torch state-dict file, a state dict, or a known source name such
            as `"efficientnet-lite0"` (which requires `config.backbone == "tf_efficientnet_lite0"`).

    Raises:
        ValueError: the weights do not fit the backbone (the message lists the first offending keys), or a known
            source belongs to another architecture.
    """
    if isinstance(backbone_weights, str) and not os.path.exists(backbone_weights):
        try:
            spec = get_backbone_weights_spec(backbone_weights)
        except ValueError:
            spec = None  # not a known name either: load_backbone_weights raises FileNotFoundError below
        if spec is not None and spec.timm_name != config.backbone:
            raise ValueError(f"backbone weights {backbone_weights!r} belong to timm model {spec.timm_name!r}, "
                             f"but the config's backbone is {config.backbone!r}")
    if config.model_type not in MODEL_CLASSES:
        raise ValueError(f"no model class for model_type {config.model_type!r}; known: {sorted(MODEL_CLASSES)}")
    model = MODEL_CLASSES[config.model_type](config)
    if backbone_weights is not None:
        report = load_backbone_weights(model.get_backbone(), backbone_weights)
        logger.info("started %s from %s (%d tensors)", config.backbone, report.source, report.loaded)
    return model


__all__ = ["MODEL_CLASSES", "backbone_normalization", "build_image_processor", "create_model"]
