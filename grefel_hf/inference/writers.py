"""The rows `grefel-hf predict` writes, one per face (or one `no_face` row per image or frame), as CSV or JSONL.

Columns: source, frame, box_x, box_y, box_w, box_h, label, score, reliability, then prob_<label> per class; with
`landmarks`, also detection_score and the x and y of the five YuNet landmarks (`LANDMARK_COLUMNS`; empty where the
detector gave none). `frame` is empty for still images; a row without a face has label `no_face` and empty box and
scores. A face the model abstains on (`--min_score`, `--min_reliability`) has label `uncertain`, with its score,
reliability and probabilities written as for any face.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
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
    """The rows of one image or frame: one per face (labelled `uncertain` where the model abstains), or a single
    `no_face` row."""
    if not result.faces:
        row = dict.fromkeys(columns(labels, landmarks))
        row.update(source=source, frame=frame, label=NO_FACE)
        return [row]
    rows = []
    face_labels = result.face_labels(labels)
    for face, probs, reliability, label in zip(result.faces, result.probabilities, result.reliability, face_labels,
                                               strict=True):
        row = {"source": source, "frame": frame, "box_x": face.x, "box_y": face.y, "box_w": face.w,
               "box_h": face.h, "label": label, "score": float(probs.max()), "reliability": float(reliability)}
        row.update({f"prob_{label}": float(p) for label, p in zip(labels, probs, strict=True)})
        if landmarks:
            row.update(_landmark_cells(face))
        rows.append(row)
    return rows


FORMAT_SUFFIXES = {"csv": (".csv",), "jsonl": (".jsonl", ".ndjson")}
"""The extensions of each format's files (an output without an extension takes `--format`)."""


def output_format(path: str | Path, requested: str | None = None) -> str:
    """`requested`, or the format named by the output's extension (.csv, .jsonl/.ndjson). An extension that does
    not match `requested` is refused, and so is `.json`: the rows are JSON Lines (one object per line, written as
    each batch finishes), which a `.json` name would misdescribe."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        raise ValueError(f"--output {path}: the rows are written as JSON Lines (one JSON object per line), not one "
                         f"JSON document; name the file {Path(path).with_suffix('.jsonl').name}")
    if requested is not None:
        if requested not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, got {requested!r}")
        if suffix and suffix not in FORMAT_SUFFIXES[requested]:
            raise ValueError(f"--output {path} has the extension {suffix!r} but --format is {requested}; name it "
                             f"{Path(path).with_suffix(FORMAT_SUFFIXES[requested][0]).name} or give the --format "
                             "its extension names")
        return requested
    for name, suffixes in FORMAT_SUFFIXES.items():
        if suffix in suffixes:
            return name
    raise ValueError(f"--output {path}: cannot tell the format from the extension {suffix!r}; use .csv or .jsonl, "
                     "or give --format")


def escaped_name(path: str | os.PathLike) -> str:
    """The text a file name is written as: the name itself when it is text; a name whose bytes are not valid UTF-8
    (possible on Linux) as those bytes decoded as UTF-8 with each undecodable byte written `\\xNN` and
    each backslash doubled, so nothing is lost (`name_bytes` gives the bytes back)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return text


def name_bytes(escaped: str) -> bytes:
    """The file name bytes that `escaped_name` wrote as `escaped` (for a name it had to escape)."""
    return re.sub(rb"\\(\\|x[0-9a-f]{2})", lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]),
                  escaped.encode("utf-8"))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a text cell that a spreadsheet would run as a formula starts (OWASP's CSV-injection rule)."""


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell as spreadsheets should show it: text starting with = + - @, a tab or a carriage return gets a
    leading `'`, which spreadsheets read as "this is text" (OWASP's CSV-injection rule); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def stored_text(value: str, fmt: str) -> str:
    """How a text cell reads back from a rows file of format `fmt` (CSV cells are `spreadsheet_safe`)."""
    return spreadsheet_safe(value) if fmt == "csv" else value


class RowWriter:
    """Writes prediction rows to a CSV (empty cells for missing values; text cells made `spreadsheet_safe`) or
    JSONL (null) file. `keep_bytes`: continue an existing file after its first `keep_bytes` bytes (what
    `resume.read_resume_point` found complete), dropping the rest; None: a new file. Call `flush` when a batch is
    done, so that its rows survive whatever stops the process next."""

    def __init__(self, path: str | Path, labels: list[str], fmt: str | None = None, landmarks: bool = False,
                 keep_bytes: int | None = None):
        self.path, self.format, self.columns = Path(path), output_format(path, fmt), columns(labels, landmarks)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_bytes is not None:
            os.truncate(self.path, keep_bytes)
        self._file = self.path.open("w" if keep_bytes is None else "a", newline="", encoding="utf-8")
        self._csv = None
        if self.format == "csv":
            self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
            if not keep_bytes:
                self._csv.writeheader()
        self.rows_written = 0

    def stored_text(self, value: str) -> str:
        """How a text cell (a source, a label) reads back from this file."""
        return stored_text(value, self.format)

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Write the rows of one image or frame, in one piece (a process killed while writing leaves at most a cut
        last line, never part of an image's rows that looks complete)."""
        text = io.StringIO(newline="")
        if self._csv is not None:
            writer = csv.DictWriter(text, fieldnames=self.columns)
            writer.writerows({key: "" if value is None else spreadsheet_safe(value) for key, value in row.items()}
                             for row in rows)
        else:
            text.writelines(json.dumps({key: row[key] for key in self.columns}) + "\n" for row in rows)
        self._file.write(text.getvalue())
        self.rows_written += len(rows)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["BASE_COLUMNS", "FORMATS", "FORMAT_SUFFIXES", "FORMULA_STARTS", "LANDMARK_COLUMNS", "NO_FACE",
           "RowWriter", "columns", "escaped_name", "name_bytes", "output_format", "prediction_rows",
           "spreadsheet_safe", "stored_text"]
