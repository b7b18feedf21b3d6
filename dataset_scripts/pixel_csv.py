"""Seed 002's pixel CSVs: 48x48 grayscale faces as rows of pixel values, in FER+'s eight classes.

Layout: `DIR/train.csv` and `DIR/val.csv` (both required) and `DIR/test.csv` (optional). Each starts with a header
row that has the columns `pixels` (2,304 space-separated 0-255 integers, the face row by row) and `emotion` (the
class id 0-7 in FER+ order: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt), in any order;
other columns are not read. Splits: train = train.csv, validation = val.csv, test = test.csv.

Every row becomes an example: a malformed one is an error that names the file and line, as in the FER2013 CSV
builder, and nothing is dropped. The `source` column holds `<file>:<row>`, the 0-based data row.

Usage: `python -m dataset_scripts.pixel_csv --data_dir DIR --output_dir OUT [--format parquet]`
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator, Sequence

import datasets
import numpy as np

from .building import prepare_dataset
from .cli import run_cli
from .common import (
    FERPLUS_LABELS,
    SOURCE_COLUMN,
    DatasetFormatError,
    expression_features,
    require_dir,
    require_file,
)

SPLIT_FILES = {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}
OPTIONAL_SPLITS = ("test",)
PIXELS_COLUMN, LABEL_COLUMN = "pixels", "emotion"
SIDE = 48


def split_files(data_dir: str) -> dict[str, str]:
    """The CSV file of each split present in `data_dir` (train and validation must be there)."""
    require_dir(data_dir, "pixel CSV data_dir")
    files = {}
    for split, name in SPLIT_FILES.items():
        path = os.path.join(data_dir, name)
        if split in OPTIONAL_SPLITS and not os.path.exists(path):
            continue
        files[split] = require_file(path, f"pixel CSV {split} split ({name} with columns pixels,emotion)")
    return files


def header_columns(path: str, header: Sequence[str] | None) -> tuple[int, int, int]:
    """(pixels index, emotion index, number of columns) from a CSV's header row."""
    names = [name.strip() for name in header or []]
    if PIXELS_COLUMN not in names or LABEL_COLUMN not in names:
        raise DatasetFormatError(f"{path} line 1: expected a header with the columns {PIXELS_COLUMN} and "
                                 f"{LABEL_COLUMN}, got {header}")
    return names.index(PIXELS_COLUMN), names.index(LABEL_COLUMN), len(names)


def face_from_row(row: Sequence[str], columns: tuple[int, int, int], where: str) -> tuple[np.ndarray, int]:
    """One row as a 48x48 uint8 face and its FER+ class id (`where`: file and line, for errors)."""
    pixels_at, label_at, width = columns
    if len(row) != width:
        raise DatasetFormatError(f"{where}: expected {width} fields as in the header, got {len(row)}")
    text = row[label_at].strip()
    if not (text.isascii() and text.isdigit()) or int(text) >= len(FERPLUS_LABELS):
        raise DatasetFormatError(f"{where}: emotion must be a class id 0-{len(FERPLUS_LABELS) - 1} in FER+ order "
                                 f"({', '.join(FERPLUS_LABELS)}), got {row[label_at]!r}")
    values = row[pixels_at].split()
    if len(values) != SIDE * SIDE:
        raise DatasetFormatError(f"{where}: pixels must be {SIDE * SIDE} numbers ({SIDE}x{SIDE}), got {len(values)}")
    if not all(value.isascii() and value.isdigit() for value in values):
        raise DatasetFormatError(f"{where}: pixels must be integers 0-255")
    face = np.asarray(values, dtype=np.int64)
    if face.max() > 255:
        raise DatasetFormatError(f"{where}: pixel values must be in 0-255, got up to {face.max()}")
    return face.astype(np.uint8).reshape(SIDE, SIDE), int(text)


def read_faces(path: str) -> Iterator[tuple[int, np.ndarray, int]]:
    """(0-based data row, face, class id) of every row of `path`."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        columns = header_columns(path, next(reader, None))
        for row_index, row in enumerate(reader):
            face, label = face_from_row(row, columns, f"{path} line {row_index + 2}")
            yield row_index, face, label


class PixelCsv(datasets.GeneratorBasedBuilder):
    """Seed 002's `train.csv` / `val.csv` / `test.csv` pixel files."""

    VERSION = datasets.Version("1.0.0")
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description="48x48 grayscale faces from pixel CSVs, FER+'s 8 classes",
                                    features=expression_features(FERPLUS_LABELS))

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        generators = []
        for split, path in split_files(self.config.data_dir).items():
            with open(path, newline="") as handle:
                reader = csv.reader(handle)
                header_columns(path, next(reader, None))
                if next(reader, None) is None:
                    raise DatasetFormatError(f"{path}: the {split} split has no rows after the header")
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"path": path}))
        return generators

    def _generate_examples(self, path: str) -> Iterator[tuple[int, dict]]:
        name = os.path.basename(path)
        for row_index, face, label in read_faces(path):
            yield row_index, {"image": face, "label": label, SOURCE_COLUMN: f"{name}:{row_index}"}


def load_pixel_csv(data_dir: str, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Build (or reuse from cache) the pixel-CSV dataset in `data_dir`; see the module docstring for the layout.

    Returns:
        A `DatasetDict` with `train`, `validation` and, when `test.csv` exists, `test`; columns `image`, `label`
        (ClassLabel, `FERPLUS_LABELS`) and `source`.

    Raises:
        FileNotFoundError: the folder, `train.csv` or `val.csv` is missing (the message names it).
        DatasetFormatError: a header or row is malformed, or a file has no rows (the message names file and line).
    """
    return prepare_dataset(PixelCsv, modules=[sys.modules[__name__]], input_paths=list(split_files(data_dir).values()),
                           data_dir=data_dir, cache_dir=cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return run_cli(argv, "Prepare seed 002's pixel CSVs as a Hugging Face dataset.", load_pixel_csv)


if __name__ == "__main__":
    # Re-import under the package name so the builder's cache folder is "pixel_csv", not "__main__".
    from dataset_scripts.pixel_csv import main as _main

    raise SystemExit(_main())
