"""What `grefel-hf predict` reports: per video, the share of each label and the emotion over time (JSON and PNG);
for the whole run, what was processed and what was skipped, and why."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline_grefel import UNCERTAIN, ImageFaces


def main_face(result: ImageFaces) -> int | None:
    """Index of the largest face of a frame (the one the emotion-over-time plot follows), None without faces."""
    if not result.faces:
        return None
    return int(np.argmax([face.w * face.h for face in result.faces]))


@dataclass
class VideoSummary:
    """One video's expressions.

    Args:
        source: the video file.
        fps: its frame rate; frames_processed: frames classified (after `--frame_stride`/`--max_frames`).
        frames_without_face: processed frames in which no face was found.
        faces: faces classified over all frames.
        label_shares: share of the faces given each label (0 for labels never given); with `uncertain_share`, the
            shares sum to 1.
        dominant_label: the most frequent label (None when no face got one).
        mean_probabilities: mean class probabilities of the main face (largest per frame) over the frames.
        uncertain_faces: faces labelled `uncertain` (the model abstained: `--min_score`, `--min_reliability`);
            uncertain_share: their share of the faces. Their probabilities still count in `mean_probabilities`.
        frames_stated: the frames the video's header states (None when it states none).
        truncated: the video ended before the frames its header states: fewer frames were read than
            `frames_stated` promised (a cut or damaged file).
        complete: False when the run was stopped before the video's end (the summary covers the frames done).
    """

    source: str
    fps: float
    frames_processed: int
    frames_without_face: int
    faces: int
    label_shares: dict[str, float]
    dominant_label: str | None
    mean_probabilities: dict[str, float] | None
    uncertain_faces: int = 0
    uncertain_share: float = 0.0
    frames_stated: int | None = None
    truncated: bool = False
    complete: bool = True


class VideoTimeline:
    """Collects a video's frame results, then gives its `VideoSummary` and emotion-over-time plot."""

    def __init__(self, source: str, fps: float, labels: list[str]):
        self.source, self.fps, self.labels = source, fps, labels
        self.times: list[float] = []
        self.main_probabilities: list[np.ndarray | None] = []
        self.label_counts: Counter = Counter()

    def add(self, frame: int, result: ImageFaces) -> None:
        self.times.append(frame / self.fps)
        main = main_face(result)
        self.main_probabilities.append(None if main is None else result.probabilities[main])
        self.label_counts.update(result.face_labels(self.labels))

    def summary(self) -> VideoSummary:
        faces, uncertain = sum(self.label_counts.values()), self.label_counts[UNCERTAIN]
        shares = {label: (self.label_counts[label] / faces if faces else 0.0) for label in self.labels}
        found = [p for p in self.main_probabilities if p is not None]
        mean = dict(zip(self.labels, np.mean(found, axis=0).tolist(), strict=True)) if found else None
        dominant = max(self.labels, key=lambda label: (self.label_counts[label], -self.labels.index(label)))
        return VideoSummary(self.source, self.fps, len(self.times), len(self.times) - len(found), faces, shares,
                            dominant if faces > uncertain else None, mean, uncertain,
                            uncertain / faces if faces else 0.0)

    def plot(self, path: str | Path) -> Path:
        """The main face's class probabilities over time (gaps where no face was found), as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        rows = [p if p is not None else np.full(len(self.labels), np.nan) for p in self.main_probabilities]
        values = np.array(rows, dtype=float).reshape(len(rows), len(self.labels))
        figure, axis = plt.subplots(figsize=(9, 4))
        for i, label in enumerate(self.labels):
            axis.plot(self.times, values[:, i], marker="." if len(rows) < 50 else None, label=label)
        axis.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1),
                 title=f"Expressions over time: {Path(self.source).name}")
        axis.legend(loc="upper right", fontsize="small", ncol=2)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return Path(path)


@dataclass
class RunSummary:
    """What one `grefel-hf predict` run did.

    Args:
        images: still images processed; videos: videos with at least one frame processed; frames: video frames.
        faces: faces classified; without_face: images and frames in which no face was found.
        uncertain: faces labelled `uncertain` (the model abstained: `--min_score`, `--min_reliability`).
        unreadable: (file, reason) of files that could not be read (corrupt, truncated, not an image or video).
        unsupported: files skipped because they are neither images nor videos by their extension.
        missing: INPUT arguments that named nothing.
        escaped_names: files whose names are not valid UTF-8, written in their escaped form (`escaped_name`).
        truncated_videos: videos that ended before the frames their header states (see `VideoSummary.truncated`).
        interrupted: the run was stopped (by `stopped_by`, "SIGINT" or "SIGTERM") before every input was done;
            what was done is in the rows, and `--resume` finishes it.
        resumed_rows: rows kept from the output a `--resume` run continued.
        rows_bytes: the size of the rows file when this summary was written: a `--resume` run trusts a file of
            that size to hold only complete rows (otherwise it does the last image or frame again).
    """

    images: int = 0
    videos: int = 0
    frames: int = 0
    faces: int = 0
    without_face: int = 0
    uncertain: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    escaped_names: int = 0
    truncated_videos: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str | None = None
    resumed_rows: int = 0
    rows_bytes: int | None = None

    @property
    def processed(self) -> int:
        """Images and frames processed: zero means nothing at all could be processed."""
        return self.images + self.frames

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unreadable"] = [{"file": name, "reason": reason} for name, reason in self.unreadable]
        return data

    def describe(self) -> str:
        """One line for the log."""
        skipped = len(self.unreadable) + len(self.unsupported) + len(self.missing)
        return (f"{self.images} images and {self.frames} frames of {self.videos} videos processed, {self.faces} "
                f"faces ({self.uncertain} uncertain), {self.without_face} without a face; skipped {skipped}: {len(self.unreadable)} unreadable, "
                f"{len(self.unsupported)} unsupported, {len(self.missing)} inputs naming nothing" + self._notes())

    def _notes(self) -> str:
        notes = [f"{self.escaped_names} names not UTF-8 (written escaped)" if self.escaped_names else "",
                 f"{len(self.truncated_videos)} videos shorter than their header states" if self.truncated_videos
                 else "", f"stopped by {self.stopped_by}" if self.interrupted else ""]
        return "".join(f"; {note}" for note in notes if note)


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


__all__ = ["RunSummary", "VideoSummary", "VideoTimeline", "main_face", "write_json"]
