"""`grefel-hf explain`: why the model gave a face its label.

For each face: the class anchors its embedding lies closest to (GReFEL's own geometry: RMS distance between the
fused embedding and every anchor), and a saliency overlay PNG: Grad-CAM on the backbone's final feature map for
CNN backbones, gradient × input for backbones whose final features are tokens (ViTs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..face_detection_grefel import FaceBox, FaceOptions, crop_face, to_uint8_rgb
from ..image_processing_grefel import read_image
from ..losses import rms_distance
from ..pipeline_grefel import FaceInput
from .backends import face_pipeline, load_model

SALIENCY_METHODS = ("grad_cam", "input_gradients")


@dataclass
class AnchorNeighbour:
    """One class anchor near a face's embedding: its class, its index among that class's anchors, the distance."""

    label: str
    anchor: int
    distance: float


@dataclass
class FaceExplanation:
    """One face: its box, prediction, nearest anchors, per-class nearest-anchor distance and saliency overlay."""

    box: dict[str, int]
    label: str
    score: float
    reliability: float
    nearest_anchors: list[AnchorNeighbour]
    class_distances: dict[str, float]
    saliency_method: str
    saliency_file: str


@dataclass
class ExplainReport:
    """Everything `explain_image` wrote: one entry per face, and the JSON file holding them."""

    image: str
    json_file: Path
    faces: list[FaceExplanation] = field(default_factory=list)


class _BaseOutputHook:
    """Keeps the GReFEL base model's output of the last forward pass, with the feature map's gradient kept."""

    def __init__(self, model):
        self.output = None
        self._handle = model.grefel.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        if output.last_hidden_state is not None and output.last_hidden_state.requires_grad:
            output.last_hidden_state.retain_grad()
        self.output = output

    def remove(self) -> None:
        self._handle.remove()


def nearest_anchors(embedding: torch.Tensor, anchors: torch.Tensor, id2label: dict[int, str],
                    count: int = 5) -> tuple[list[AnchorNeighbour], dict[str, float]]:
    """The `count` anchors nearest `embedding` (D,) among `anchors` (C, K, D), and each class's nearest distance."""
    classes, per_class, dim = anchors.shape
    distances = rms_distance(embedding.reshape(1, dim), anchors.reshape(classes * per_class, dim))[0]
    order = torch.argsort(distances)[:count]
    neighbours = [AnchorNeighbour(id2label[int(i) // per_class], int(i) % per_class, float(distances[i]))
                  for i in order]
    by_class = distances.reshape(classes, per_class).min(dim=-1).values
    return neighbours, {id2label[c]: float(by_class[c]) for c in range(classes)}


def _normalised(saliency: torch.Tensor) -> np.ndarray:
    saliency = saliency - saliency.min()
    top = saliency.max()
    return (saliency / top if top > 0 else saliency).detach().cpu().numpy()


def grad_cam(feature_map: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Grad-CAM from a (1, C, h, w) feature map whose gradient is filled: ReLU of the gradient-weighted channel sum,
    upsampled to height x width, in [0, 1]."""
    weights = feature_map.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
    return _normalised(cam[0, 0])


def input_gradients(pixel_values: torch.Tensor) -> np.ndarray:
    """|gradient × input| summed over channels and lightly smoothed, in [0, 1], from filled input gradients."""
    saliency = (pixel_values.grad * pixel_values).abs().sum(dim=1, keepdim=True)
    return _normalised(F.avg_pool2d(saliency, 3, stride=1, padding=1)[0, 0])


def explain_face(model, pixel_values: torch.Tensor):
    """Prediction, embedding, anchors and saliency for one processed face (1, C, H, W).

    Returns (probabilities (C,), reliability, embedding (D,), anchors (C, K, D), saliency (H, W), method).
    """
    hook = _BaseOutputHook(model)
    try:
        pixels = pixel_values.clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(pixel_values=pixels, return_dict=True)
            target = int(outputs.logits[0].argmax())
            model.zero_grad(set_to_none=True)
            outputs.logits[0, target].backward()
        base = hook.output
    finally:
        hook.remove()
    fmap = base.last_hidden_state
    if fmap is not None and fmap.dim() == 4 and fmap.grad is not None:
        saliency, method = grad_cam(fmap, *pixels.shape[-2:]), "grad_cam"
    else:
        saliency, method = input_gradients(pixels), "input_gradients"
    anchors = model.grefel.anchors
    if base.sample_anchors is not None:  # the enhanced geometry refines the anchors per sample
        anchors = base.sample_anchors[0].reshape(anchors.shape)
    probs = outputs.logits[0].detach().exp()
    return (probs, float(outputs.reliability[0].detach()), outputs.embeddings[0].detach(), anchors.detach(), saliency,
            method)


def saliency_overlay(crop: np.ndarray, saliency: np.ndarray, opacity: float = 0.45) -> Image.Image:
    """The face crop with the saliency map (resized to it) laid over in the "jet" colour map."""
    from matplotlib import colormaps

    face = Image.fromarray(to_uint8_rgb(crop))
    heat = Image.fromarray((saliency * 255).astype(np.uint8)).resize(face.size, Image.Resampling.BILINEAR)
    colours = (colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255).astype(np.uint8)
    return Image.blend(face, Image.fromarray(colours), opacity)


def _explain_one(model, pixels: torch.Tensor, face: FaceBox, crop: np.ndarray, path: Path, anchors_count: int):
    probs, reliability, embedding, anchors, saliency, method = explain_face(model, pixels)
    neighbours, distances = nearest_anchors(embedding, anchors, model.config.id2label, anchors_count)
    saliency_overlay(crop, saliency).save(path)
    best = int(probs.argmax())
    return FaceExplanation(face.as_dict(), model.config.id2label[best], float(probs[best]), reliability,
                           neighbours, distances, method, str(path))


def explain_image(image: str | Path, model_dir: str | Path, output_dir: str | Path,
                  faces: FaceOptions | None = None, anchors_count: int = 5) -> ExplainReport:
    """Explain the prediction for every face of `image` (see the module docstring); writes
    `<stem>_face<i>_saliency.png` per face and `<stem>_explanation.json` to `output_dir`. Faces are found and
    processed by the facial-expression-recognition pipeline with `faces` (default `FaceOptions()`), so they are the
    faces `grefel-hf predict` gives.

    Raises:
        FileNotFoundError: the image or the model folder is missing. ValueError: unreadable image, or a model
        without GReFEL's class anchors.
    """
    model_dir, output_dir, image, faces = Path(model_dir), Path(output_dir), Path(image), faces or FaceOptions()
    loaded = load_model(model_dir, backend="torch", device="cpu")
    if not hasattr(loaded.model, "grefel"):
        raise ValueError(f"--model {model_dir} is a {type(loaded.model).__name__}; explanations need GReFEL's class "
                         "anchors")
    prepared = face_pipeline(loaded).prepare_image(FaceInput(read_image(image), str(image)), keep_image=True,
                                                   **asdict(faces))
    output_dir.mkdir(parents=True, exist_ok=True)
    report = ExplainReport(str(image), output_dir / f"{image.stem}_explanation.json")
    for i, face in enumerate(prepared.faces):
        crop = crop_face(prepared.image, face, faces.margin, align=faces.align)
        path = output_dir / f"{image.stem}_face{i}_saliency.png"
        report.faces.append(_explain_one(loaded.model, prepared.pixel_values[i : i + 1], face, crop, path,
                                         anchors_count))
    data = {"image": str(image), "model": str(model_dir), "no_face": not prepared.faces,
            "faces": [asdict(face) for face in report.faces]}
    report.json_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return report


__all__ = ["SALIENCY_METHODS", "AnchorNeighbour", "ExplainReport", "FaceExplanation", "explain_face",
           "explain_image", "grad_cam", "input_gradients", "nearest_anchors", "saliency_overlay"]
