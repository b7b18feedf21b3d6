"""`grefel-hf predict`: expressions of every face in images, folders, globs and videos, written as rows.

Everything goes through the one `facial-expression-recognition` pipeline (`backends.face_pipeline`), so a photo gets
the same boxes and labels here as from `pipeline(...)`: images are read as the model's processor reads them, videos
with OpenCV every `frame_stride`-th frame; faces are found (YuNet by default), cropped and classified in batches
that span files and frames. Runs of images are handed to the pipeline as lists, so `num_workers` processes read
them and find their faces in parallel, in order; a video's frames stream through one worker. One row per face, or a
`no_face` row (`writers`); per video a summary and an emotion-over-time plot; with `annotate_dir`, copies with
boxes and labels. Unreadable and unsupported files are skipped and counted.

Nothing is lost and nothing overwritten: the paths are checked before any work (`targets`: inputs are never
written, an existing output is kept unless `overwrite` or continued with `resume`); rows are flushed as each image
or frame is done; SIGINT and SIGTERM stop the run at the next image or frame (`interrupt`), with the summaries of
what was done; `resume` continues an interrupted run's file so that it ends as an uninterrupted run's (`resume`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..face_detection_grefel import FaceOptions
from ..pipeline_grefel import UNCERTAIN, FaceInput, ImageFaces, check_threshold
from ..pretrained import resolve_model_path
from .annotate import draw_faces
from .backends import LoadedModel, face_pipeline, load_model
from .interrupt import StopSignals
from .resume import ResumePoint, faces_from_rows, frames_of, read_resume_point, recorded_rows_bytes
from .shards import Piece, WorkItem, work_items
from .sources import Source, SourceList, iter_sources
from .summaries import RunSummary, VideoSummary, VideoTimeline, write_json
from .targets import OutputNames, RunTargets, SourceFiles, check_targets
from .video import Mp4Writer, VideoFrames
from .writers import RowWriter, columns, escaped_name, output_format, prediction_rows, stored_text

logger = logging.getLogger(__name__)

IMAGES_PER_CALL = 256
"""Images handed to the pipeline at a time: memory stays bounded however many files a run has."""


def default_num_workers(cores: int | None = None) -> int:
    """Worker processes that read images and find faces while the main process classifies, for `cores` CPU cores
    (default: this machine's): none on 2 cores or fewer, else one per core but one, at most 4.

    Measured on 2 cores (benchmarks/RESULTS.md, photo_speed): OpenCV runs YuNet on every core in the main process
    but on one thread in a forked worker, so there one worker made the photo path 1.5x slower than none, and two
    workers no faster than none."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    return 0 if cores <= 2 else min(4, cores - 1)


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
        min_score, min_reliability: label a face `uncertain` when its score (top class probability) or reliability
            is below it (None: never); its probabilities and scores are written all the same.
        overwrite: replace an existing output (rows, summaries, annotated copies) instead of refusing to start.
        resume: continue the output of an interrupted run of the same command (see `resume`); without an output
            to continue, a new run.
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
    min_score: float | None = None
    min_reliability: float | None = None
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("give at least one INPUT: an image, a folder, a glob pattern or a video")
        if self.overwrite and self.resume:
            raise ValueError("--overwrite and --resume exclude each other: replace the output, or continue it")
        for name in ("batch_size", "frame_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name, low in (("max_frames", 1), ("num_workers", 0), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"--{name} must be >= {low}, got {value}")
        output_format(self.output, self.format)
        for name in ("min_score", "min_reliability"):
            check_threshold(f"--{name}", getattr(self, name))

    @property
    def workers(self) -> int:
        return default_num_workers() if self.num_workers is None else self.num_workers


@dataclass
class PredictReport:
    """What a run wrote: the rows file, the run summary (also written as `<output stem>.summary.json`), and per
    video its summary (`<video>.summary.json`) and plot (`<video>.emotions.png`) in `summary_dir`. In a run over
    several processes, `process_index` is this process's; only the main process (0) reports the whole run, the
    others their part (`distributed`)."""

    output: Path
    summary_file: Path
    summary: RunSummary
    videos: list[VideoSummary] = field(default_factory=list)
    video_files: list[Path] = field(default_factory=list)
    process_index: int = 0


@dataclass(frozen=True)
class FrameKey:
    """What a pipeline result is tagged with: its file and, for a video, the frame index."""

    source: Source
    frame: int | None = None

    def __str__(self) -> str:  # how errors name it
        name = escaped_name(self.source.path)
        return name if self.frame is None else f"{name} frame {self.frame}"


def image_runs(items: Iterable[WorkItem]) -> Iterator[tuple[str, list[WorkItem]]]:
    """The inputs in order as ("images", up to `IMAGES_PER_CALL` images) and ("video", [one video]) groups."""
    images: list[WorkItem] = []
    for item in items:
        if item.source.kind == "video":
            if images:
                yield "images", images
                images = []
            yield "video", [item]
        else:
            images.append(item)
            if len(images) == IMAGES_PER_CALL:
                yield "images", images
                images = []
    if images:
        yield "images", images


class PredictRun:
    """One run's state: what comes back from the pipeline (`take_image`, `take_video`), written as rows, summaries
    and annotations, and counted; `stop` says when a signal asked the run to end.

    The rows go to `rows_file` and what a resume trusts to `record_file`: the run's output and summary, or with
    `part` (one process of several, `distributed`) the process's part, in which case no video summary is written
    here (the main process makes them from the merged rows)."""

    def __init__(self, options: PredictOptions, labels: list[str], targets: RunTargets, stop: StopSignals,
                 part=None):
        self.options, self.labels, self.targets, self.stop = options, labels, targets, stop
        self.summary = RunSummary()
        self.names = OutputNames(targets)
        self.done: set[str] = set()
        self.videos: list[VideoSummary] = []
        self.video_files: list[Path] = []
        self.sharded = part is not None
        self.rows_file, self.record_file = (targets.output, targets.summary_file) if part is None else \
            (part.rows, part.summary)

    def begin(self, source: Source, owner: bool = True) -> SourceFiles:
        """The files of the next input (every input, in order, done or not, so names never depend on which are
        done); counts a name that is not UTF-8 when this process is its `owner`."""
        name = escaped_name(source.path)
        if owner and name != os.fspath(source.path):
            self.summary.escaped_names += 1
            logger.warning("a file name that is not valid UTF-8 is written as %s (undecodable bytes as \\xNN, "
                           "backslashes doubled)", name)
        return self.names.of(source)

    def unreadable(self, source: Source | Path, reason: str) -> None:
        name = escaped_name(source.path if isinstance(source, Source) else source)
        self.summary.unreadable.append((name, reason))
        logger.warning("skipped %s: %s", name, reason)

    def count(self, result: ImageFaces, frame: int | None) -> None:
        """Count one image or frame and its faces."""
        self.summary.images += frame is None
        self.summary.frames += frame is not None
        self.summary.faces += len(result.faces)
        self.summary.uncertain += result.face_labels(self.labels).count(UNCERTAIN)
        self.summary.without_face += not result.faces

    def count_kept(self, source: str, frame: int | None, rows: list[dict]) -> None:
        """Count an image or frame whose rows a resumed run keeps."""
        self.count(faces_from_rows(rows, self.labels), frame)
        self.summary.resumed_rows += len(rows)

    def _write_rows(self, result: ImageFaces, writer: RowWriter) -> None:
        key: FrameKey = result.key
        writer.write(prediction_rows(escaped_name(key.source.path), key.frame, result, self.labels,
                                     self.options.landmarks))
        writer.flush()
        self.count(result, key.frame)

    def take_image(self, result: ImageFaces, files: SourceFiles, writer: RowWriter) -> None:
        """Write one still image's rows and annotated copy, or count it as unreadable."""
        if result.error is not None:
            self.unreadable(result.key.source, result.error)
            return
        self._write_rows(result, writer)
        if files.annotated is not None:
            files.annotated.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(draw_faces(result.image, result, self.labels)).save(files.annotated)

    def take_video(self, item: WorkItem, frames: VideoFrames, files: SourceFiles, results: Iterator[ImageFaces],
                   writer: RowWriter, kept: list[dict]) -> None:
        """Write a video's frame rows as they come (after the `kept` rows of a resumed run, replayed), until it ends
        or a signal stops the run; then its summary, plot and annotated copy, for the frames done (the summary
        and plot only when this process does the whole run)."""
        source = item.source
        timeline = VideoTimeline(escaped_name(source.path), frames.fps, self.labels)
        video_writer, stopped = None, False
        if files.annotated is not None:
            video_writer = Mp4Writer(files.annotated, frames.fps / self.options.frame_stride)
        try:
            self._replay(frames, kept, timeline, video_writer)
            for result in results:
                self._write_rows(result, writer)
                timeline.add(result.key.frame, result)
                if video_writer is not None:
                    video_writer.write(draw_faces(result.image, result, self.labels))
                if self.stop.requested:
                    stopped = True
                    break
        finally:
            if video_writer is not None:
                video_writer.close()
        if not timeline.times:
            if item.owner:
                self.unreadable(source, "OpenCV could read no frame of this video")
            return
        if not self.sharded:
            self._video_summary(source, frames, files, timeline, complete=not stopped)

    def video_from_rows(self, source: Source, files: SourceFiles, rows: list[dict]) -> None:
        """A video's summary and plot made from its rows (those of a run over several processes, merged)."""
        o = self.options
        frames = VideoFrames(source.path, o.frame_stride, o.max_frames)
        timeline = VideoTimeline(escaped_name(source.path), frames.fps, self.labels)
        self._replay(frames, rows, timeline, None)
        self._video_summary(source, frames, files, timeline, complete=True)

    def _replay(self, frames: VideoFrames, kept: list[dict], timeline: VideoTimeline,
                video_writer: Mp4Writer | None) -> None:
        """The frames a resumed run keeps, back into the video's timeline and annotated copy."""
        pictures = iter(VideoFrames(frames.path, frames.frame_stride, frames.max_frames)) if video_writer else None
        try:
            for frame, rows in frames_of(kept):
                result = faces_from_rows(rows, self.labels)
                timeline.add(frame, result)
                rgb = None if pictures is None else next((rgb for index, rgb in pictures if index == frame), None)
                if rgb is not None:
                    video_writer.write(draw_faces(rgb, result, self.labels))
        finally:
            if pictures is not None:
                pictures.close()

    def _video_summary(self, source: Source, frames: VideoFrames, files: SourceFiles, timeline: VideoTimeline,
                       complete: bool) -> None:
        expected = frames.expected_frames
        truncated = complete and expected is not None and len(timeline.times) < expected
        summary = replace(timeline.summary(), frames_stated=frames.stated_frames or None, truncated=truncated,
                          complete=complete)
        if truncated:
            self.summary.truncated_videos.append(summary.source)
            logger.warning("%s: only %d of the %d frames to process could be read (its header states %d frames, "
                           "--frame_stride %d); the video seems cut short", summary.source, len(timeline.times),
                           expected, frames.stated_frames, frames.frame_stride)
        self.summary.videos += 1
        self.videos.append(summary)
        self.video_files.append(write_json(files.summary, asdict(summary)))
        self.video_files.append(timeline.plot(files.plot))

    def skip_done(self, source: Source, files: SourceFiles) -> None:
        """An input whose rows a resumed run keeps: a video's summary comes back from its file."""
        if files.summary is None:
            return
        if not files.summary.is_file():
            logger.warning("%s: its rows are kept, but not its summary %s (left out of the run summary)",
                           escaped_name(source.path), files.summary)
            return
        known = {f.name for f in fields(VideoSummary)}
        data = json.loads(files.summary.read_text(encoding="utf-8"))
        self.videos.append(VideoSummary(**{k: v for k, v in data.items() if k in known}))
        self.video_files.extend([files.summary, files.plot])

    def resume_point(self, writer_format: str, items: Callable[[], Iterator[WorkItem]]) -> ResumePoint | None:
        """What the rows file already holds, for `resume` (None: a new file); `items()` lists the inputs again,
        to check that the file holds rows of this process's inputs only."""
        output = self.rows_file
        if not (self.options.resume and output.is_file()):
            return None
        point = read_resume_point(output, writer_format, columns(self.labels, self.options.landmarks),
                                  self.count_kept, recorded_rows_bytes(self.record_file))
        video_named = point.video is None
        for item in items():
            if item.mine:
                name = stored_text(escaped_name(item.source.path), writer_format)
                point.done.mark(name)
                video_named = video_named or name == point.video
        stranger = point.done.first_unmarked() or (None if video_named else point.video)
        if stranger is not None:
            raise ValueError(f"--resume: {output} holds rows for {stranger}, which these inputs do not name; "
                             "resume only the command that wrote it")
        self.summary.videos += 0 if self.sharded else point.videos_done
        self.done = point.done
        logger.info("resuming %s: %d rows kept", output, point.rows)
        return point

    def is_done(self, source: Source, writer: RowWriter) -> bool:
        return writer.stored_text(escaped_name(source.path)) in self.done


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


def _images(run: PredictRun, pipe, group: list[WorkItem], writer: RowWriter, bar, settings: dict) -> None:
    todo = []
    for item in group:
        source, files = item.source, run.begin(item.source, item.owner)
        if not item.mine:
            continue
        if run.is_done(source, writer):
            bar.update(1)
        else:
            todo.append((source, files))
    if not todo:
        return
    inputs = [FaceInput(str(source.path), FrameKey(source)) for source, _ in todo]
    results = pipe.image_faces(inputs, num_workers=min(run.options.workers, len(inputs)), **settings)
    for (_, files), result in zip(todo, results, strict=False):
        run.take_image(result, files, writer)
        bar.update(1)
        if run.stop.requested:
            return


def _piece_frames(options: PredictOptions, source: Source, piece: Piece, resume_from: int) -> VideoFrames:
    """The frames of a video this process does: its piece, from the frame a resume goes on at."""
    limit = options.max_frames
    if piece.stop is not None:
        limit = piece.stop if limit is None else min(limit, piece.stop)
    return VideoFrames(source.path, options.frame_stride, limit, max(piece.first * options.frame_stride, resume_from))


def _video(run: PredictRun, pipe, item: WorkItem, writer: RowWriter, bar, settings: dict, point: ResumePoint) -> None:
    o, source = run.options, item.source
    files = run.begin(source, item.owner)
    if not item.mine:
        return
    bar.set_postfix_str(escaped_name(source.path.name), refresh=False)
    if run.is_done(source, writer):
        if not run.sharded:
            run.skip_done(source, files)
        bar.update(1)
        return
    going_on = point.video == writer.stored_text(escaped_name(source.path))
    try:
        frames = _piece_frames(o, source, item.piece, point.next_frame if going_on else 0)
    except ValueError as err:
        if item.owner:
            run.unreadable(source, str(err))
    else:
        results = pipe.image_faces(_frames(frames, source), num_workers=min(o.workers, 1), **settings)
        run.take_video(item, frames, files, results, writer, point.video_rows if going_on else [])
    bar.update(1)


def _process(run: PredictRun, pipe, items: Iterable[WorkItem], writer: RowWriter, bar, point: ResumePoint) -> None:
    """Every input in order (this process's pieces), until all are done or a signal asks the run to stop."""
    o = run.options
    settings = {"batch_size": o.batch_size, "keep_image": o.annotate_dir is not None, "skip_unreadable": True,
                "min_score": o.min_score, "min_reliability": o.min_reliability,
                **{name: getattr(o.faces, name) for name in asdict(o.faces)}}
    for kind, group in image_runs(items):
        if run.stop.requested:
            return
        if kind == "images":
            _images(run, pipe, group, writer, bar, settings)
        else:
            _video(run, pipe, group[0], writer, bar, settings, point)


def process_inputs(run: PredictRun, pipe, backend: str, threads: int, items: Callable[[], Iterator[WorkItem]],
                   total: int | None, progress: bool) -> None:
    """The part of a run that does the work: the resume point, then every item of `items()` in order into
    `run.rows_file` (a progress bar of `total` inputs when `progress`), until all are done or a signal stops it;
    records whether it was stopped and the rows file's size."""
    fmt = output_format(run.options.output, run.options.format)
    point = run.resume_point(fmt, items)
    keep = None if point is None else point.keep_bytes
    with RowWriter(run.rows_file, run.labels, fmt, run.options.landmarks, keep) as writer, \
            tqdm(total=total, unit="file", disable=not progress) as bar, classification_threads(threads, backend):
        _process(run, pipe, items(), writer, bar, point or ResumePoint())
    run.summary.interrupted, run.summary.stopped_by = run.stop.requested, run.stop.name
    run.summary.rows_bytes = run.rows_file.stat().st_size


def load_for_predict(options: PredictOptions) -> tuple[LoadedModel, int]:
    """The model of a run and the CPU threads that classify (one per core not given to a worker)."""
    threads = options.threads or max(1, (os.cpu_count() or 1) - options.workers)
    loaded = load_model(resolve_model_path(options.model), options.backend, options.device, onnx_threads=threads)
    return loaded, threads


def note_skipped(run: PredictRun, sources: SourceList) -> None:
    run.summary.unsupported = [escaped_name(p) for p in sources.unsupported]
    run.summary.missing = [escaped_name(text) for text in sources.missing]
    for path in sources.unsupported:
        logger.warning("skipped %s: neither an image nor a video by its extension", escaped_name(path))
    for text in sources.missing:
        logger.warning("skipped %s: no such file, folder or matching file", escaped_name(text))
    for path, reason in sources.skipped:
        run.unreadable(path, reason)


def run_predict(options: PredictOptions) -> PredictReport:
    """Run `grefel-hf predict` (see the module docstring); `report.summary.processed == 0` means nothing could be
    processed, `report.summary.interrupted` that SIGINT or SIGTERM stopped the run (what was done is written):
    called from the main thread, it handles those signals while it runs instead of raising KeyboardInterrupt.

    Raises:
        FileNotFoundError, ValueError, ImportError, OSError: the model, an option, a path or a needed package is
        missing or wrong (all checked before any work).
    """
    from .distributed import launched_state, run_sharded

    state = launched_state(options)
    if state is not None:
        return run_sharded(options, state)
    with StopSignals() as stop:
        targets = RunTargets.of(options.output, options.annotate_dir, options.summary_dir)
        survey = check_targets(targets, options.inputs, options.overwrite, options.resume)
        loaded, threads = load_for_predict(options)
        pipe = face_pipeline(loaded, tta_views=options.tta_views, tta_shift=options.tta_shift)
        labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]
        run = PredictRun(options, labels, targets, stop)
        note_skipped(run, survey.found)
        process_inputs(run, pipe, loaded.backend, threads,
                       lambda: work_items(iter_sources(options.inputs, SourceList())), survey.sources,
                       options.progress)
        run.names.close()
    summary_file = write_run_summary(run, loaded, targets.output)
    return PredictReport(targets.output, summary_file, run.summary, run.videos, run.video_files)


def write_run_summary(run: PredictRun, loaded: LoadedModel, output: Path) -> Path:
    """`<output stem>.summary.json`: the model, where the rows are, the counts and the video summaries (logged in
    one line too)."""
    summary_file = write_json(run.targets.summary_file, {
        "model": str(loaded.path), "backend": loaded.backend, "output": str(output),
        **run.summary.as_dict(), "video_summaries": [asdict(v) for v in run.videos],
    })
    logger.info("%s", run.summary.describe())
    return summary_file


__all__ = ["IMAGES_PER_CALL", "FrameKey", "PredictOptions", "PredictReport", "default_num_workers", "image_runs",
           "PredictRun", "load_for_predict", "note_skipped", "process_inputs", "run_predict", "write_run_summary"]
