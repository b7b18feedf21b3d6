"""`grefel-hf predict`: expressions of every face in images, folders, globs and videos, written as rows.

Everything goes through the one `facial-expression-recognition` pipeline (`backends.face_pipeline`), so a photo gets
the same boxes and labels here as from `pipeline(...)`: images are read as the model's processor reads them, videos
with OpenCV every `frame_stride`-th frame; faces are found (YuNet by default), cropped and classified in batches
that span files and frames. Runs of images are handed to the pipeline as lists, so `num_workers` processes read
them and find their faces in parallel, in order; a video's frames stream through one worker. One row per face, or a
`no_face` row (`writers`); per video a summary and an emotion-over-time plot; with `annotate_dir`, copies with
boxes and labels. Unreadable and unsupported files are skipped and counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..face_detection_grefel import FaceOptions
from ..pipeline_grefel import FaceInput, ImageFaces
from ..pretrained import resolve_model_path
from .annotate import UniqueNames, annotated_image_path, draw_faces
from .backends import LoadedModel, face_pipeline, load_model
from .sources import Source, expand_inputs
from .summaries import RunSummary, VideoSummary, VideoTimeline, write_json
from .video import Mp4Writer, VideoFrames
from .writers import RowWriter, output_format, prediction_rows

logger = logging.getLogger(__name__)

IMAGES_PER_CALL = 256
"""Images handed to the pipeline at a time: memory stays bounded however many files a run has."""


def default_num_workers() -> int:
    """Worker processes that read images and find faces while the main process classifies: one per core but one,
    at most 4 (0 on a single core)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


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
        num_workers: processes that read files and find faces (None: `default_num_workers()`).
        threads: CPU threads that classify in the main process (None: one per core not given to a worker).
        frame_stride: process every N-th video frame; max_frames: at most this many frames per video.
        faces: how faces are found and cut out (detector, working size, thresholds, sizes, margin, alignment).
        landmarks: also write the detection score and the five landmarks' columns.
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
    num_workers: int | None = None
    threads: int | None = None
    frame_stride: int = 1
    max_frames: int | None = None
    faces: FaceOptions = field(default_factory=FaceOptions)
    landmarks: bool = False
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
        for name, low in (("max_frames", 1), ("num_workers", 0), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"--{name} must be >= {low}, got {value}")
        output_format(self.output, self.format)

    @property
    def workers(self) -> int:
        return default_num_workers() if self.num_workers is None else self.num_workers


@dataclass
class PredictReport:
    """What a run wrote: the rows file, the run summary (also written as `<output stem>.summary.json`), and per
    video its summary (`<video>.summary.json`) and plot (`<video>.emotions.png`) in `summary_dir`."""

    output: Path
    summary_file: Path
    summary: RunSummary
    videos: list[VideoSummary] = field(default_factory=list)
    video_files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class FrameKey:
    """What a pipeline result is tagged with: its file and, for a video, the frame index."""

    source: Source
    frame: int | None = None


def image_runs(sources: list[Source]) -> Iterator[tuple[str, list[Source]]]:
    """The sources in order as ("images", up to `IMAGES_PER_CALL` images) and ("video", [one video]) groups."""
    images: list[Source] = []
    for source in sources:
        if source.kind == "video":
            if images:
                yield "images", images
                images = []
            yield "video", [source]
        else:
            images.append(source)
            if len(images) == IMAGES_PER_CALL:
                yield "images", images
                images = []
    if images:
        yield "images", images


class _Run:
    """One run's state: what comes back from the pipeline (`take`), written as rows, summaries and annotations."""

    def __init__(self, options: PredictOptions, labels: list[str]):
        self.options, self.labels = options, labels
        self.summary = RunSummary()
        output = Path(options.output)
        self.summary_dir = Path(options.summary_dir or output.parent / f"{output.stem}_videos")
        self.summary_names = UniqueNames(self.summary_dir)
        self.annotations = UniqueNames(options.annotate_dir) if options.annotate_dir else None
        self.videos: list[VideoSummary] = []
        self.video_files: list[Path] = []

    def take_image(self, result: ImageFaces, writer: RowWriter) -> None:
        """Write one still image's rows and annotated copy, or count it as unreadable."""
        source = result.key.source
        if result.error is not None:
            self.summary.unreadable.append((str(source.path), result.error))
            logger.warning("skipped %s: %s", source.path, result.error)
            return
        self.summary.images += 1
        self._write_rows(result, writer)
        if self.annotations is not None:
            path = annotated_image_path(self.annotations, source.path)
            Image.fromarray(draw_faces(result.image, result, self.labels)).save(path)

    def _write_rows(self, result: ImageFaces, writer: RowWriter) -> None:
        key: FrameKey = result.key
        writer.write(prediction_rows(str(key.source.path), key.frame, result, self.labels, self.options.landmarks))
        self.summary.faces += len(result.faces)
        self.summary.without_face += not result.faces

    def take_video(self, source: Source, fps: float, results: Iterator[ImageFaces], writer: RowWriter) -> None:
        """Write a video's frame rows as they come, then its summary, plot and annotated copy."""
        timeline = VideoTimeline(str(source.path), fps, self.labels)
        video_writer = None
        if self.annotations is not None:
            video_writer = Mp4Writer(self.annotations.path(source.path.stem, ".mp4"), fps / self.options.frame_stride)
        try:
            for result in results:
                self.summary.frames += 1
                self._write_rows(result, writer)
                timeline.add(result.key.frame, result)
                if video_writer is not None:
                    video_writer.write(draw_faces(result.image, result, self.labels))
        finally:
            if video_writer is not None:
                video_writer.close()
        if not timeline.times:
            self.summary.unreadable.append((str(source.path), "OpenCV could read no frame of this video"))
            return
        self.summary.videos += 1
        summary = timeline.summary()
        self.videos.append(summary)
        stem = source.path.stem
        self.video_files.append(write_json(self.summary_names.path(stem, ".summary.json"), asdict(summary)))
        self.video_files.append(timeline.plot(self.summary_names.path(stem, ".emotions.png")))


@contextmanager
def classification_threads(threads: int, backend: str):
    """PyTorch's CPU threads for the run, put back afterwards. With ONNX Runtime classifying, PyTorch only joins
    tensors: one thread, so that its thread pool does not compete with ONNX Runtime's and the workers' for the
    cores (on 2 cores this made the photo path about 3 times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1 if backend == "onnx" else threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _frames(frames: VideoFrames, source: Source) -> Iterator[FaceInput]:
    for index, rgb in frames:
        yield FaceInput(rgb, FrameKey(source, index))


def _process(run: _Run, pipe, sources: list[Source], writer: RowWriter, bar) -> None:
    o = run.options
    settings = {"batch_size": o.batch_size, "keep_image": run.annotations is not None, "skip_unreadable": True,
                **{name: getattr(o.faces, name) for name in asdict(o.faces)}}
    for kind, group in image_runs(sources):
        if kind == "images":
            inputs = [FaceInput(str(s.path), FrameKey(s)) for s in group]
            for result in pipe.image_faces(inputs, num_workers=min(o.workers, len(group)), **settings):
                run.take_image(result, writer)
                bar.update(1)
            continue
        source = group[0]
        bar.set_postfix_str(source.path.name, refresh=False)
        try:
            frames = VideoFrames(source.path, o.frame_stride, o.max_frames)
        except ValueError as err:
            run.summary.unreadable.append((str(source.path), str(err)))
            logger.warning("skipped %s: %s", source.path, err)
        else:
            results = pipe.image_faces(_frames(frames, source), num_workers=min(o.workers, 1), **settings)
            run.take_video(source, frames.fps, results, writer)
        bar.update(1)


def load_for_predict(options: PredictOptions) -> tuple[LoadedModel, int]:
    """The model of a run and the CPU threads that classify (one per core not given to a worker)."""
    threads = options.threads or max(1, (os.cpu_count() or 1) - options.workers)
    loaded = load_model(resolve_model_path(options.model), options.backend, options.device, onnx_threads=threads)
    return loaded, threads


def run_predict(options: PredictOptions) -> PredictReport:
    """Run `grefel-hf predict` (see the module docstring); `report.summary.processed == 0` means nothing could be
    processed.

    Raises:
        FileNotFoundError, ValueError, ImportError: the model, an option or a needed package is missing or wrong.
    """
    sources = expand_inputs(options.inputs)
    loaded, threads = load_for_predict(options)
    pipe = face_pipeline(loaded, tta_views=options.tta_views, tta_shift=options.tta_shift)
    labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]
    run = _Run(options, labels)
    run.summary.unsupported = [str(p) for p in sources.unsupported]
    run.summary.missing = list(sources.missing)
    for path in sources.unsupported:
        logger.warning("skipped %s: neither an image nor a video by its extension", path)
    for text in sources.missing:
        logger.warning("skipped %s: no such file, folder or matching file", text)
    for path, reason in sources.skipped:
        run.summary.unreadable.append((str(path), reason))
        logger.warning("skipped %s: it %s", path, reason)
    with RowWriter(options.output, labels, options.format, options.landmarks) as writer, \
            tqdm(total=len(sources.sources), unit="file", disable=not options.progress) as bar, \
            classification_threads(threads, loaded.backend):
        _process(run, pipe, sources.sources, writer, bar)
    output = Path(options.output)
    summary_file = write_json(output.with_name(f"{output.stem}.summary.json"), {
        "model": str(loaded.path), "backend": loaded.backend, "output": str(output),
        **run.summary.as_dict(), "video_summaries": [asdict(v) for v in run.videos],
    })
    logger.info("%s", run.summary.describe())
    return PredictReport(output, summary_file, run.summary, run.videos, run.video_files)


__all__ = ["IMAGES_PER_CALL", "FrameKey", "PredictOptions", "PredictReport", "default_num_workers", "image_runs",
           "load_for_predict", "run_predict"]
