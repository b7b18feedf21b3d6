"""The `facial-expression-recognition` pipeline: from photographs to one expression per face.

Per image the pipeline reads the picture the way the model's own image processor reads it (16-bit, RGBA, palette
and float images included), finds the faces (`face_detection_grefel`), cuts them out, classifies them in batches
that span images, and returns one entry per face:

    {"box": {"x", "y", "w", "h"}, "label": str, "score": float, "top_k": [{"label", "score"}, ...],
     "reliability": float}

An image without a face gives an empty list. `GReFELImageClassificationPipeline` is transformers'
image-classification pipeline that, for models with a GReFEL image processor, reads images the same way.

This file is saved next to checkpoints as remote code: it imports only numpy, PIL, torch, transformers and its
flat siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import Pipeline
from transformers.pipelines.image_classification import ImageClassificationPipeline

from .face_detection_grefel import FaceBox, as_face_detector, extract_faces
from .image_processing_grefel import MIN_IMAGE_SIDE
from .image_processing_grefel import _to_rgb as processor_rgb

DEFAULT_BATCH_SIZE = 16
"""Faces classified per forward pass when the caller gives no `batch_size`."""

DEFAULT_TOP_K = 5
"""Labels listed per face by default (transformers' image-classification default)."""


class IndexedImage(NamedTuple):
    """An input image and its position in the caller's list, so errors can name it."""

    index: int
    image: Any


def fetch_url_image(url: str, index: int, timeout: float | None = None) -> Image.Image:
    """Download an image from an http(s) URL; any failure is a ValueError naming the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (urllib.error.URLError, OSError, ValueError, UnidentifiedImageError) as err:
        raise ValueError(f"image {index}: could not read the image at {url}: {err}") from err
    image = ImageOps.exif_transpose(image)
    image.filename = url
    return image


def load_rgb(image: Any, index: int, timeout: float | None = None) -> np.ndarray:
    """One input (file path, http(s) URL, PIL image, numpy array or torch tensor) as the (H, W, 3) RGB array the
    model's image processor makes of it; errors name the input's position and file."""
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        image = fetch_url_image(image, index, timeout)
    return processor_rgb(image, index, None)


@dataclass
class ImageFaces:
    """The faces of one image and their predictions.

    Args:
        key: what the caller tagged the image with (its index, or its file and frame).
        width, height: the image size in pixels.
        faces: the detected faces, left to right.
        probabilities: (num_faces, num_labels) class probabilities.
        reliability: (num_faces,) reliability of each prediction, in [0, 1].
    """

    key: Any
    width: int
    height: int
    faces: list[FaceBox]
    probabilities: np.ndarray
    reliability: np.ndarray


@dataclass
class _Pending:
    key: Any
    size: tuple[int, int]
    faces: list[FaceBox]
    probabilities: list = field(default_factory=list)
    reliability: list = field(default_factory=list)

    def done(self) -> bool:
        return len(self.probabilities) == len(self.faces)

    def result(self, num_labels: int) -> ImageFaces:
        probs = np.stack(self.probabilities) if self.faces else np.zeros((0, num_labels), dtype=np.float32)
        return ImageFaces(self.key, *self.size, self.faces, probs, np.asarray(self.reliability, dtype=np.float32))


def classify_faces_in_batches(items: Iterable[tuple[Any, tuple[int, int], list[tuple[FaceBox, np.ndarray]]]],
                              classify: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]],
                              batch_size: int, num_labels: int) -> Iterator[ImageFaces]:
    """Classify the faces of a stream of images in batches of `batch_size` faces that span images and frames.

    Args:
        items: (key, (width, height), [(face, crop), ...]) per image, as `extract_faces` gives them.
        classify: crops → ((n, num_labels) probabilities, (n,) reliability).

    Yields one `ImageFaces` per item, in input order, as soon as all its faces are classified; at most
    `batch_size` crops (plus one image's) are held at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of faces, got {batch_size}")
    pending: list[_Pending] = []
    crops: list[np.ndarray] = []
    owners: list[_Pending] = []

    def run(count: int) -> None:
        probabilities, reliability = classify(crops[:count])
        for owner, probs, rel in zip(owners[:count], probabilities, reliability, strict=True):
            owner.probabilities.append(probs)
            owner.reliability.append(float(rel))
        del crops[:count], owners[:count]

    def finished() -> Iterator[ImageFaces]:
        while pending and pending[0].done():
            yield pending.pop(0).result(num_labels)

    for key, size, faces in items:
        entry = _Pending(key, size, [face for face, _ in faces])
        pending.append(entry)
        crops.extend(crop for _, crop in faces)
        owners.extend(entry for _ in faces)
        while len(crops) >= batch_size:
            run(batch_size)
        yield from finished()
    if crops:
        run(len(crops))
    yield from finished()


def check_top_k(top_k: Any) -> None:
    """Refuse a `top_k` that is not a positive integer or None (all labels)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, or None for every label; got {top_k!r}")


def face_entries(result: ImageFaces, id2label: dict[int, str], top_k: int | None = DEFAULT_TOP_K) -> list[dict]:
    """The pipeline's output for one image: one dict per face (box, label, score, top_k, reliability)."""
    entries = []
    for face, probs, rel in zip(result.faces, result.probabilities, result.reliability, strict=True):
        order = np.argsort(-probs, kind="stable")[: top_k or len(probs)]
        ranked = [{"label": id2label[int(i)], "score": float(probs[i])} for i in order]
        entries.append({"box": face.as_dict(), "label": ranked[0]["label"], "score": ranked[0]["score"],
                        "top_k": ranked, "reliability": float(rel)})
    return entries


def probabilities_and_reliability(outputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (softmax of the logits: for GReFEL, whose logits are log-probabilities, exactly its
    distribution) and the model's reliability, or one minus the normalised entropy when it has none."""
    probs = torch.softmax(outputs["logits"].float(), dim=-1)
    reliability = outputs.get("reliability") if hasattr(outputs, "get") else None
    if reliability is None:
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / np.log(probs.shape[-1])
        reliability = 1.0 - entropy
    return probs, reliability.float().clamp(0.0, 1.0)


def is_grefel_processor(processor: Any) -> bool:
    """Whether `processor` is a GReFEL image processor (the package's class or a remote-code copy of it)."""
    return any(cls.__name__ == "_GReFELFaceInputs" for cls in type(processor).__mro__)


def _check_face_options(margin: Any, min_face_size: Any) -> None:
    if margin is not None and not 0 <= margin <= 2:
        raise ValueError(f"margin must be a fraction of the face size in [0, 2], got {margin!r}")
    if min_face_size is not None and (not isinstance(min_face_size, int) or min_face_size < MIN_IMAGE_SIDE):
        raise ValueError(f"min_face_size must be an integer of at least {MIN_IMAGE_SIDE} pixels, got "
                         f"{min_face_size!r}")


class FacialExpressionRecognitionPipeline(Pipeline):
    """Facial expressions of every face in photographs: detect, crop, classify (see the module docstring).

    Call arguments (also accepted by `pipeline(...)` as defaults):
        top_k (`int` or None, defaults to 5): labels listed per face (None: all).
        face_detector (`str` or callable, defaults to `"haar"`): `"haar"`, `"haar_profile"`, `"none"` (the whole
            image is one face: for images that are already face crops), or a callable that takes an (H, W, 3)
            uint8 RGB array and returns (x, y, w, h) boxes or dicts with "box" and optional "landmarks"/"score".
        margin (`float`, defaults to 0.2): margin added around each face box, as a fraction of its size.
        align (`bool`, defaults to False): rotate each face so that its eyes are level (when they are found).
        min_face_size (`int`, defaults to 24): faces smaller than this many pixels are left out.
        batch_size (`int`, defaults to 16): faces per forward pass; batches span the images of one call.
        timeout (`float`, optional): seconds to wait for images given as URLs.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k=..., face_detector=None, margin=None, align=None, min_face_size=None,
                             timeout=None):
        if top_k is not ...:
            check_top_k(top_k)
        _check_face_options(margin, min_face_size)
        options = {"face_detector": face_detector, "margin": margin, "align": align,
                   "min_face_size": min_face_size, "timeout": timeout}
        preprocess = {name: value for name, value in options.items() if value is not None}
        postprocess = {} if top_k is ... else {"top_k": top_k}
        return preprocess, {}, postprocess

    def __call__(self, inputs=None, **kwargs):
        """Expressions of the faces in one image (a list of face dicts) or in a list of images (a list of lists).

        Images are file paths, http(s) URLs, PIL images, numpy arrays (H, W[, C]) or torch tensors (C, H, W).
        """
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError("the facial-expression-recognition pipeline needs images; got None")
        batch_size = kwargs.pop("batch_size", None) or self._batch_size or DEFAULT_BATCH_SIZE
        single = not isinstance(inputs, (list, tuple))
        images = [inputs] if single else list(inputs)
        if not images:
            raise ValueError("the facial-expression-recognition pipeline got an empty list; expected at least one "
                             "image")
        preprocess, _, postprocess = self._sanitize_parameters(**kwargs)
        preprocess = {**self._preprocess_params, **preprocess}
        postprocess = {**self._postprocess_params, **postprocess}
        prepared = (self.preprocess(IndexedImage(i, image), **preprocess) for i, image in enumerate(images))
        items = ((p["key"], p["size"], p["faces"]) for p in prepared)
        stream = classify_faces_in_batches(items, self.classify_crops, batch_size, self.model.config.num_labels)
        results = [self.postprocess(result, **postprocess) for result in stream]
        return results[0] if single else results

    def _detector(self, spec, align: bool, min_face_size: int):
        if not isinstance(spec, str):
            return as_face_detector(spec)
        cache = self.__dict__.setdefault("_detector_cache", {})
        key = (spec, align, min_face_size)
        if key not in cache:
            cache[key] = as_face_detector(spec, find_eyes=align)
            if hasattr(cache[key], "min_size"):
                cache[key].min_size = min_face_size
        return cache[key]

    def preprocess(self, item: IndexedImage, face_detector="haar", margin=0.2, align=False, min_face_size=24,
                   timeout=None) -> dict:
        rgb = load_rgb(item.image, item.index, timeout)
        detector = self._detector(face_detector, align, min_face_size)
        faces = extract_faces(rgb, detector, margin=margin, align=align, min_face_size=min_face_size)
        return {"key": item.index, "size": (rgb.shape[1], rgb.shape[0]), "faces": faces}

    def classify_crops(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Face crops (H, W, 3) → (probabilities (n, C), reliability (n,)) through the processor and the model."""
        inputs = self.image_processor(images=crops, return_tensors="pt", input_data_format="channels_last")
        outputs = self.forward(inputs.to(self.dtype))
        return outputs["probabilities"].numpy(), outputs["reliability"].numpy()

    def _forward(self, model_inputs):
        probs, reliability = probabilities_and_reliability(self.model(pixel_values=model_inputs["pixel_values"]))
        return {"probabilities": probs, "reliability": reliability}

    def postprocess(self, model_outputs: ImageFaces, top_k=DEFAULT_TOP_K) -> list[dict]:
        return face_entries(model_outputs, self.model.config.id2label, top_k)


class GReFELImageClassificationPipeline(ImageClassificationPipeline):
    """transformers' image-classification pipeline, except that for a model with a GReFEL image processor each
    image is read the way the processor reads it (16-bit, RGBA, palette and float images kept as they are until
    the processor converts them) instead of through `load_image`, which turns every file into 8-bit RGB first;
    an empty list and a bad image in a list are errors that name the problem and the image's position.

    Models with any other processor run exactly as in transformers.
    """

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if is_grefel_processor(self.image_processor):
            check_top_k(kwargs.get("top_k"))
            if isinstance(inputs, (list, tuple)):
                if not inputs:
                    raise ValueError("the image-classification pipeline got an empty list; expected at least one "
                                     "image")
                inputs = [IndexedImage(i, image) for i, image in enumerate(inputs)]
        return super().__call__(inputs, **kwargs)

    def preprocess(self, image, timeout=None):
        if not is_grefel_processor(self.image_processor):
            return super().preprocess(image, timeout=timeout)
        item = image if isinstance(image, IndexedImage) else IndexedImage(0, image)
        rgb = load_rgb(item.image, item.index, timeout)
        inputs = self.image_processor(images=rgb, return_tensors="pt", input_data_format="channels_last")
        return inputs.to(self.dtype)


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_TOP_K", "FacialExpressionRecognitionPipeline",
           "GReFELImageClassificationPipeline", "ImageFaces", "IndexedImage", "check_top_k",
           "classify_faces_in_batches", "face_entries", "fetch_url_image", "is_grefel_processor", "load_rgb",
           "probabilities_and_reliability"]
