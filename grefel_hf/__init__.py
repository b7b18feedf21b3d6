"""grefel_hf: GReFEL facial-expression recognition as a native Hugging Face transformers model.

Importing the package registers the GReFEL classes with the transformers Auto classes (once), so
`AutoModel.from_pretrained(folder)`, `pipeline("image-classification", model=folder)` and
`pipeline("facial-expression-recognition", model=folder)` work without `trust_remote_code`.
Saved folders also carry the modeling code, for users who do not install this package.
"""

from .auto_registration import register_auto_classes
from .configuration_baseline import BaselineConfig
from .configuration_grefel import FER2013_EMOTIONS, GReFELConfig
from .factory import build_image_processor, create_model
from .hub import save_grefel_folder
from .image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil
from .inference.backends import load_face_pipeline
from .inference.dataset_predict import predict_dataset
from .modeling_baseline import (
    BaselineForImageClassification,
    BaselineImageClassifierOutput,
    BaselineModel,
    BaselineObjective,
)
from .modeling_grefel import (
    GReFELForImageClassification,
    GReFELImageClassifierOutput,
    GReFELModel,
    GReFELModelOutput,
    GReFELPreTrainedModel,
)
from .pipeline_grefel import FacialExpressionRecognitionPipeline, GReFELImageClassificationPipeline
from .pretrained import pretrained_model_path

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "BaselineConfig",
    "BaselineForImageClassification",
    "BaselineImageClassifierOutput",
    "BaselineModel",
    "BaselineObjective",
    "FER2013_EMOTIONS",
    "FacialExpressionRecognitionPipeline",
    "GReFELConfig",
    "GReFELForImageClassification",
    "GReFELImageClassificationPipeline",
    "GReFELImageClassifierOutput",
    "GReFELImageProcessor",
    "GReFELImageProcessorPil",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
    "build_image_processor",
    "create_model",
    "load_face_pipeline",
    "predict_dataset",
    "pretrained_model_path",
    "register_auto_classes",
    "save_grefel_folder",
]
