"""`grefel-hf predict --resume`: what an interrupted run's rows file already holds, and where to go on.

Rows are written in input order, all the rows of an image (or a video frame) in one piece, flushed as each is
done. So an interrupted file holds complete results for the inputs up to some point, then perhaps a cut last line.
`read_resume_point` reads the file once, as a stream, and says which inputs are done and where a video cut short
goes on. A run stopped cleanly (a signal) recorded the file's size in its summary; a file of that size is kept
whole. Otherwise (the process was killed) the cut last line and the last image or frame written are dropped and
done again. A resumed run appends the rest, so its file ends as an uninterrupted run's would.

The names of the inputs done are kept on disk (`DiskSet`): memory grows with the rows of one video (which its
summary needs), not with the number of inputs or rows in the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..face_detection_grefel import LANDMARK_NAMES, FaceBox
from ..pipeline_grefel import UNCERTAIN, ImageFaces
from .disk_sets import DiskSet
from .writers import NO_FACE


@dataclass
class StoredRow:
    """One complete row of a rows file: its byte offsets and its cells (CSV: text; JSONL: JSON values)."""

    start: int
    end: int
    cells: dict[str, Any]

    @property
    def source(self) -> str:
        return self.cells["source"]

    @property
    def frame(self) -> int | None:
        value = self.cells["frame"]
        return None if value in (None, "") else int(value)


@dataclass
class ResumePoint:
    """Where a resumed run goes on.

    Args:
        keep_bytes: the bytes of the file to keep; the rest is dropped and written again.
        done: the inputs (as their `source` cells read back) whose rows are all kept: skipped.
        video: the `source` cell of a video whose rows the kept part ends with, to go on from `next_frame` (the
            first frame still to do); `video_rows` are its kept rows (its summary, plot and annotated copy are
            made from them and the rest).
        rows: rows kept; videos_done: videos among `done`.
    """

    keep_bytes: int = 0
    done: DiskSet = field(default_factory=DiskSet)
    video: str | None = None
    next_frame: int = 0
    video_rows: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    videos_done: int = 0


class _OffsetLines:
    """The lines of a binary file as text, with the byte offset reached and whether the last line given was
    complete (ended with a newline)."""

    def __init__(self, handle):
        self.handle, self.offset, self.complete, self.number = handle, 0, True, 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            self.offset += len(raw)
            self.complete, self.number = raw.endswith(b"\n"), self.number + 1
            yield raw.decode("utf-8", "surrogateescape")


def _csv_rows(path: Path, columns: list[str]) -> Iterator[StoredRow]:
    with open(path, "rb") as handle:
        lines = _OffsetLines(handle)
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None or not lines.complete:
            return
        if header != columns:
            raise ValueError(f"--resume: {path} has the columns {header}, but this run writes {columns} (another "
                             "model, or --landmarks?); resume only the command that wrote it")
        yield StoredRow(0, lines.offset, {})  # the header, kept as it is
        while True:
            start = lines.offset
            try:
                cells = next(reader, None)
            except csv.Error:
                return  # a cut last row
            if cells is None or not lines.complete:
                return
            if len(cells) != len(columns):
                raise ValueError(f"--resume: line {lines.number} of {path} has {len(cells)} cells, not "
                                 f"{len(columns)}: not a rows file this command wrote")
            yield StoredRow(start, lines.offset, dict(zip(columns, cells, strict=True)))


def _jsonl_rows(path: Path, columns: list[str]) -> Iterator[StoredRow]:
    with open(path, "rb") as handle:
        start = 0
        for number, raw in enumerate(handle, 1):
            end = start + len(raw)
            if not raw.endswith(b"\n"):
                return  # a cut last line
            try:
                cells = json.loads(raw)
            except ValueError as err:
                raise ValueError(f"--resume: line {number} of {path} is not JSON ({err}): not a rows file this "
                                 "command wrote") from err
            if not isinstance(cells, dict) or list(cells) != columns:
                raise ValueError(f"--resume: line {number} of {path} does not have this run's columns {columns} "
                                 "(another model, or --landmarks?); resume only the command that wrote it")
            yield StoredRow(start, end, cells)
            start = end


def stored_rows(path: str | Path, fmt: str, columns: list[str]) -> Iterator[StoredRow]:
    """Every complete row of a rows file written by `RowWriter` with these columns, in order; for CSV the header
    comes first, as a row without cells. A cut last line is left out; anything else that is not such a row is a
    ValueError naming the file and line."""
    path = Path(path)
    yield from (_csv_rows if fmt == "csv" else _jsonl_rows)(path, columns)


def _key_groups(rows: Iterator[StoredRow]) -> Iterator[list[StoredRow]]:
    """The rows of each image or frame, together (the rows of one (source, frame) are consecutive)."""
    group: list[StoredRow] = []
    for row in rows:
        if group and (row.source, row.frame) != (group[0].source, group[0].frame):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def read_resume_point(path: str | Path, fmt: str, columns: list[str],
                      on_kept: Callable[[str, int | None, list[dict[str, Any]]], None] | None = None,
                      whole_at: int | None = None) -> ResumePoint:
    """Where a run resuming the rows file `path` goes on (see the module docstring). `on_kept(source, frame,
    rows)` is called for each image and frame whose rows are kept, in order (to count them). `whole_at`: the
    size at which the file is known to end with complete rows (the `rows_bytes` of a run stopped cleanly). A
    missing or empty file gives a point that keeps nothing."""
    point = ResumePoint()
    if not Path(path).is_file():
        return point
    whole = whole_at is not None and Path(path).stat().st_size == whole_at
    rows = stored_rows(path, fmt, columns)
    if fmt == "csv":
        point.keep_bytes = next(rows, StoredRow(0, 0, {})).end
    last: list[StoredRow] | None = None
    for group in _key_groups(rows):
        if last is not None:
            _keep(point, last, group[0].source != last[0].source, on_kept)
        last = group
    if last is None:
        return point
    source, frame = last[0].source, last[0].frame
    if whole:  # the last image or frame is complete: kept; a video goes on after it
        _keep(point, last, frame is None, on_kept)
        point.keep_bytes = last[-1].end
    else:  # it may not be: done again
        point.keep_bytes = last[0].start
    if frame is not None:
        point.video, point.next_frame = source, frame + 1 if whole else frame
    return point


def _keep(point: ResumePoint, group: list[StoredRow], source_complete: bool, on_kept) -> None:
    source, frame = group[0].source, group[0].frame
    cells = [row.cells for row in group]
    point.rows += len(cells)
    if on_kept is not None:
        on_kept(source, frame, cells)
    if frame is not None:
        point.video_rows.extend(cells)
    if source_complete:
        point.done.add(source)
        point.videos_done += frame is not None
        point.video_rows = []


def _number(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def faces_from_rows(rows: list[dict[str, Any]], labels: list[str]) -> ImageFaces:
    """The `ImageFaces` that the rows of one image or frame were written from (boxes, landmarks, probabilities,
    reliability and abstentions: what summaries and annotated copies are made of); a `no_face` row gives none."""
    rows = [row for row in rows if row["label"] != NO_FACE]
    faces = [FaceBox(int(_number(r["box_x"])), int(_number(r["box_y"])), int(_number(r["box_w"])),
                     int(_number(r["box_h"])), _number(r.get("detection_score")), _landmarks(r)) for r in rows]
    probabilities = np.array([[_number(r[f"prob_{label}"]) for label in labels] for r in rows],
                             dtype=np.float32).reshape(len(rows), len(labels))
    reliability = np.array([_number(r["reliability"]) for r in rows], dtype=np.float32)
    uncertain = np.array([r["label"] == UNCERTAIN for r in rows], dtype=bool)
    return ImageFaces(None, 0, 0, faces, probabilities, reliability, uncertain=uncertain)


def _landmarks(row: dict[str, Any]) -> tuple[tuple[float, float], ...] | None:
    points = [(_number(row.get(f"{name}_x")), _number(row.get(f"{name}_y"))) for name in LANDMARK_NAMES]
    return None if any(x is None or y is None for x, y in points) else tuple(points)


def recorded_rows_bytes(summary_file: str | Path) -> int | None:
    """The rows file size a run summary records (`RunSummary.rows_bytes`); None when there is none to read."""
    try:
        data = json.loads(Path(summary_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("rows_bytes") if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


def frames_of(rows: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    """A video's rows grouped by frame, in order: (frame index, its rows)."""
    grouped: list[tuple[int, list[dict[str, Any]]]] = []
    for row in rows:
        frame = int(row["frame"])
        if not grouped or grouped[-1][0] != frame:
            grouped.append((frame, []))
        grouped[-1][1].append(row)
    return grouped


__all__ = ["ResumePoint", "StoredRow", "faces_from_rows", "frames_of", "read_resume_point", "recorded_rows_bytes",
           "stored_rows"]
