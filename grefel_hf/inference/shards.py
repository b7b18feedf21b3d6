"""Which inputs each process of a run over several processes does (`grefel-hf predict` under `accelerate launch`).

Every input counts for work units: a photo for one, a video for the frames its header says will be processed
(after `--frame_stride` and `--max_frames`; one when it states none). The units of all inputs, in input order, are
split between the processes the way accelerate's `PartialState.split_between_processes` splits a list: contiguous
runs, the first `units % processes` processes taking one more. A photo belongs to the process whose run holds its
unit; a video's frames are cut where the runs are cut, so a long video is shared out by frames (unless it must stay
whole, for an annotated copy: then it goes to the process holding its first frame). So each process's inputs are
one stretch of the input order, and the processes' rows, one after the other, are the rows of a single process.

Every process lists all the inputs (lazily: see `sources`), so that each counts the same units without any list
being sent around; only the total is sent, by the main process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .sources import Source
from .video import VideoFrames


@dataclass(frozen=True)
class Piece:
    """The part of an input one process does: an image whole; of a video, the processed frames (counted after
    `--frame_stride`) from `first` up to `stop` (None: to the video's end, however long it turns out to be)."""

    first: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class WorkItem:
    """One input, in input order, with this process's `piece` of it (None: the input is other processes')."""

    source: Source
    piece: Piece | None = Piece()

    @property
    def mine(self) -> bool:
        return self.piece is not None

    @property
    def owner(self) -> bool:
        """Whether this process speaks for the input as a whole (counts its name, reports it unreadable): the
        process that does its start."""
        return self.piece is not None and self.piece.first == 0


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count`, sharing `units` work units."""

    index: int
    count: int
    units: int

    def bounds(self) -> tuple[int, int]:
        """The units this process does, [start, stop): `split_between_processes`'s split of `range(units)`."""
        per_process, extra = divmod(self.units, self.count)
        start = self.index * per_process + min(self.index, extra)
        return start, start + per_process + (1 if self.index < extra else 0)


def video_units(source: Source, frame_stride: int, max_frames: int | None) -> int:
    """The work units of an input: 1 for an image; for a video, the frames its header says will be processed (1
    when it states none, or OpenCV cannot open it: the process holding that unit reports it)."""
    if source.kind != "video":
        return 1
    try:
        expected = VideoFrames(source.path, frame_stride, max_frames).expected_frames
    except ValueError:
        return 1
    return max(1, expected or 1)


def work_items(sources: Iterable[Source], shard: Shard | None = None,
               units_of: Callable[[Source], int] | None = None, split_videos: bool = True) -> Iterator[WorkItem]:
    """Every input in order, with this process's piece of it (see the module docstring); without a `shard` (one
    process), every input whole. `units_of` must give what it gave for the shard's total."""
    if shard is None or shard.count == 1:
        yield from (WorkItem(source) for source in sources)
        return
    start, stop = shard.bounds()
    offset = 0
    for source in sources:
        first, offset = offset, offset + units_of(source)
        if source.kind == "video" and split_videos:
            low, high = max(first, start), min(offset, stop)
            piece = Piece(low - first, None if high == offset else high - first) if low < high else None
        else:
            piece = Piece() if start <= first < stop else None
        yield WorkItem(source, piece)


__all__ = ["Piece", "Shard", "WorkItem", "video_units", "work_items"]
