"""The `facial-expression-recognition` pipeline: from photographs to one expression per face.

It is a transformers `ChunkPipeline`, as the mask-generation and zero-shot object-detection pipelines are: one image
gives many faces. Per image (`prepare_image`: in DataLoader workers when `num_workers` is set, else in two threads of
the calling process for a built-in detector), the picture is read the way the model's own image processor reads it
(16-bit, RGBA, palette and float images included), the faces are found (`face_detection_grefel`: YuNet by
default), cut out and processed; every face is then one chunk, and transformers' own loop
(`PipelinePackIterator`) classifies chunks in batches of `batch_size` faces that span images and gives each image
its faces back, in input order. The output per image is one entry per face:

    {"box": {"x", "y", "w", "h"}, "label": str, "score": float, "top_k": [{"label", "score"}, ...],
     "reliability": float, "landmarks": [[x, y], ...] or None, "detection_score": float or None}

An image without a face gives an empty list. With `min_score` or `min_reliability`, a face whose score (top class
probability) or reliability is below it gets the label `uncertain`; its score, reliability and `top_k` stay as
they are. `GReFELImageClassificationPipeline` is transformers'
image-classification pipeline that, for models with a GReFEL image processor, reads images the same way; it is
used through a saved folder's `custom_pipelines` (remote code) or `pipeline_class=`, never installed globally.

This file is saved next to checkpoints as remote code: it imports only numpy, PIL, torch, transformers and its
flat siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

import io
import signal
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, IterableDataset
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.image_classification import ImageClassificationPipeline
from transformers.pipelines.pt_utils import PipelineIterator, PipelinePackIterator
from transformers.utils import cached_file

from .face_detection_grefel import (
    YUNET_FILE,
    FaceBox,
    FaceOptions,
    build_face_detector,
    faces_with_options,
    yunet_model_path,
)
from .image_processing_grefel import _to_rgb as processor_rgb
from .tta_grefel import check_shift, predict_probabilities, resolve_views

DEFAULT_BATCH_SIZE = 16
"""Faces classified per forward pass when the caller gives no `batch_size`."""

DEFAULT_TOP_K = 5
"""Labels listed per face by default (transformers' image-classification default)."""

UNCERTAIN = "uncertain"
"""The label of a face whose score or reliability is below the `min_score` / `min_reliability` asked for."""

PREPARE_THREADS = 2
"""Threads that prepare images (read, detect, crop) side by side when there are no worker processes. Decoding and
OpenCV's detector release the GIL, so one thread's detection runs while the other does its Python work: on 2 cores
this made the photo path faster than one thread or worker processes (benchmarks/RESULTS.md, photo_speed)."""

READ_ERRORS = (ValueError, OSError, Image.DecompressionBombError)
"""How an image that cannot be read shows up (with `skip_unreadable`, it becomes a result with `error` set)."""


@dataclass
class FaceInput:
    """An input image and the key its results carry (a caller's own tag: a file and frame, say). Inputs given
    without one are keyed by their position in the call."""

    image: Any
    key: Any = None


def fetch_url_image(url: str, index: int, timeout: float | None = None) -> Image.Image:
    """Download an image from an http(s) URL; any failure is a ValueError naming the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (urllib.error.URLError, OSError, ValueError, UnidentifiedImageError,
            Image.DecompressionBombError) as err:
        raise ValueError(f"image {index}: could not read the image at {url}: {err}") from err
    image = ImageOps.exif_transpose(image)
    image.filename = url
    return image


def load_rgb(image: Any, index: Any, timeout: float | None = None) -> np.ndarray:
    """One input (file path, http(s) URL, PIL image, numpy array or torch tensor) as the (H, W, 3) RGB array the
    model's image processor makes of it; errors name the input's position (or key) and file."""
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        image = fetch_url_image(image, index, timeout)
    return processor_rgb(image, index, None)


@dataclass
class ImageFaces:
    """The faces of one image and their predictions.

    Args:
        key: what the caller tagged the image with (its position, or a `FaceInput`'s key).
        width, height: the image size in pixels (0 when it could not be read).
        faces: the detected faces, left to right.
        probabilities: (num_faces, num_labels) class probabilities.
        reliability: (num_faces,) reliability of each prediction, in [0, 1].
        image: the (H, W, 3) RGB image, when it was asked for (to draw on).
        error: why the image could not be read, for callers that asked to skip unreadable images.
        uncertain: (num_faces,) True where the model abstains (score or reliability below the thresholds asked
            for; see `abstentions`); None when no threshold was asked for.
    """

    key: Any
    width: int
    height: int
    faces: list[FaceBox]
    probabilities: np.ndarray
    reliability: np.ndarray
    image: np.ndarray | None = None
    error: str | None = None
    uncertain: np.ndarray | None = None

    def face_labels(self, labels) -> list[str]:
        """Each face's label: its most probable class (`labels[i]` names class i: a list or `id2label`), or
        `UNCERTAIN` where the model abstains."""
        best = [labels[int(probs.argmax())] for probs in self.probabilities]
        if self.uncertain is None:
            return best
        return [UNCERTAIN if abstains else label for label, abstains in zip(best, self.uncertain, strict=True)]


@dataclass
class PreparedImage:
    """One image after detection: `ImageFaces`' fields without predictions, plus the faces' processed pixels
    (`pixel_values`, (num_faces, 3, H, W), None when there is no face)."""

    key: Any
    width: int
    height: int
    faces: list[FaceBox]
    pixel_values: torch.Tensor | None = None
    image: np.ndarray | None = None
    error: str | None = None


def face_chunks(prepared: PreparedImage) -> Iterator[dict]:
    """The chunks of one prepared image: one per face, or a single face-less chunk; the last has `is_last`."""
    info = {f.name: getattr(prepared, f.name) for f in fields(PreparedImage) if f.name not in ("faces", "pixel_values")}
    if not prepared.faces:
        yield {"pixel_values": None, "face": None, "info": info, "is_last": True}
        return
    count = len(prepared.faces)
    for i, face in enumerate(prepared.faces):
        yield {"pixel_values": prepared.pixel_values[i : i + 1], "face": face, "info": info, "is_last": i == count - 1}


def collate_chunks(chunks: list[dict]) -> dict:
    """A batch of chunks: the faces' pixels stacked (None when no chunk has a face), a `has_face` mask, and the
    rest as lists."""
    pixels = [chunk["pixel_values"] for chunk in chunks if chunk["pixel_values"] is not None]
    return {"pixel_values": torch.cat(pixels) if pixels else None,
            "has_face": torch.tensor([chunk["face"] is not None for chunk in chunks]),
            "face": [chunk["face"] for chunk in chunks], "info": [chunk["info"] for chunk in chunks],
            "is_last": [chunk["is_last"] for chunk in chunks]}


def batched_chunks(prepared: Iterable[PreparedImage], batch_size: int) -> Iterator[dict]:
    """The chunks of a stream of prepared images, collated in batches of `batch_size` that span images. With a
    batch size of 1 the other fields stay unbatched (a face, not a list of one), as transformers' loop expects."""
    batch = []
    for image in prepared:
        for chunk in face_chunks(image):
            batch.append(chunk)
            if len(batch) == batch_size:
                collated = collate_chunks(batch)
                yield collated if batch_size > 1 else {**collated, **{k: chunk[k] for k in ("face", "info", "is_last")}}
                batch = []
    if batch:
        yield collate_chunks(batch)


class ThreadScoped:
    """An iterator whose every step runs with PyTorch's CPU threads set to `threads`, put back in between: a
    pipeline's own thread budget that never leaks into the caller's code."""

    def __init__(self, iterator: Iterator, threads: int):
        self.iterator, self.threads = iterator, threads

    def __iter__(self) -> ThreadScoped:
        return self

    def __next__(self):
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return next(self.iterator)
        finally:
            torch.set_num_threads(before)


class _PreparedList(Dataset):
    """A list (or sized dataset) of inputs, prepared one by one: workers keep their order."""

    def __init__(self, inputs, prepare: Callable, params: dict):
        self.inputs, self.prepare, self.params = inputs, prepare, params

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> PreparedImage:
        return self.prepare(as_face_input(self.inputs[index], index), **self.params)


class _PreparedStream(IterableDataset):
    """An iterable of inputs (a generator), prepared in order."""

    def __init__(self, inputs, prepare: Callable, params: dict):
        self.inputs, self.prepare, self.params = inputs, prepare, params

    def __iter__(self) -> Iterator[PreparedImage]:
        for index, item in enumerate(self.inputs):
            yield self.prepare(as_face_input(item, index), **self.params)


def prepared_in_threads(items: Iterable, prepare: Callable, threads: int) -> Iterator:
    """`prepare(item)` for each of `items`, `threads` at a time in a thread pool, yielded in input order (at most
    twice `threads` items ahead). An error is raised when its item's turn comes; items not started are dropped."""
    with ThreadPoolExecutor(threads, thread_name_prefix="grefel-prepare") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(prepare, item))
                if len(pending) > 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def as_face_input(item: Any, index: int) -> FaceInput:
    """`item` as a `FaceInput`, keyed by `index` unless it carries its own key."""
    if isinstance(item, FaceInput):
        return item if item.key is not None else FaceInput(item.image, index)
    return FaceInput(item, index)


def _no_collate(item):
    return item


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker ignores SIGINT and SIGTERM: Ctrl-C or a scheduler's SIGTERM reaches the whole process
    group, and the main process decides how to stop (a worker killed by it would only turn a clean stop into a
    "worker exited unexpectedly" error). Workers still end with the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check_top_k(top_k: Any) -> None:
    """Refuse a `top_k` that is not a positive integer or None (all labels)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, or None for every label; got {top_k!r}")


def check_batching(batch_size: Any, num_workers: Any) -> None:
    """Refuse a `batch_size` below 1 or a negative `num_workers`, naming the value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of faces per forward pass, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be 0 (no worker processes) or more, got {num_workers!r}")


def check_threshold(name: str, value: Any) -> None:
    """Refuse a `min_score` or `min_reliability` that is not None or a number in [0, 1], naming it."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1] (or None: never abstain), got {value!r}")


def abstentions(probabilities: np.ndarray, reliability: np.ndarray, min_score: float | None = None,
                min_reliability: float | None = None) -> np.ndarray | None:
    """(num_faces,) True where a face's score (its top class probability) is below `min_score` or its reliability
    below `min_reliability`; None when neither threshold is given."""
    if min_score is None and min_reliability is None:
        return None
    uncertain = np.zeros(len(probabilities), dtype=bool)
    if min_score is not None and len(probabilities):
        uncertain |= np.asarray(probabilities).max(axis=1) < min_score
    if min_reliability is not None:
        uncertain |= np.asarray(reliability) < min_reliability
    return uncertain


def face_entries(result: ImageFaces, id2label: dict[int, str], top_k: int | None = DEFAULT_TOP_K) -> list[dict]:
    """The pipeline's output for one image: one dict per face (box, label, score, top_k, reliability, landmarks,
    detection_score); the label is `UNCERTAIN` where the model abstains."""
    entries = []
    labels = result.face_labels(id2label)
    for face, probs, rel, label in zip(result.faces, result.probabilities, result.reliability, labels, strict=True):
        order = np.argsort(-probs, kind="stable")[: top_k or len(probs)]
        ranked = [{"label": id2label[int(i)], "score": float(probs[i])} for i in order]
        landmarks = None if face.landmarks is None else [[float(x), float(y)] for x, y in face.landmarks]
        entries.append({"box": face.as_dict(), "label": label, "score": ranked[0]["score"],
                        "top_k": ranked, "reliability": float(rel), "landmarks": landmarks,
                        "detection_score": face.score})
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


_FACE_OPTION_NAMES = tuple(f.name for f in fields(FaceOptions))


class FacialExpressionRecognitionPipeline(ChunkPipeline):
    """Facial expressions of every face in photographs: detect, crop, classify (see the module docstring).

    Call arguments (also accepted by `pipeline(...)` as defaults):
        top_k (`int` or None, defaults to 5): labels listed per face (None: all).
        face_detector (`str` or callable, defaults to `"yunet"`): `"yunet"`, `"haar"`, `"haar_profile"`, `"none"`
            (the whole image is one face: for images that are already face crops), or a callable that takes an
            (H, W, 3) uint8 RGB array and returns (x, y, w, h) boxes or dicts with "box" and optional
            "landmarks"/"score".
        detection_size (`int`, defaults to 640): the long side, in pixels, that photos are scaled to for detection
            (0: full resolution); boxes are always in the original pixels.
        score_threshold (`float`, defaults to 0.6), nms_threshold (`float`, defaults to 0.3): YuNet's thresholds.
        min_face_size (`int`, defaults to 24): faces smaller than this many pixels are left out.
        max_faces (`int`, optional): keep only the largest N faces of each image.
        margin (`float`, defaults to 0): margin added around each face box, as a fraction of its size (none: the
            box squared by its longer side, the framing of the FER faces the bundled models learnt from).
        align (`bool`, defaults to False): rotate each face so that its eyes are level (YuNet's landmarks).
        tta_views (`int`, defaults to 1), tta_shift (`float`, defaults to 0.05): test-time augmentation.
        min_score (`float`, optional), min_reliability (`float`, optional): abstain, with the label `uncertain`,
            on a face whose score (top class probability) or reliability is below it (its probabilities are kept).
        timeout (`float`, optional): seconds to wait for images given as URLs.
        batch_size (`int`, defaults to 16): faces per forward pass; batches span the images of one call.
        torch_threads (`int`, optional; `pipeline(...)` only): PyTorch's CPU threads while the pipeline runs (put
            back between results). One suits a model run by ONNX Runtime, where PyTorch only joins small tensors
            and its spinning threads would take the cores the workers and ONNX Runtime need.
        num_workers (`int`, defaults to 0): worker processes that read images and find faces (a list of images
            uses them all, in order; a generator at most one). Without workers, several images are read and
            searched by `PREPARE_THREADS` threads of this process (a built-in detector; a callable runs in the
            caller's thread).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, torch_threads: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE
        check_batching(self._batch_size, self._num_workers or 0)
        if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                          or torch_threads < 1):
            raise ValueError(f"torch_threads must be a positive number of threads, got {torch_threads!r}")
        self.torch_threads = torch_threads

    def _sanitize_parameters(self, top_k=..., timeout=None, tta_views=None, tta_shift=None, keep_image=None,
                             skip_unreadable=None, output=None, min_score=None, min_reliability=None,
                             **face_options):
        unknown = sorted(set(face_options) - set(_FACE_OPTION_NAMES))
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for the facial-expression-recognition pipeline")
        FaceOptions().updated(**face_options)  # checks the values given, naming the option
        if top_k is not ...:
            check_top_k(top_k)
        if tta_views is not None:
            resolve_views(tta_views)
        if tta_shift is not None:
            check_shift(tta_shift)
        preprocess = {name: value for name, value in face_options.items() if value is not None}
        extra = {"timeout": timeout, "keep_image": keep_image, "skip_unreadable": skip_unreadable}
        preprocess.update({name: value for name, value in extra.items() if value is not None})
        forward = {name: value for name, value in (("tta_views", tta_views), ("tta_shift", tta_shift))
                   if value is not None}
        postprocess = {} if top_k is ... else {"top_k": top_k}
        for name, value in (("output", output), ("min_score", min_score), ("min_reliability", min_reliability)):
            if value is not None:
                postprocess[name] = value
        check_threshold("min_score", min_score)
        check_threshold("min_reliability", min_reliability)
        return preprocess, forward, postprocess

    def __call__(self, inputs=None, **kwargs):
        """Expressions of the faces in one image (a list of face dicts), in a list of images (a list of lists), or
        in a generator or dataset of images (an iterator of lists, streamed in order).

        Images are file paths, http(s) URLs, PIL images, numpy arrays (H, W[, C]) or torch tensors (C, H, W).
        """
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError("the facial-expression-recognition pipeline needs images; got None")
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise ValueError("the facial-expression-recognition pipeline got an empty list; expected at least one "
                             "image")
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        return super().__call__(inputs, **kwargs)

    def image_faces(self, inputs, batch_size: int | None = None, num_workers: int | None = None,
                    **kwargs) -> Iterator[ImageFaces]:
        """Like calling the pipeline on an iterable of images, but yields one `ImageFaces` per image (key, size,
        boxes, probabilities, reliability; with `keep_image=True` the RGB image; with `skip_unreadable=True` an
        unreadable image gives a result with `error` instead of raising). This is what `grefel-hf predict` uses."""
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs, output="records")
        return self.get_iterator(inputs, self._num_workers or 0 if num_workers is None else num_workers,
                                 self._batch_size if batch_size is None else batch_size,
                                 {**self._preprocess_params, **preprocess},
                                 {**self._forward_params, **forward}, {**self._postprocess_params, **postprocess})

    def _yunet_file(self):
        """The shipped YuNet model: from grefel_hf where it is installed, else the copy a saved model folder (or
        Hub repository) carries beside its weights, at the same fixed relative path."""
        try:
            return yunet_model_path()
        except FileNotFoundError:
            source = getattr(self.model, "name_or_path", "") or ""
            copy = cached_file(source, YUNET_FILE.as_posix(), _raise_exceptions_for_missing_entries=False) \
                if source else None
            return yunet_model_path(also=[copy] if copy else [])

    @contextmanager
    def _detector(self, options: FaceOptions):
        """A detector for `options`, lent to one thread at a time (OpenCV's detectors are not thread-safe): the
        idle ones are kept per setting and a thread that finds none idle gets a new one."""
        spec = options.face_detector
        key = (options.face_detector if isinstance(spec, str) else id(spec), options.align,
               options.detection_size, options.score_threshold, options.nms_threshold)
        idle = self.__dict__.setdefault("_detector_cache", {}).setdefault(key, [])
        try:
            detector = idle.pop()  # list.pop and list.append are atomic: no lock needed
        except IndexError:
            detector = build_face_detector(options, self._yunet_file() if spec == "yunet" else None)
        try:
            yield detector
        finally:
            idle.append(detector)

    def prepare_image(self, item: FaceInput, timeout: float | None = None, keep_image: bool = False,
                      skip_unreadable: bool = False, **face_options) -> PreparedImage:
        """Read one image, find and cut out its faces and process them for the model."""
        try:
            rgb = load_rgb(item.image, item.key, timeout)
        except READ_ERRORS as err:
            if not skip_unreadable:
                raise
            return PreparedImage(item.key, 0, 0, [], error=str(err))
        options = FaceOptions().updated(**face_options)
        with self._detector(options) as detector:
            found = faces_with_options(rgb, detector, options)
        pixels = None
        if found:
            inputs = self.image_processor(images=[crop for _, crop in found], return_tensors="pt",
                                          input_data_format="channels_last")
            pixels = inputs["pixel_values"]
        return PreparedImage(item.key, rgb.shape[1], rgb.shape[0], [face for face, _ in found], pixels,
                             rgb if keep_image else None)

    def preprocess(self, item, **params) -> Iterator[dict]:
        yield from face_chunks(self.prepare_image(as_face_input(item, 0), **params))

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        return next(iter(self.get_iterator([inputs], 0, self._batch_size, preprocess_params, forward_params,
                                           postprocess_params)))

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params,
                     postprocess_params):
        """Images are prepared (read, detected, cropped, processed) in `num_workers` DataLoader workers, in input
        order, or without workers in `PREPARE_THREADS` threads of this process (a built-in detector and more than
        one image); their faces are classified in batches of `batch_size` and regrouped per image by transformers'
        `PipelinePackIterator`."""
        check_batching(batch_size, num_workers)
        sized = hasattr(inputs, "__len__") and hasattr(inputs, "__getitem__") and not isinstance(inputs, dict)
        workers = num_workers if sized else min(num_workers, 1)
        built_in = isinstance(preprocess_params.get("face_detector", FaceOptions.face_detector), str)
        if workers == 0 and built_in and (not sized or len(inputs) > 1):  # a user's callable may not be thread-safe
            items = (as_face_input(inputs[i], i) for i in range(len(inputs))) if sized else \
                (as_face_input(item, i) for i, item in enumerate(inputs))
            prepared = prepared_in_threads(items, partial(self.prepare_image, **preprocess_params), PREPARE_THREADS)
        else:
            images = (_PreparedList if sized else _PreparedStream)(inputs, self.prepare_image, preprocess_params)
            prepared = DataLoader(images, batch_size=None, collate_fn=_no_collate, num_workers=workers,
                                  worker_init_fn=leave_signals_to_the_main_process if workers else None)
        model_iterator = PipelinePackIterator(batched_chunks(prepared, batch_size), self.forward, forward_params,
                                              loader_batch_size=batch_size)
        results = iter(PipelineIterator(model_iterator, self.postprocess, postprocess_params))
        return results if self.torch_threads is None else ThreadScoped(results, self.torch_threads)

    def _forward(self, model_inputs, tta_views: int = 1, tta_shift: float = 0.05):
        has_face = model_inputs["has_face"]
        count, num_labels = len(has_face), self.model.config.num_labels
        probabilities = torch.full((count, num_labels), float("nan"))
        reliability = torch.full((count,), float("nan"))
        pixels = model_inputs["pixel_values"]
        if pixels is not None:
            probs, rel = predict_probabilities(self.model, pixels.to(self.dtype), tta_views, tta_shift)
            probabilities[has_face.cpu()] = probs.float().cpu()
            reliability[has_face.cpu()] = rel.float().cpu().clamp(0.0, 1.0)
        return {"probabilities": probabilities, "reliability": reliability, "face": model_inputs["face"],
                "info": model_inputs["info"], "is_last": model_inputs["is_last"]}

    def postprocess(self, model_outputs: list[dict], top_k=DEFAULT_TOP_K, output: str = "faces",
                    min_score: float | None = None, min_reliability: float | None = None):
        info = model_outputs[0]["info"]
        with_face = [out for out in model_outputs if out["face"] is not None]
        probs = (torch.cat([out["probabilities"] for out in with_face]).numpy() if with_face
                 else np.zeros((0, self.model.config.num_labels), dtype=np.float32))
        reliability = (torch.cat([out["reliability"] for out in with_face]).numpy() if with_face
                       else np.zeros((0,), dtype=np.float32))
        result = ImageFaces(info["key"], info["width"], info["height"], [out["face"] for out in with_face], probs,
                            reliability, info["image"], info["error"],
                            abstentions(probs, reliability, min_score, min_reliability))
        return result if output == "records" else face_entries(result, self.model.config.id2label, top_k)


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
                inputs = [FaceInput(image, i) for i, image in enumerate(inputs)]
        return super().__call__(inputs, **kwargs)

    def preprocess(self, image, timeout=None):
        if not is_grefel_processor(self.image_processor):
            return super().preprocess(image, timeout=timeout)
        item = as_face_input(image, 0)
        rgb = load_rgb(item.image, item.key, timeout)
        inputs = self.image_processor(images=rgb, return_tensors="pt", input_data_format="channels_last")
        return inputs.to(self.dtype)


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_TOP_K", "READ_ERRORS", "UNCERTAIN", "FaceInput",
           "FacialExpressionRecognitionPipeline", "GReFELImageClassificationPipeline", "ImageFaces", "PreparedImage",
           "ThreadScoped", "abstentions", "as_face_input", "batched_chunks", "check_batching", "check_threshold", "check_top_k",
           "collate_chunks", "face_chunks", "face_entries", "fetch_url_image", "is_grefel_processor",
           "leave_signals_to_the_main_process", "load_rgb", "probabilities_and_reliability"]
