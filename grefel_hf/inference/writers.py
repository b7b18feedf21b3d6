"""The rows `grefel-hf predict` writes, one per face (or one `no_face` row per image or frame), as CSV or JSONL.

Columns: source, frame, box_x, box_y, box_w, box_h, label, score, reliability, then prob_<label> per class; with
`landmarks`, also detection_score and the x and y of the five YuNet landmarks (`LANDMARK_COLUMNS`; empty where the
detector gave none). `frame` is empty for still images; a row without a face has label `no_face` and empty box and
scores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..face_detection_grefel import LANDMARK_NAMES, FaceBox
from ..pipeline_grefel import ImageFaces

BASE_COLUMNS = ("source", "frame", "box_x", "box_y", "box_w", "box_h", "label", "score", "reliability")
NO_FACE = "no_face"
"""The label of the row of an image or frame in which no face was found."""

FORMATS = ("csv", "jsonl")


LANDMARK_COLUMNS = ("detection_score", *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"))
"""The optional columns of `--landmarks`: the detector's face score and each landmark's pixel position."""


def columns(labels: list[str], landmarks: bool = False) -> list[str]:
    """Every column, in order, for a model with these class names."""
    return [*BASE_COLUMNS, *(f"prob_{label}" for label in labels), *(LANDMARK_COLUMNS if landmarks else ())]


def _landmark_cells(face: FaceBox) -> dict[str, Any]:
    cells = dict.fromkeys(LANDMARK_COLUMNS)
    cells["detection_score"] = face.score
    for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks or (), strict=False):
        cells[f"{name}_x"], cells[f"{name}_y"] = round(x, 1), round(y, 1)
    return cells


def prediction_rows(source: str, frame: int | None, result: ImageFaces, labels: list[str],
                    landmarks: bool = False) -> list[dict[str, Any]]:
    """The rows of one image or frame: one per face, or a single `no_face` row."""
    if not result.faces:
        row = dict.fromkeys(columns(labels, landmarks))
        row.update(source=source, frame=frame, label=NO_FACE)
        return [row]
    rows = []
    for face, probs, reliability in zip(result.faces, result.probabilities, result.reliability, strict=True):
        best = int(probs.argmax())
        row = {"source": source, "frame": frame, "box_x": face.x, "box_y": face.y, "box_w": face.w,
               "box_h": face.h, "label": labels[best], "score": float(probs[best]),
               "reliability": float(reliability)}
        row.update({f"prob_{label}": float(p) for label, p in zip(labels, probs, strict=True)})
        if landmarks:
            row.update(_landmark_cells(face))
        rows.append(row)
    return rows


def output_format(path: str | Path, requested: str | None = None) -> str:
    """`requested`, or the format named by the output's extension (.csv, .jsonl/.json)."""
    if requested is not None:
        if requested not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, got {requested!r}")
        return requested
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"--output {path}: cannot tell the format from the extension {suffix!r}; use .csv or .jsonl, "
                     "or give --format")


class RowWriter:
    """Writes prediction rows to a CSV (empty cells for missing values) or JSONL (null) file."""

    def __init__(self, path: str | Path, labels: list[str], fmt: str | None = None, landmarks: bool = False):
        self.path, self.format, self.columns = Path(path), output_format(path, fmt), columns(labels, landmarks)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._csv = None
        if self.format == "csv":
            self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
            self._csv.writeheader()
        self.rows_written = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if self._csv is not None:
                self._csv.writerow({key: "" if value is None else value for key, value in row.items()})
            else:
                self._file.write(json.dumps({key: row[key] for key in self.columns}) + "\n")
            self.rows_written += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["BASE_COLUMNS", "FORMATS", "LANDMARK_COLUMNS", "NO_FACE", "RowWriter", "columns", "output_format", "prediction_rows"]
