"""`grefel-hf export-onnx`: a saved model as an ONNX file with a dynamic batch size, checked against PyTorch.

The file takes `pixel_values` (batch, 3, H, W) and gives `probabilities` (batch, num_labels) and `reliability`
(batch,), the model's calibration included. Its metadata carries the class names, the image processor's settings,
the calibration and the SHA-256 of the `model.safetensors` it came from, so `grefel-hf predict --backend onnx`
needs nothing but the file, and a `model.onnx` inside a model folder is used (`--backend auto`) only while it
matches the folder's weights and calibration. Weights
that are exactly float16 values (the bundled models') are stored as float16 and cast back once when the file is
loaded: the file is half the size and computes exactly the same. The export runs onnxruntime on random and on
processed real-format images (gray, RGB, RGBA, 16-bit) at several batch sizes and fails when a class probability
differs from PyTorch by more than the tolerance.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..face_detection_grefel import file_sha256
from .backends import (
    METADATA_CALIBRATION,
    METADATA_LABELS,
    METADATA_PROCESSOR,
    METADATA_WEIGHTS,
    ONNX_HINT,
    calibration_metadata,
    require_onnxruntime,
)
from .targets import check_output_paths, check_writable

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
"""Largest accepted difference of a class probability between ONNX Runtime and PyTorch."""


class ProbabilityModel(nn.Module):
    """The exported graph: pixel values → (class probabilities, reliability)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values, return_dict=True)
        return torch.softmax(outputs.logits.float(), dim=-1), outputs.reliability.float()


@dataclass
class ParityCheck:
    """One comparison: `max_abs_diff` of the class probabilities of ONNX Runtime and PyTorch on `name`."""

    name: str
    batch_size: int
    max_abs_diff: float
    same_labels: bool


@dataclass
class OnnxExportReport:
    """The written file and its parity checks against PyTorch."""

    path: Path
    opset: int
    tolerance: float
    checks: list[ParityCheck] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(check.max_abs_diff for check in self.checks)

    def describe(self) -> str:
        parts = ", ".join(f"{c.name} (batch {c.batch_size}): {c.max_abs_diff:.2e}" for c in self.checks)
        return (f"ONNX parity, maximum absolute difference of the class probabilities against PyTorch: "
                f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}); {parts}")


def real_format_images(side: int) -> list[Image.Image]:
    """Generated images in the formats photos come in: 8-bit gray, RGB, RGBA with transparency, 16-bit gray."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, side)[None, :] * np.linspace(0.3, 1, side)[:, None]
    gray = (ramp * 200 + rng.integers(0, 55, (side, side))).astype(np.uint8)
    rgb = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    alpha = np.where(ramp > 0.4, 255, 80).astype(np.uint8)
    return [Image.fromarray(gray, "L"), Image.fromarray(rgb, "RGB"),
            Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
            Image.fromarray(gray.astype(np.uint16) * 257)]


def parity_inputs(processor, config) -> dict[str, torch.Tensor]:
    """The batches the export is checked on: random pixel values (batch 1 and 3) and processed images."""
    generator = torch.Generator().manual_seed(0)
    shape = (config.num_channels, config.image_size, config.image_size)
    images = real_format_images(max(config.image_size, 48) + 13)
    return {
        "random": torch.randn((1, *shape), generator=generator),
        "random batch": torch.randn((3, *shape), generator=generator),
        "real-format images": processor(images=images, return_tensors="pt")["pixel_values"].float(),
    }


def _require_onnx():
    try:
        import onnx
    except ImportError as err:
        raise ImportError(f"exporting to ONNX needs the onnx package: {ONNX_HINT}") from err
    return onnx


def _write_metadata(path: Path, model, processor, model_dir: Path) -> None:
    onnx = _require_onnx()
    graph = onnx.load(str(path))
    metadata = {METADATA_LABELS: json.dumps({str(k): v for k, v in model.config.id2label.items()}),
                METADATA_PROCESSOR: json.dumps(processor.to_dict()),
                "grefel_model_type": model.config.model_type,
                METADATA_CALIBRATION: calibration_metadata(model.config.to_dict())}
    weights = model_dir / "model.safetensors"
    if weights.is_file():
        metadata[METADATA_WEIGHTS] = file_sha256(weights)
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def store_exact_half_weights(path: Path) -> bool:
    """Store the file's float32 weights as float16, each cast back to float32 by a `Cast` node that onnxruntime
    folds away when it loads the file, if every weight is exactly a float16 value (nothing changes then); returns
    whether it did."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    weights = [init for init in graph.initializer if init.data_type == TensorProto.FLOAT]
    arrays = [numpy_helper.to_array(init) for init in weights]
    if not weights or any(not np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays):
        return False
    casts = []
    for init, array in zip(weights, arrays, strict=True):
        half = numpy_helper.from_array(array.astype(np.float16), f"{init.name}__float16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [half.name[: -len("__float16")]], to=TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(graph_model, str(path))
    return True


def _trace(wrapper: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=["pixel_values"],
            output_names=["probabilities", "reliability"], opset_version=opset, dynamo=False,
            do_constant_folding=False,  # weights stay as saved (onnxruntime folds them when it loads the file)
            dynamic_axes={"pixel_values": {0: "batch"}, "probabilities": {0: "batch"}, "reliability": {0: "batch"}},
        )


def check_parity(path: Path, wrapper: nn.Module, inputs: dict[str, torch.Tensor]) -> list[ParityCheck]:
    """Compare ONNX Runtime with PyTorch on every batch of `inputs`."""
    ort = require_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checks = []
    for name, pixels in inputs.items():
        with torch.no_grad():
            expected = wrapper(pixels)[0].numpy()
        actual = session.run(None, {"pixel_values": pixels.numpy()})[0]
        same = bool((expected.argmax(-1) == actual.argmax(-1)).all())
        checks.append(ParityCheck(name, len(pixels), float(np.abs(expected - actual).max()), same))
    return checks


def check_export_output(output: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, an `--output` for `grefel-hf export-onnx` that is not a `.onnx` file name, that
    exists (unless `overwrite`), or that cannot be written, in one line naming it."""
    output = Path(output)
    check_output_paths({"--output": output})
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"--output {output}: expected a .onnx file name")
    if os.path.lexists(output) and not overwrite:
        raise ValueError(f"--output {output} already exists; give --overwrite to replace it")
    check_writable("--output", output)


def export_onnx(model_dir: str | Path, output: str | Path, opset: int = DEFAULT_OPSET,
                tolerance: float = DEFAULT_TOLERANCE) -> OnnxExportReport:
    """Export the model saved in `model_dir` to `output` and check it (see the module docstring). The file is
    written beside `output` under another name and takes its place only once it passed its check, so an existing
    `output` is kept when the export fails or is interrupted.

    Raises:
        FileNotFoundError: no saved model in `model_dir`. ImportError: onnx or onnxruntime is missing.
        ValueError: `output` is not a .onnx file name, or the parity check failed (nothing is written; the message
        gives the differences).
    """
    model_dir, output = Path(model_dir), Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"--output {output}: expected a .onnx file name")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir} is not a saved model folder (no config.json)")
    require_onnxruntime()
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    wrapper = ProbabilityModel(model).eval()
    inputs = parity_inputs(processor, model.config)
    with torch.no_grad():
        wrapper(inputs["random batch"])  # run once eagerly: fixed inference-time state becomes graph constants
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial.onnx")
    try:
        _trace(wrapper, inputs["random batch"], partial, opset)
        wrapper.eval()  # the exporter restores the mode the wrapper had; keep it in inference mode regardless
        _write_metadata(partial, model, processor, model_dir)
        store_exact_half_weights(partial)
        report = OnnxExportReport(output, opset, tolerance, check_parity(partial, wrapper, inputs))
        if report.max_abs_diff > tolerance:
            raise ValueError(f"the ONNX export failed its parity check and was not written: {report.describe()}")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return report


__all__ = ["DEFAULT_OPSET", "DEFAULT_TOLERANCE", "OnnxExportReport", "ParityCheck", "ProbabilityModel",
           "check_export_output", "check_parity", "export_onnx", "parity_inputs", "real_format_images",
           "store_exact_half_weights"]
