"""`grefel-hf predict`: expressions of every face in images, folders, globs and videos, written as rows.

The run reads each file (images as the model's processor reads them, videos with OpenCV every `frame_stride`-th
frame), finds and crops the faces, classifies them in batches that span files and frames, and writes one row per
face, or a `no_face` row (`writers`). Per video it writes a summary and an emotion-over-time plot; with
`annotate_dir`, copies with boxes and labels. Unreadable and unsupported files are skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..face_detection_grefel import FACE_DETECTORS, as_face_detector, extract_faces
from ..image_processing_grefel import MIN_IMAGE_SIDE, read_image
from ..pipeline_grefel import ImageFaces, classify_faces_in_batches, load_rgb
from .annotate import UniqueNames, annotated_image_path, draw_faces
from .backends import FaceClassifier, load_classifier
from .default_model import resolve_model_path
from .sources import Source, expand_inputs
from .summaries import RunSummary, VideoSummary, VideoTimeline, write_json
from .video import Mp4Writer, VideoFrames
from .writers import RowWriter, output_format, prediction_rows

logger = logging.getLogger(__name__)

READ_ERRORS = (ValueError, OSError, Image.DecompressionBombError)
"""How a file that cannot be read shows up: it is skipped and counted, the run goes on."""


@dataclass
class PredictOptions:
    """Settings of one `grefel-hf predict` run (the command-line options of the same names).

    Args:
        inputs: image files, folders (recursive), glob patterns and videos.
        output: the CSV or JSONL file of rows.
        model: a saved model folder or an exported .onnx file; None: the bundled default model.
        format: "csv" or "jsonl"; None: from the output's extension.
        backend: "auto", "torch" or "onnx"; device: "auto", "cpu", "cuda" or "mps".
        batch_size: faces per forward pass (batches span files and frames).
        frame_stride: process every N-th video frame; max_frames: at most this many frames per video.
        face_detector: "haar", "haar_profile" or "none" (each image is one face crop).
        margin, align, min_face_size: how faces are cut out (see `grefel_hf.face_detection_grefel`).
        annotate_dir: where copies with boxes and labels go (None: none written).
        summary_dir: where per-video summaries and plots go (None: `<output stem>_videos` beside the output).
        tta_views, tta_shift: test-time augmentation (1 view: none).
        progress: show a progress bar.
    """

    inputs: list[str]
    output: str
    model: str | None = None
    format: str | None = None
    backend: str = "auto"
    device: str = "auto"
    batch_size: int = 32
    frame_stride: int = 1
    max_frames: int | None = None
    face_detector: str = "haar"
    margin: float = 0.2
    align: bool = False
    min_face_size: int = 24
    annotate_dir: str | None = None
    summary_dir: str | None = None
    tta_views: int = 1
    tta_shift: float = 0.05
    progress: bool = True

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("give at least one INPUT: an image, a folder, a glob pattern or a video")
        for name in ("batch_size", "frame_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max_frames must be >= 1, got {self.max_frames}")
        if self.face_detector not in FACE_DETECTORS:
            raise ValueError(f"--face_detector must be one of {FACE_DETECTORS}, got {self.face_detector!r}")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"--margin must be in [0, 2], got {self.margin}")
        if self.min_face_size < MIN_IMAGE_SIDE:
            raise ValueError(f"--min_face_size must be >= {MIN_IMAGE_SIDE} pixels, got {self.min_face_size}")
        output_format(self.output, self.format)


@dataclass
class PredictReport:
    """What a run wrote: the rows file, the run summary (also written as `<output stem>.summary.json`), and per
    video its summary (`<video>.summary.json`) and plot (`<video>.emotions.png`) in `summary_dir`."""

    output: Path
    summary_file: Path
    summary: RunSummary
    videos: list[VideoSummary] = field(default_factory=list)
    video_files: list[Path] = field(default_factory=list)


@dataclass
class _Key:
    source: Source
    frame: int | None
    image: np.ndarray | None  # kept only for annotation


class _Run:
    """One run's state: the producer of face crops (`items`) and the consumer of their predictions (`take`)."""

    def __init__(self, options: PredictOptions, classifier: FaceClassifier):
        self.options, self.classifier, self.labels = options, classifier, classifier.labels
        self.detector = as_face_detector(options.face_detector, find_eyes=options.align)
        if self.detector is not None and hasattr(self.detector, "min_size"):
            self.detector.min_size = options.min_face_size
        self.summary = RunSummary()
        output = Path(options.output)
        self.summary_dir = Path(options.summary_dir or output.parent / f"{output.stem}_videos")
        self.summary_names = UniqueNames(self.summary_dir)
        self.annotations = UniqueNames(options.annotate_dir) if options.annotate_dir else None
        self.fps: dict[Path, float] = {}
        self.videos: list[VideoSummary] = []
        self.video_files: list[Path] = []
        self._timeline: VideoTimeline | None = None
        self._video_writer: Mp4Writer | None = None
        self._video_source: Source | None = None

    def _faces(self, rgb: np.ndarray):
        o = self.options
        return extract_faces(rgb, self.detector, margin=o.margin, align=o.align, min_face_size=o.min_face_size)

    def _keep(self, rgb: np.ndarray) -> np.ndarray | None:
        return rgb if self.annotations is not None else None

    def _image_items(self, source: Source, index: int):
        try:
            rgb = load_rgb(read_image(source.path), index)
        except READ_ERRORS as err:
            self.summary.unreadable.append((str(source.path), str(err)))
            logger.warning("skipped %s: %s", source.path, err)
            return
        self.summary.images += 1
        yield _Key(source, None, self._keep(rgb)), (rgb.shape[1], rgb.shape[0]), self._faces(rgb)

    def _video_items(self, source: Source):
        try:
            frames = VideoFrames(source.path, self.options.frame_stride, self.options.max_frames)
        except ValueError as err:
            self.summary.unreadable.append((str(source.path), str(err)))
            logger.warning("skipped %s: %s", source.path, err)
            return
        self.fps[source.path] = frames.fps
        count = 0
        for frame_index, rgb in frames:
            count += 1
            self.summary.frames += 1
            yield _Key(source, frame_index, self._keep(rgb)), (rgb.shape[1], rgb.shape[0]), self._faces(rgb)
        if count:
            self.summary.videos += 1
        else:
            self.summary.unreadable.append((str(source.path), "OpenCV could read no frame of this video"))

    def items(self, sources: list[Source], bar) -> Iterator:
        for index, source in enumerate(sources):
            bar.set_postfix_str(source.path.name, refresh=False)
            if source.kind == "video":
                yield from self._video_items(source)
            else:
                yield from self._image_items(source, index)
            bar.update(1)

    def take(self, result: ImageFaces, writer: RowWriter) -> None:
        """Write one image's or frame's rows, annotation and video timeline entry."""
        key: _Key = result.key
        writer.write(prediction_rows(str(key.source.path), key.frame, result, self.labels))
        self.summary.faces += len(result.faces)
        self.summary.without_face += not result.faces
        if key.source != self._video_source:
            self.finish_video()
        if key.frame is not None:
            self._add_frame(key, result)
        elif self.annotations is not None:
            path = annotated_image_path(self.annotations, key.source.path)
            Image.fromarray(draw_faces(key.image, result, self.labels)).save(path)

    def _add_frame(self, key: _Key, result: ImageFaces) -> None:
        if self._video_source is None:
            self._video_source = key.source
            fps = self.fps[key.source.path]
            self._timeline = VideoTimeline(str(key.source.path), fps, self.labels)
            if self.annotations is not None:
                path = self.annotations.path(key.source.path.stem, ".mp4")
                self._video_writer = Mp4Writer(path, fps / self.options.frame_stride)
        self._timeline.add(key.frame, result)
        if self._video_writer is not None:
            self._video_writer.write(draw_faces(key.image, result, self.labels))

    def finish_video(self) -> None:
        """Write the summary and plot of the video whose frames just ended."""
        if self._video_source is None:
            return
        stem = self._video_source.path.stem
        summary = self._timeline.summary()
        self.videos.append(summary)
        self.video_files.append(write_json(self.summary_names.path(stem, ".summary.json"), asdict(summary)))
        self.video_files.append(self._timeline.plot(self.summary_names.path(stem, ".emotions.png")))
        if self._video_writer is not None:
            self._video_writer.close()
        self._video_source, self._timeline, self._video_writer = None, None, None


def run_predict(options: PredictOptions) -> PredictReport:
    """Run `grefel-hf predict` (see the module docstring); `report.summary.processed == 0` means nothing could be
    processed.

    Raises:
        FileNotFoundError, ValueError, ImportError: the model, an option or a needed package is missing or wrong.
    """
    sources = expand_inputs(options.inputs)
    model_path = resolve_model_path(options.model)
    classifier = load_classifier(model_path, options.backend, options.device, options.tta_views, options.tta_shift)
    run = _Run(options, classifier)
    run.summary.unsupported = [str(p) for p in sources.unsupported]
    run.summary.missing = list(sources.missing)
    for path in sources.unsupported:
        logger.warning("skipped %s: neither an image nor a video by its extension", path)
    for text in sources.missing:
        logger.warning("skipped %s: no such file, folder or matching file", text)
    with RowWriter(options.output, run.labels, options.format) as writer, \
            tqdm(total=len(sources.sources), unit="file", disable=not options.progress) as bar:
        stream = classify_faces_in_batches(run.items(sources.sources, bar), classifier, options.batch_size,
                                           len(run.labels))
        for result in stream:
            run.take(result, writer)
        run.finish_video()
    output = Path(options.output)
    summary_file = write_json(output.with_name(f"{output.stem}.summary.json"), {
        "model": str(model_path), "backend": classifier.backend, "output": str(output),
        **run.summary.as_dict(), "video_summaries": [asdict(v) for v in run.videos],
    })
    logger.info("%s", run.summary.describe())
    return PredictReport(output, summary_file, run.summary, run.videos, run.video_files)


__all__ = ["PredictOptions", "PredictReport", "run_predict"]
