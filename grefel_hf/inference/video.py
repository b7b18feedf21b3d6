"""Reading video frames and writing annotated videos, with OpenCV."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..face_detection_grefel import OPENCV_HINT

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
"""Frame rate assumed for a video that does not state one."""


def require_opencv():
    """The cv2 module, or an ImportError that says what to install."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError(f"reading and writing videos needs OpenCV: {OPENCV_HINT}") from err
    return cv2


@contextmanager
def opencv_path(path: str | Path) -> Iterator[str]:
    """A name OpenCV can take for `path`: the path itself, or, for a name that is not valid UTF-8 (which OpenCV's
    Python binding cannot take: it crashes the process), a symbolic link to it with a plain name in a temporary
    folder, removed afterwards."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with tempfile.TemporaryDirectory(prefix="grefel-video-") as folder:
            alias = os.path.join(folder, "video" + Path(text).suffix.encode("ascii", "replace").decode())
            try:
                os.symlink(os.path.abspath(text), alias)
            except OSError as err:
                raise ValueError(f"{ascii(text)}: OpenCV cannot open a file whose name is not UTF-8, and no "
                                 f"link with a plain name could be made to it ({err.strerror})") from err
            yield alias
        return
    yield text


class VideoFrames:
    """The frames of one video file, every `frame_stride`-th one, at most `max_frames` of them; with
    `first_frame`, those before it are skipped (decoded no further than needed), as a resumed run does.

    The constructor only checks that OpenCV opens the file and reads its frame rate and stated frame count; the
    file is opened again when iterated, so the frames can be read in another process (a video opened before a
    fork cannot be decoded after it).

    Raises:
        ValueError: OpenCV cannot open the file (the message names it).
    """

    def __init__(self, path: str | Path, frame_stride: int = 1, max_frames: int | None = None,
                 first_frame: int = 0):
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.path, self.frame_stride, self.max_frames = Path(path), frame_stride, max_frames
        self.first_frame = first_frame
        capture = self._open()
        fps = float(capture.get(self.cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps > 0 else DEFAULT_FPS
        self.stated_frames = max(0, int(capture.get(self.cv2.CAP_PROP_FRAME_COUNT) or 0))
        capture.release()

    @property
    def cv2(self):
        return require_opencv()

    @property
    def expected_frames(self) -> int | None:
        """The frames iterating gives in all (from frame 0) if the video holds the frames its header states; None
        when the header states none."""
        if self.stated_frames <= 0:
            return None
        count = -(-self.stated_frames // self.frame_stride)
        return count if self.max_frames is None else min(count, self.max_frames)

    def _open(self):
        with opencv_path(self.path) as name:
            capture = self.cv2.VideoCapture(name)  # OpenCV keeps the file open: the alias may go
        if not capture.isOpened():
            capture.release()
            raise ValueError(f"{self.path}: OpenCV cannot open this file as a video")
        return capture

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, RGB uint8 frame) pairs; the file is closed at the end."""
        cv2, capture = self.cv2, self._open()
        taken, index = 0, 0
        try:
            while self.max_frames is None or taken < self.max_frames:
                if index % self.frame_stride or index < self.first_frame:
                    if not capture.grab():
                        break
                    taken += not index % self.frame_stride
                    index += 1
                    continue
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                taken += 1
                index += 1
        finally:
            capture.release()


class Mp4Writer:
    """Writes RGB frames to an mp4 file (codec mp4v), opened with the size of the first frame."""

    def __init__(self, path: str | Path, fps: float):
        self.cv2 = require_opencv()
        self.path, self.fps, self._writer = Path(path), fps, None
        try:
            os.fspath(self.path).encode("utf-8")
        except UnicodeEncodeError as err:  # OpenCV's Python binding would crash the process on it
            raise ValueError(f"{ascii(os.fspath(self.path))}: OpenCV cannot write a file whose name is not "
                             "UTF-8") from err

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            height, width = frame.shape[:2]
            fourcc = self.cv2.VideoWriter_fourcc(*"mp4v")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self.cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write the video {self.path}")
        self._writer.write(self.cv2.cvtColor(np.ascontiguousarray(frame), self.cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


__all__ = ["DEFAULT_FPS", "Mp4Writer", "VideoFrames", "opencv_path", "require_opencv"]
