"""Where faces are classified, and the one pipeline every entry point uses.

A model is a saved folder (PyTorch) or an exported ONNX file (ONNX Runtime, `OnnxModelForImageClassification`,
which has the PyTorch model's interface). `face_pipeline` wraps either in `FacialExpressionRecognitionPipeline`, so
`grefel-hf predict`, `explain`, the demo and `pipeline("facial-expression-recognition")` detect, crop and classify
the same way.

With `backend="auto"`, a folder that holds a `model.onnx` exported from exactly its `model.safetensors` and
calibration (the export records the weights' SHA-256 and the calibration; the bundled models ship one) runs in ONNX
Runtime, which classifies faces 2 to 3 times faster than PyTorch on a CPU; any other folder runs in PyTorch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from ..face_detection_grefel import file_sha256
from ..image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil
from ..modeling_grefel import load_naming_the_weights
from ..pipeline_grefel import FacialExpressionRecognitionPipeline
from ..pretrained import resolve_model_path

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
"""`auto`: ONNX Runtime for a `.onnx` file or a folder whose `model.onnx` matches its weights, PyTorch otherwise."""

DEVICES = ("auto", "cpu", "cuda", "mps")

ONNX_HINT = "pip install onnx onnxruntime (or grefel_hf[onnx])"

METADATA_LABELS = "grefel_id2label"
METADATA_PROCESSOR = "grefel_preprocessor"
METADATA_WEIGHTS = "grefel_weights_sha256"
METADATA_CALIBRATION = "grefel_calibration"
"""Metadata keys of an exported ONNX file: the class names, the image processor's settings (so the file alone is
enough to run it), the SHA-256 of the `model.safetensors` it was exported from and the calibration it computes
(`calibration_metadata`; files exported before calibration existed have none, which is the identity)."""

ONNX_FILE = "model.onnx"
"""The name of an ONNX export kept inside a model folder."""


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"running an ONNX model needs onnxruntime: {ONNX_HINT}") from err
    return onnxruntime


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda, then mps, then cpu; an unavailable device is a ValueError."""
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch finds no CUDA device")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps was asked for, but torch finds no MPS device")
    return torch.device(name)


@dataclass
class OnnxClassifierOutput(ModelOutput):
    """What `OnnxModelForImageClassification` returns, shaped like the PyTorch model's output.

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): log of the class probabilities.
        reliability (`torch.FloatTensor` of shape `(batch_size,)`): the model's reliability.
    """

    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None


class OnnxModelForImageClassification(PreTrainedModel):
    """An exported GReFEL model run by onnxruntime, with the PyTorch classifier's interface (`pixel_values=` →
    `logits` as log-probabilities and `reliability`), so transformers' pipelines take it as a model.

    Build it with `from_onnx(path, device, threads)`. `threads`: onnxruntime's CPU threads (None: its default).
    """

    config_class = PretrainedConfig
    main_input_name = "pixel_values"

    def __init__(self, config: PretrainedConfig, session=None, path: Path | None = None):
        super().__init__(config)
        self.session, self.path = session, path
        self.placement = torch.nn.Parameter(torch.zeros(0), requires_grad=False)  # gives the model a device and dtype
        self.post_init()

    @classmethod
    def from_onnx(cls, path: str | Path, device: torch.device | None = None,
                  threads: int | None = None) -> OnnxModelForImageClassification:
        """Load an ONNX file written by `grefel-hf export-onnx` (its metadata names the classes).

        Raises:
            FileNotFoundError: no such file. ValueError: onnxruntime cannot load it, or its metadata or outputs
            are not those of an export. ImportError: onnxruntime is missing.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--model {path}: no such ONNX file")
        ort = require_onnxruntime()
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            index = torch.cuda.current_device() if device.index is None else device.index  # a process's own GPU
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{path}: onnxruntime cannot load this file: {err}") from err
        metadata = session.get_modelmeta().custom_metadata_map
        if METADATA_LABELS not in metadata:
            raise ValueError(f"{path} has no {METADATA_LABELS} metadata: export it with `grefel-hf export-onnx`")
        id2label = {int(k): v for k, v in json.loads(metadata[METADATA_LABELS]).items()}
        _check_onnx_signature(session, path, len(id2label))
        return cls(PretrainedConfig(id2label=id2label, label2id={v: k for k, v in id2label.items()}), session, path)

    @property
    def metadata(self) -> dict[str, str]:
        return self.session.get_modelmeta().custom_metadata_map

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> OnnxClassifierOutput:
        probs, reliability = self.session.run(None, {"pixel_values": pixel_values.float().cpu().numpy()})
        probs = torch.from_numpy(probs).to(pixel_values.device)
        return OnnxClassifierOutput(logits=probs.clamp_min(1e-12).log(),
                                    reliability=torch.from_numpy(reliability).to(pixel_values.device))


def _check_onnx_signature(session, path: Path, num_labels: int) -> None:
    """Refuse a file whose graph does not take `pixel_values` and give (probabilities, reliability) for the
    classes its metadata names."""
    inputs = [item.name for item in session.get_inputs()]
    outputs = session.get_outputs()
    if inputs != ["pixel_values"] or len(outputs) != 2:
        raise ValueError(f"{path}: expected an export with input pixel_values and outputs (probabilities, "
                         f"reliability), got inputs {inputs} and outputs {[o.name for o in outputs]}")
    width = outputs[0].shape[-1] if outputs[0].shape else None
    if not isinstance(width, int):
        try:
            width = _tried_width(session)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: onnxruntime cannot run this graph on a zero image: {err}") from err
    if isinstance(width, int) and width != num_labels:
        raise ValueError(f"{path}: its metadata names {num_labels} classes but its graph gives {width} "
                         "probabilities per face")


def _tried_width(session) -> int | None:
    """The probabilities per face of a graph that does not state it: run once on a zero image when its input
    states its size (None otherwise)."""
    sizes = session.get_inputs()[0].shape[1:]
    if not sizes or not all(isinstance(size, int) for size in sizes):
        return None
    probabilities = session.run(None, {"pixel_values": np.zeros((1, *sizes), dtype=np.float32)})[0]
    return int(probabilities.shape[-1]) if probabilities.ndim == 2 else None


def processor_from_dict(settings: dict[str, Any]):
    """A GReFEL image processor from its saved settings (`to_dict()`), torchvision backend when available."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return GReFELImageProcessorPil.from_dict(settings)
    return GReFELImageProcessor.from_dict(settings)


@dataclass
class LoadedModel:
    """A model ready for the pipeline: the model, its image processor and which backend runs it."""

    model: Any
    processor: Any
    backend: str
    path: Path


def _torch_model(folder: Path, device: torch.device) -> LoadedModel:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"--model {folder} is not a saved model folder (no config.json); give a folder "
                                "saved by train_hf.py or save_grefel_folder, or a .onnx file")
    model = load_naming_the_weights(AutoModelForImageClassification.from_pretrained, folder).to(device).eval()
    return LoadedModel(model, AutoImageProcessor.from_pretrained(folder), "torch", folder)


def _onnx_model(path: Path, device: torch.device, threads: int | None) -> LoadedModel:
    model = OnnxModelForImageClassification.from_onnx(path, device, threads)
    if METADATA_PROCESSOR not in model.metadata:
        raise ValueError(f"{path} has no {METADATA_PROCESSOR} metadata: export it with `grefel-hf export-onnx`")
    processor = processor_from_dict(json.loads(model.metadata[METADATA_PROCESSOR]))
    return LoadedModel(model, processor, "onnx", path)


def calibration_metadata(config: dict[str, Any]) -> str:
    """The calibration a config dict stores, as the text an ONNX export records (`METADATA_CALIBRATION`)."""
    bias = config.get("calibration_bias")
    return json.dumps({"temperature": float(config.get("calibration_temperature", 1.0)),
                       "bias": None if bias is None else [float(b) for b in bias]})


def matching_onnx_model(folder: Path, device: torch.device, threads: int | None) -> LoadedModel | None:
    """The folder's `model.onnx` in ONNX Runtime when onnxruntime is installed and the file was exported from
    exactly the folder's `model.safetensors` (its recorded SHA-256) with the calibration of the folder's config;
    None otherwise."""
    onnx_file, weights = folder / ONNX_FILE, folder / "model.safetensors"
    if not (onnx_file.is_file() and weights.is_file()):
        return None
    try:
        loaded = _onnx_model(onnx_file, device, threads)
    except ImportError:
        return None
    if loaded.model.metadata.get(METADATA_WEIGHTS) != file_sha256(weights):
        logger.info("%s was not exported from %s's weights; running PyTorch", onnx_file, weights)
        return None
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if loaded.model.metadata.get(METADATA_CALIBRATION, calibration_metadata({})) != calibration_metadata(config):
        logger.info("%s computes another calibration than %s/config.json; running PyTorch", onnx_file, folder)
        return None
    return loaded


def load_model(model: str | Path, backend: str = "auto", device: str = "auto",
               onnx_threads: int | None = None) -> LoadedModel:
    """The model at `model` (a saved folder or an exported `.onnx` file) with its processor, on `backend`.

    Raises:
        FileNotFoundError: the model is not there. ValueError: a backend, device or file that does not fit.
        ImportError: onnxruntime is missing for an ONNX model (the message says what to install).
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    path = Path(model)
    torch_device = resolve_device(device)
    if path.suffix.lower() == ".onnx":
        if backend == "torch":
            raise ValueError(f"--model {path} is an ONNX file; use --backend onnx (or auto) to run it")
        return _onnx_model(path, torch_device, onnx_threads)
    if backend == "onnx":
        return _onnx_model(path / ONNX_FILE if path.is_dir() else path, torch_device, onnx_threads)
    loaded = matching_onnx_model(path, torch_device, onnx_threads) if backend == "auto" and torch_device.type == "cpu" \
        else None
    return loaded or _torch_model(path, torch_device)


def face_pipeline(loaded: LoadedModel, **pipeline_options) -> FacialExpressionRecognitionPipeline:
    """The facial-expression-recognition pipeline around a loaded model (options: see the pipeline). A model run by
    ONNX Runtime gets `torch_threads=1` unless told otherwise: PyTorch then only joins small tensors, and with more
    threads its idle threads spin on the cores that the workers and ONNX Runtime need (on 2 cores, 2.5 times
    slower)."""
    if loaded.backend == "onnx":
        pipeline_options.setdefault("torch_threads", 1)
    return FacialExpressionRecognitionPipeline(model=loaded.model, image_processor=loaded.processor,
                                               device=loaded.model.device, **pipeline_options)


def load_face_pipeline(model: str | Path | None = None, backend: str = "auto", device: str = "auto",
                       onnx_threads: int | None = None, **pipeline_options) -> FacialExpressionRecognitionPipeline:
    """The facial-expression-recognition pipeline as `grefel-hf predict` builds it: `model` (a folder, an ONNX file or
    a bundled model's name; None: the default bundled model) in ONNX Runtime where `backend="auto"` allows it (see
    the module docstring), which `pipeline("facial-expression-recognition")` cannot choose; the same answers
    either way. Other options are the pipeline's (`batch_size`, `num_workers`, `face_detector`, ...)."""
    return face_pipeline(load_model(resolve_model_path(model), backend, device, onnx_threads), **pipeline_options)


__all__ = ["BACKENDS", "DEVICES", "METADATA_CALIBRATION", "METADATA_LABELS", "METADATA_PROCESSOR", "METADATA_WEIGHTS",
           "ONNX_FILE", "calibration_metadata",
           "ONNX_HINT", "LoadedModel", "OnnxClassifierOutput", "OnnxModelForImageClassification", "face_pipeline",
           "load_face_pipeline",
           "load_model", "matching_onnx_model", "processor_from_dict", "require_onnxruntime",
           "resolve_device"]
