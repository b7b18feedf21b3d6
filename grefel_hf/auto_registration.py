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
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_baseline import BaselineConfig
from .configuration_grefel import GReFELConfig
from .image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil
from .modeling_baseline import BaselineForImageClassification, BaselineModel
from .modeling_grefel import GReFELForImageClassification, GReFELModel
from .pipeline_grefel import FacialExpressionRecognitionPipeline

FER_TASK = "facial-expression-recognition"
"""The pipeline task of `FacialExpressionRecognitionPipeline`."""

_registered = False


def register_auto_classes() -> None:
    """Register GReFEL and the baseline with the Auto classes and for remote code. Idempotent."""
    global _registered
    if _registered:
        return
    _register_model(GReFELConfig, GReFELModel, GReFELForImageClassification)
    _register_model(BaselineConfig, BaselineModel, BaselineForImageClassification)
    GReFELImageProcessor.register_for_auto_class("AutoImageProcessor")
    GReFELImageProcessorPil.register_for_auto_class("AutoImageProcessor")
    _register_pipelines()
    _registered = True


def _register_model(config_class, base_class, classifier_class) -> None:
    """A config with its base model, its classifier and GReFEL's image processor, in the Auto classes and for remote
    code (GReFEL, and the baseline it is compared with)."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, base_class, exist_ok=True)
    AutoModelForImageClassification.register(config_class, classifier_class, exist_ok=True)
    AutoImageProcessor.register(
        config_class,
        image_processor_classes={"torchvision": GReFELImageProcessor, "pil": GReFELImageProcessorPil},
        exist_ok=True,
    )
    config_class.register_for_auto_class()
    base_class.register_for_auto_class("AutoModel")
    classifier_class.register_for_auto_class("AutoModelForImageClassification")


class _BundledModelDefault(dict):
    """`pipeline(FER_TASK)`'s default model, looked up only when a pipeline is made without one (so a missing
    bundled model is a clear error then, and nothing is read at import)."""

    def __contains__(self, key) -> bool:
        return key == "model"

    def __getitem__(self, key):
        if key != "model":
            raise KeyError(key)
        from .pretrained import pretrained_model_path

        return pretrained_model_path(), None


def _register_pipelines() -> None:
    """`pipeline(FER_TASK)`: a task of its own, so no pipeline transformers has is changed for any model.

    `pipeline("image-classification", model=folder)` stays transformers' own class in-process; a saved folder's
    `custom_pipelines` names `GReFELImageClassificationPipeline` for `trust_remote_code=True` loads, and
    `pipeline_class=GReFELImageClassificationPipeline` picks it explicitly.
    """
    PIPELINE_REGISTRY.register_pipeline(FER_TASK, pipeline_class=FacialExpressionRecognitionPipeline,
                                        pt_model=AutoModelForImageClassification, default=_BundledModelDefault(),
                                        type="image")


__all__ = ["FER_TASK", "register_auto_classes"]
