"""What the demo's page shows, computed without Gradio: the faces of a photo, a video or a webcam frame through the
`facial-expression-recognition` pipeline, as table rows (the columns of `grefel-hf predict`), annotated pictures
and videos, emotion-over-time plots and saliency overlays.

Faces the model abstains on (label `uncertain`) are drawn in grey with "uncertain?" over them. Problems with what a
visitor gave are `DemoInputError`s, whose messages the page shows as they are.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..face_detection_grefel import FaceBox, FaceOptions, to_uint8_rgb
from ..image_processing_grefel import read_image
from ..inference.annotate import BOX_COLOUR, TEXT_COLOUR, UNCERTAIN_COLOUR
from ..inference.summaries import VideoTimeline
from ..inference.video import VideoFrames, require_opencv
from ..inference.writers import NO_FACE
from ..pipeline_grefel import UNCERTAIN, ImageFaces, load_rgb
from ..pretrained import resolve_model_path
from .options import MEGABYTE

logger = logging.getLogger(__name__)

LANDMARK_COLOUR = (255, 220, 0)
"""Colour of the detector's landmarks (eyes, nose tip, mouth corners) when it gives them."""

VIDEO_CODECS = (("VP80", ".webm"), ("mp4v", ".mp4"))
"""Annotated videos are VP8 in WebM, which browsers play and OpenCV's wheels write; MPEG-4 Part 2 where OpenCV
cannot write VP8 (browsers may not play it, but it downloads)."""

FRAMES_PER_CALL = 8
"""Video frames given to the pipeline at a time."""


class DemoInputError(ValueError):
    """A problem with what a visitor gave (no file, too large, unreadable, a wrong setting): shown as it is."""


def format_size(size: int) -> str:
    """A byte count as MB (or kB under 0.1 MB), as the page names upload sizes."""
    if size < MEGABYTE / 10:
        return f"{size / 1000:.1f} kB"
    return f"{size / MEGABYTE:.1f} MB"


def check_upload(path: str | Path | None, limit: int, what: str) -> Path:
    """`path` as a Path, refusing a missing upload and one larger than `limit` bytes (naming both sizes)."""
    if path is None:
        raise DemoInputError(f"no {what} given: upload one first")
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise DemoInputError(f"this {what} is {format_size(size)}; the demo takes files up to {format_size(limit)}")
    return path


def _named(err: Exception, path: Path) -> str:
    """The error's message with the server-side path of an upload shortened to its file name."""
    return str(err).replace(str(path), path.name)


def model_labels(pipe) -> list[str]:
    """The model's class names in class order."""
    id2label = pipe.model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def probabilities(entry: dict, labels: list[str]) -> list[float]:
    """A face entry's probability of each class, in class order (the entry must list every label: `top_k=None`)."""
    scores = {item["label"]: item["score"] for item in entry["top_k"]}
    return [float(scores.get(label, 0.0)) for label in labels]


def table_columns(labels: list[str], first: str) -> list[str]:
    """The table's columns: `first` ("face" or "frame"), then `grefel-hf predict`'s box, label and score columns."""
    return [first, "box_x", "box_y", "box_w", "box_h", "label", "score", "reliability",
            *(f"prob_{label}" for label in labels)]


def face_rows(entries: list[dict], labels: list[str], frame: int | None = None) -> list[list[Any]]:
    """Table rows of one photo (first column: the face's number from 1) or video frame (the frame index; a frame
    without a face gives one `no_face` row, as `grefel-hf predict` writes)."""
    if not entries and frame is not None:
        return [[frame, None, None, None, None, NO_FACE, None, None, *([None] * len(labels))]]
    rows = []
    for number, entry in enumerate(entries, start=1):
        box = entry["box"]
        rows.append([number if frame is None else frame, box["x"], box["y"], box["w"], box["h"], entry["label"],
                     round(float(entry["score"]), 4), round(float(entry["reliability"]), 4),
                     *(round(p, 4) for p in probabilities(entry, labels))])
    return rows


def face_caption(entry: dict) -> str:
    """What is written over a face: "label score", or "uncertain?" with the best guess when the model abstains."""
    if entry["label"] != UNCERTAIN:
        return f"{entry['label']} {entry['score']:.2f}"
    guesses = [item for item in entry.get("top_k") or [] if item["label"] != UNCERTAIN]
    return f"uncertain? ({guesses[0]['label']} {guesses[0]['score']:.2f})" if guesses else "uncertain?"


def _font(image_side: int):
    try:
        return ImageFont.load_default(size=max(11, round(image_side / 45)))
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_entries(image: np.ndarray, entries: list[dict]) -> np.ndarray:
    """An RGB uint8 copy of `image` with each face's box, caption and landmarks (when given) drawn on it: red,
    or grey for a face labelled `uncertain`."""
    canvas = Image.fromarray(to_uint8_rgb(image))
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    width, font = max(1, round(side / 300)), _font(side)
    for entry in entries:
        x, y, w, h = (entry["box"][key] for key in ("x", "y", "w", "h"))
        colour = UNCERTAIN_COLOUR if entry["label"] == UNCERTAIN else BOX_COLOUR
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=width)
        for lx, ly in entry.get("landmarks") or []:
            draw.ellipse((lx - width - 1, ly - width - 1, lx + width + 1, ly + width + 1), fill=LANDMARK_COLOUR)
        text = face_caption(entry)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_top = y - (bottom - top) - 4 if y >= bottom - top + 4 else y
        draw.rectangle((x, label_top, x + right - left + 4, label_top + bottom - top + 4), fill=colour)
        draw.text((x + 2 - left, label_top + 2 - top), text, fill=TEXT_COLOUR, font=font)
    return np.asarray(canvas)


def describe_faces(entries: list[dict]) -> str:
    """One line for the page: what was found."""
    if not entries:
        return ("No face found. Try another face detector or a smaller smallest face; for a photo that is already a "
                "face crop, choose the detector none.")
    found = ", ".join(face_caption(entry) for entry in entries)
    return f"{len(entries)} face{'s' if len(entries) > 1 else ''}: {found}."


def read_photo(path: Path) -> np.ndarray:
    """The photo as the (H, W, 3) RGB array `grefel-hf predict` makes of the same file."""
    try:
        return load_rgb(read_image(path), 0)
    except (ValueError, OSError, Image.DecompressionBombError) as err:
        raise DemoInputError(f"cannot read this photo: {_named(err, path)}") from err


@dataclass
class PhotoResult:
    """One analysed photo: the annotated image, the pipeline's entries, the class names, the table rows (one per
    face, `table_columns(labels, "face")`) and a line for the page."""

    annotated: np.ndarray
    entries: list[dict]
    labels: list[str]
    rows: list[list[Any]]
    message: str


def analyse_photo(pipe, path: Path, face_options: dict[str, Any]) -> PhotoResult:
    """Every face of the photo at `path` through `pipe` with `face_options` (the pipeline's face options)."""
    rgb = read_photo(path)
    entries = pipe(rgb, top_k=None, **face_options)
    labels = model_labels(pipe)
    return PhotoResult(draw_entries(rgb, entries), entries, labels, face_rows(entries, labels),
                       describe_faces(entries))


def analyse_frame(pipe, rgb: np.ndarray, face_options: dict[str, Any]) -> tuple[np.ndarray, list[dict]]:
    """A webcam frame with each face's box and label drawn on it, and the pipeline's entries (best label only)."""
    entries = pipe(rgb, top_k=1, **face_options)
    return draw_entries(rgb, entries), entries


def measure_stream_interval(pipe, face_options: dict[str, Any], low: float = 0.1, high: float = 2.0) -> float:
    """Seconds between webcam frames that this machine sustains: 1.5 times the time of one 640 x 480 frame's
    detection plus one face's classification, measured after a warm-up call, kept in [low, high]."""
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    face = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    crop_options = {**face_options, "face_detector": "none"}
    pipe(frame, **face_options)
    pipe(face, **crop_options)
    start = time.perf_counter()
    pipe(frame, **face_options)
    pipe(face, **crop_options)
    return float(min(max(1.5 * (time.perf_counter() - start), low), high))


class BrowserVideoWriter:
    """Writes RGB frames to `<stem>.webm` (VP8), or `<stem>.mp4` where OpenCV cannot write VP8; opened with the
    size of the first frame. `path` is the file written (None before the first frame)."""

    def __init__(self, stem: Path, fps: float):
        self.cv2 = require_opencv()
        self.stem, self.fps = stem, fps
        self.path: Path | None = None
        self._writer = None

    def _open(self, width: int, height: int) -> None:
        for fourcc, suffix in VIDEO_CODECS:
            path = self.stem.with_suffix(suffix)
            writer = self.cv2.VideoWriter(str(path), self.cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height))
            if writer.isOpened():
                self._writer, self.path = writer, path
                return
            writer.release()
            logger.warning("OpenCV cannot write %s video here; trying the next codec", fourcc)
        raise OSError(f"OpenCV can write none of the video codecs {[c for c, _ in VIDEO_CODECS]}")

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._open(frame.shape[1], frame.shape[0])
        self._writer.write(self.cv2.cvtColor(np.ascontiguousarray(frame), self.cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def image_faces(entries: list[dict], labels: list[str], rgb: np.ndarray) -> ImageFaces:
    """The pipeline's entries for one frame as the `ImageFaces` that `VideoTimeline` takes (faces labelled
    `uncertain` stay uncertain)."""
    return ImageFaces(key=None, width=rgb.shape[1], height=rgb.shape[0],
                      faces=[FaceBox(**entry["box"]) for entry in entries],
                      probabilities=np.array([probabilities(e, labels) for e in entries],
                                             dtype=np.float32).reshape(len(entries), len(labels)),
                      reliability=np.array([e["reliability"] for e in entries], dtype=np.float32),
                      uncertain=np.array([e["label"] == UNCERTAIN for e in entries], dtype=bool))


@dataclass
class VideoResult:
    """One analysed video: the annotated video and emotion-over-time plot files, the summary (the fields of
    `grefel-hf predict`'s per-video summary), the table rows (`table_columns(labels, "frame")`) and a line."""

    video: Path
    plot: Path
    summary: dict[str, Any]
    labels: list[str]
    rows: list[list[Any]]
    message: str


def _expected_frames(frames: VideoFrames, stride: int, limit: int) -> int | None:
    count = frames.stated_frames
    return min(math.ceil(count / stride), limit) if count > 0 else None


class _VideoRun:
    """One video's frames through the pipeline in groups of `FRAMES_PER_CALL`: rows, timeline and annotated video."""

    def __init__(self, pipe, face_options: dict[str, Any], timeline: VideoTimeline, writer: BrowserVideoWriter):
        self.pipe, self.face_options, self.timeline, self.writer = pipe, face_options, timeline, writer
        self.labels = timeline.labels
        self.rows: list[list[Any]] = []
        self.pending: list[tuple[int, np.ndarray]] = []
        self.done = 0

    def add(self, index: int, rgb: np.ndarray) -> bool:
        """Queue one frame; True when a group was processed."""
        self.pending.append((index, rgb))
        if len(self.pending) < FRAMES_PER_CALL:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        if not self.pending:
            return
        results = self.pipe([rgb for _, rgb in self.pending], top_k=None, **self.face_options)
        for (index, rgb), entries in zip(self.pending, results, strict=True):
            self.rows.extend(face_rows(entries, self.labels, frame=index))
            self.timeline.add(index, image_faces(entries, self.labels, rgb))
            self.writer.write(draw_entries(rgb, entries))
        self.done += len(self.pending)
        self.pending = []


def analyse_video(pipe, path: Path, face_options: dict[str, Any], out_dir: Path, frame_stride: int = 1,
                  max_frames: int = 300, on_progress: Callable[[int, int | None], None] | None = None) -> VideoResult:
    """Every `frame_stride`-th frame of the video at `path` (at most `max_frames`) through `pipe`; the annotated
    video and the plot are written to `out_dir`. `on_progress(done, expected)` is called as frames are done
    (`expected` is None when the video does not say how many frames it has)."""
    if frame_stride < 1:
        raise DemoInputError(f"the frame stride must be >= 1, got {frame_stride}")
    try:
        frames = VideoFrames(path, frame_stride, max_frames)
    except ValueError as err:
        raise DemoInputError(_named(err, path)) from err
    expected = _expected_frames(frames, frame_stride, max_frames)
    timeline = VideoTimeline(path.name, frames.fps, model_labels(pipe))
    writer = BrowserVideoWriter(out_dir / f"{path.stem}_annotated", frames.fps / frame_stride)
    run = _VideoRun(pipe, face_options, timeline, writer)
    report = on_progress or (lambda done, expected: None)
    try:
        for index, rgb in frames:
            if run.add(index, rgb):
                report(run.done, expected)
        run.flush()
    finally:
        writer.close()
    report(run.done, expected)
    if run.done == 0:
        raise DemoInputError(f"{path.name}: OpenCV could read no frame of this video")
    summary = asdict(timeline.summary())
    plot = timeline.plot(out_dir / f"{path.stem}.emotions.png")
    message = (f"{run.done} frames analysed (frame stride {frame_stride}), {summary['faces']} faces; most often "
               f"{summary['dominant_label'] or 'no face'}.")
    if run.done == max_frames:
        message += f" Only the first {max_frames} processed frames were analysed (the demo's limit)."
    return VideoResult(writer.path, plot, summary, timeline.labels, run.rows, message)


def saliency_overlays(path: Path, model_path: Path, face_options: dict[str, Any],
                      out_dir: Path) -> list[tuple[str, str]]:
    """(overlay file, caption) per face of the photo: `grefel-hf explain`'s saliency overlays."""
    from ..inference.explain import explain_image

    report = explain_image(path, model_path, out_dir, faces=FaceOptions().updated(**face_options))
    return [(face.saliency_file, f"face {i}: {face.label} {face.score:.2f} ({face.saliency_method})")
            for i, face in enumerate(report.faces, start=1)]


class ModelStore:
    """The models the page offers (the bundled ones, the demo's `--model`, any local folder when allowed) and their
    pipelines, each loaded once (the `keep` most recently used stay loaded)."""

    def __init__(self, device: str = "auto", local_models: bool = True, keep: int = 3):
        self.device, self.local_models, self.keep = device, local_models, keep
        self._pipelines: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, choice: str | None, folder: str | None = None) -> Path:
        """The model folder of a drop-down `choice`, or of `folder` when one is typed in (and allowed)."""
        if folder and folder.strip():
            if not self.local_models:
                raise DemoInputError("this server does not load model folders; choose one of the listed models")
            path = Path(folder.strip()).expanduser()
        elif choice:
            path = resolve_model_path(choice)
        else:
            raise DemoInputError("no model chosen")
        if not (path / "config.json").is_file():
            raise DemoInputError(f"{path} is not a saved model folder (it has no config.json)")
        return path

    def pipeline(self, path: Path):
        """The `facial-expression-recognition` pipeline of the model folder `path`."""
        key = path.resolve()
        with self._lock:
            if key not in self._pipelines:
                self._pipelines[key] = self._load(key)
            self._pipelines[key] = self._pipelines.pop(key)  # most recently used last
            while len(self._pipelines) > self.keep:
                self._pipelines.pop(next(iter(self._pipelines)))
            return self._pipelines[key]

    def _load(self, path: Path):
        from ..inference.backends import load_face_pipeline

        logger.info("loading the model %s", path)
        try:  # as grefel-hf predict builds it: the bundled models in ONNX Runtime
            return load_face_pipeline(path, device=self.device)
        except (OSError, ValueError, KeyError) as err:
            raise DemoInputError(f"cannot load the model {path}: {err}") from err


class ScratchSpace:
    """Folders for what one request writes (annotated videos, plots, overlays) under one temporary folder; the
    oldest go once more than `keep` exist (by then Gradio has copied their files into its own cache), and the whole
    folder when the space is garbage-collected or the process ends."""

    def __init__(self, keep: int = 16):
        self.root = Path(tempfile.mkdtemp(prefix="grefel-demo-"))
        self.keep = keep
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.root, True)
        self._folders: list[Path] = []
        self._lock = threading.Lock()

    def new(self, prefix: str) -> Path:
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root))
            self._folders.append(folder)
            while len(self._folders) > self.keep:
                shutil.rmtree(self._folders.pop(0), ignore_errors=True)
        return folder

    def remove(self) -> None:
        self._cleanup()


__all__ = ["FRAMES_PER_CALL", "UNCERTAIN", "UNCERTAIN_COLOUR", "VIDEO_CODECS", "BrowserVideoWriter", "DemoInputError",
           "ModelStore", "PhotoResult", "ScratchSpace", "VideoResult", "analyse_frame", "analyse_photo",
           "analyse_video", "check_upload", "describe_faces", "draw_entries", "face_caption", "face_rows",
           "format_size", "image_faces", "measure_stream_interval", "model_labels", "probabilities", "read_photo",
           "saliency_overlays", "table_columns"]
