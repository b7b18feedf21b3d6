"""Registration of the GReFEL classes with the transformers Auto classes, in one place.

Two registrations happen together:
- in-process (`AutoConfig.register`, ...): with `grefel_hf` imported, Auto classes and `pipeline` load GReFEL
  folders without `trust_remote_code`;
- remote code (`register_for_auto_class`): every `save_pretrained` (including Trainer checkpoints) copies the flat
  modeling files next to the weights, so a machine without `grefel_hf` can load the folder with
  `trust_remote_code=True`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_grefel import GReFELConfig
from .image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil
from .modeling_grefel import GReFELForImageClassification, GReFELModel

_registered = False


def register_auto_classes() -> None:
    """Register GReFEL with the Auto classes and for remote code. Idempotent: later calls do nothing."""
    global _registered
    if _registered:
        return
    AutoConfig.register(GReFELConfig.model_type, GReFELConfig, exist_ok=True)
    AutoModel.register(GReFELConfig, GReFELModel, exist_ok=True)
    AutoModelForImageClassification.register(GReFELConfig, GReFELForImageClassification, exist_ok=True)
    AutoImageProcessor.register(
        GReFELConfig,
        image_processor_classes={"torchvision": GReFELImageProcessor, "pil": GReFELImageProcessorPil},
        exist_ok=True,
    )
    GReFELConfig.register_for_auto_class()
    GReFELModel.register_for_auto_class("AutoModel")
    GReFELForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    GReFELImageProcessor.register_for_auto_class("AutoImageProcessor")
    GReFELImageProcessorPil.register_for_auto_class("AutoImageProcessor")
    _registered = True


__all__ = ["register_auto_classes"]
