"""Where faces are classified: the PyTorch model of a saved folder, or an exported ONNX file (onnxruntime).

Both take face crops through the model's own image processor and return class probabilities and reliability,
optionally averaged over test-time-augmentation views (`grefel_hf.tta_grefel`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification
from transformers.utils import ModelOutput

from ..tta_grefel import predict_probabilities
from ..image_processing_grefel import GReFELImageProcessor, GReFELImageProcessorPil

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
"""`auto`: ONNX Runtime for a `.onnx` file, PyTorch for a model folder."""

DEVICES = ("auto", "cpu", "cuda", "mps")

ONNX_HINT = "pip install 'grefel_hf[onnx]' (onnx and onnxruntime)"

METADATA_LABELS = "grefel_id2label"
METADATA_PROCESSOR = "grefel_preprocessor"
"""Metadata keys of an exported ONNX file: the class names and the image processor's settings, so the file alone
is enough to run it."""


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
    """What `OnnxClassifier` returns, shaped like the model's own output.

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): log of the class probabilities.
        reliability (`torch.FloatTensor` of shape `(batch_size,)`): the model's reliability.
    """

    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None


class OnnxClassifier:
    """An exported GReFEL model in onnxruntime, called like the PyTorch model (`pixel_values=` → output).

    `threads`: onnxruntime's CPU threads (None: its default, every core).
    """

    def __init__(self, path: str | Path, device: torch.device, threads: int | None = None):
        ort = require_onnxruntime()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{path}: onnxruntime cannot load this file: {err}") from err
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, pixel_values: torch.Tensor) -> OnnxClassifierOutput:
        probs, reliability = self.session.run(None, {"pixel_values": pixel_values.float().cpu().numpy()})
        probs = torch.from_numpy(probs)
        return OnnxClassifierOutput(logits=probs.clamp_min(1e-12).log(), reliability=torch.from_numpy(reliability))


def processor_from_dict(settings: dict[str, Any]):
    """A GReFEL image processor from its saved settings (`to_dict()`), torchvision backend when available."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return GReFELImageProcessorPil.from_dict(settings)
    return GReFELImageProcessor.from_dict(settings)


class FaceClassifier:
    """Face crops → (probabilities (n, C), reliability (n,)) numpy arrays, with a PyTorch or an ONNX model.

    Args:
        model: the model (`pixel_values=` → output with log-probability `logits` and `reliability`).
        processor: the model's image processor.
        id2label: class names by id.
        device: where the pixel values go.
        tta_views, tta_shift: test-time augmentation (see `grefel_hf.tta_grefel`); 1 view is none.
    """

    def __init__(self, model, processor, id2label: dict[int, str], device: torch.device, tta_views: int = 1,
                 tta_shift: float = 0.05, backend: str = "torch"):
        self.model, self.processor, self.device = model, processor, device
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.tta_views, self.tta_shift, self.backend = tta_views, tta_shift, backend

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def pixel_values(self, crops: list[np.ndarray]) -> torch.Tensor:
        inputs = self.processor(images=crops, return_tensors="pt", input_data_format="channels_last")
        return inputs["pixel_values"].to(self.device)

    @torch.inference_mode()
    def __call__(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        probs, reliability = predict_probabilities(self.model, self.pixel_values(crops), self.tta_views,
                                                   self.tta_shift)
        return probs.float().cpu().numpy(), reliability.float().cpu().numpy()


def _torch_classifier(folder: Path, device: torch.device, threads: int | None = None, **tta) -> FaceClassifier:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"--model {folder} is not a saved model folder (no config.json); give a folder "
                                "saved by train_hf.py or save_grefel_folder, or a .onnx file")
    model = AutoModelForImageClassification.from_pretrained(folder).to(device).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    return FaceClassifier(model, processor, model.config.id2label, device, backend="torch", **tta)


def _onnx_classifier(path: Path, device: torch.device, threads: int | None = None, **tta) -> FaceClassifier:
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: no such ONNX file")
    model = OnnxClassifier(path, device, threads)
    missing = [key for key in (METADATA_LABELS, METADATA_PROCESSOR) if key not in model.metadata]
    if missing:
        raise ValueError(f"{path} has no {missing} metadata: export it with `grefel-hf export-onnx`")
    id2label = {int(k): v for k, v in json.loads(model.metadata[METADATA_LABELS]).items()}
    processor = processor_from_dict(json.loads(model.metadata[METADATA_PROCESSOR]))
    return FaceClassifier(model, processor, id2label, torch.device("cpu"), backend="onnx", **tta)


def load_classifier(model: str | Path, backend: str = "auto", device: str = "auto", tta_views: int = 1,
                    tta_shift: float = 0.05, onnx_threads: int | None = None) -> FaceClassifier:
    """The classifier for `model`: a saved folder (PyTorch) or an exported `.onnx` file (ONNX Runtime, with
    `onnx_threads` CPU threads; PyTorch's are set with `torch.set_num_threads`).

    Raises:
        FileNotFoundError: the model is not there. ValueError: a backend, device or file that does not fit.
        ImportError: onnxruntime is missing for an ONNX model (the message says what to install).
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    path = Path(model)
    is_onnx_file = path.suffix.lower() == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx_file else "torch"
    if backend == "onnx" and path.is_dir():
        path = path / "model.onnx"
    elif backend == "torch" and is_onnx_file:
        raise ValueError(f"--model {path} is an ONNX file; use --backend onnx (or auto) to run it")
    torch_device = resolve_device(device)
    build = _onnx_classifier if backend == "onnx" else _torch_classifier
    return build(path, torch_device, threads=onnx_threads, tta_views=tta_views, tta_shift=tta_shift)


__all__ = ["BACKENDS", "DEVICES", "METADATA_LABELS", "METADATA_PROCESSOR", "ONNX_HINT", "FaceClassifier",
           "OnnxClassifier", "OnnxClassifierOutput", "load_classifier", "processor_from_dict",
           "require_onnxruntime", "resolve_device"]
