"""FER2013 (Goodfellow et al., 2013): 48x48 grayscale faces, 7 classes, from either of its two common layouts.

1. `fer2013.csv`, the Kaggle challenge file: header `emotion,pixels,Usage`, `pixels` = 2304 space-separated
   0-255 integers. Splits: train = Training, validation = PublicTest, test = PrivateTest.
2. The Kaggle image folders: `train/<class>/Training_*.jpg` and `test/<class>/{PublicTest,PrivateTest}_*.jpg`.
   The file-name prefix gives the original split, so validation = PublicTest and test = PrivateTest. Without
   prefixes, test is the whole `test/` folder and validation is carved from train (stratified, fixed seed).

A split without images is omitted with a warning (the widely shared Kaggle copy lacks PrivateTest); an empty
train split is an error. The `source` column holds the relative image path, or `fer2013.csv:<row>` with the
0-based data row (the same index as FER+'s `fer<row>.png` names).

Usage: `python -m dataset_scripts.fer2013 --data_dir DIR --output_dir OUT [--format parquet]`
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import numpy as np

from . import folders
from .building import prepare_dataset
from .cli import CliOption, run_cli
from .common import (
    FER2013_LABELS,
    SOURCE_COLUMN,
    DatasetFormatError,
    DropCountingBuilder,
    expression_features,
    require_dir,
    stratified_holdout,
)
from .folders import ImageItem, image_examples, list_class_folders

logger = logging.getLogger(__name__)

CSV_NAME = "fer2013.csv"
CSV_HEADER = ["emotion", "pixels", "Usage"]
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
PREFIX_TO_SPLIT = {"PublicTest_": "validation", "PrivateTest_": "test"}
NUM_PIXELS = 48 * 48
SOURCES = ("auto", "csv", "folders")


@dataclass
class Fer2013Config(datasets.BuilderConfig):
    """Config of the FER2013 builder.

    Attributes:
        source (`str`, *optional*, defaults to `"auto"`): "csv" reads `fer2013.csv`, "folders" the Kaggle
            image folders, "auto" the CSV when it exists and the folders otherwise.
        validation_fraction (`float`, *optional*, defaults to 0.1): share of train carved out as validation,
            only where the image names carry no PublicTest/PrivateTest prefix.
        seed (`int`, *optional*, defaults to 0): seed of that carving.
    """

    source: str = "auto"
    validation_fraction: float = 0.1
    seed: int = 0


def resolve_source(data_dir: str, source: str) -> str:
    """Decide between the CSV and the folder layout, failing with what was expected when neither is there."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    require_dir(data_dir, "FER2013 data_dir")
    if source == "auto":
        if os.path.isfile(os.path.join(data_dir, CSV_NAME)):
            return "csv"
        if os.path.isdir(os.path.join(data_dir, "train")):
            return "folders"
        raise FileNotFoundError(
            f"FER2013: neither {CSV_NAME} nor a train/ folder found in {data_dir} "
            "(expected the Kaggle CSV or train/<class>/*.jpg and test/<class>/*.jpg)"
        )
    return source


def input_paths(data_dir: str, source: str) -> list[str]:
    """The files and folders the builder reads, for the cache key."""
    if resolve_source(data_dir, source) == "csv":
        return [os.path.join(data_dir, CSV_NAME)]
    return [os.path.join(data_dir, "train"), os.path.join(data_dir, "test")]


def scan_csv(path: str) -> list[str]:
    """Check the header and Usage column of `fer2013.csv`; return the split of every data row, in order."""
    splits: list[str] = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != CSV_HEADER:
            raise DatasetFormatError(
                f"{path} line 1: expected the header {','.join(CSV_HEADER)}, got {header}"
            )
        for line_no, row in enumerate(reader, start=2):
            if len(row) != 3:
                raise DatasetFormatError(
                    f"{path} line {line_no}: expected 3 fields (emotion,pixels,Usage), got {len(row)}"
                )
            if row[2] not in USAGE_TO_SPLIT:
                raise DatasetFormatError(
                    f"{path} line {line_no}: Usage must be one of {list(USAGE_TO_SPLIT)}, got {row[2]!r}"
                )
            splits.append(USAGE_TO_SPLIT[row[2]])
    return splits


def parse_csv_row(row: Sequence[str], where: str) -> tuple[np.ndarray, int]:
    """One `emotion,pixels,Usage` row as a 48x48 uint8 image and a class id (`where`: file and line)."""
    try:
        label = int(row[0])
    except ValueError:
        raise DatasetFormatError(f"{where}: emotion must be an integer 0-6, got {row[0]!r}") from None
    if not 0 <= label < len(FER2013_LABELS):
        raise DatasetFormatError(f"{where}: emotion {label} out of range 0-{len(FER2013_LABELS) - 1}")
    values = row[1].split()
    if len(values) != NUM_PIXELS:
        raise DatasetFormatError(f"{where}: pixels must be {NUM_PIXELS} numbers (48x48), got {len(values)}")
    try:
        pixels = np.array(values, dtype=np.int64)
    except ValueError:
        raise DatasetFormatError(f"{where}: pixels must be integers 0-255") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetFormatError(
            f"{where}: pixel values must be in 0-255, got {pixels.min()}..{pixels.max()}"
        )
    return pixels.astype(np.uint8).reshape(48, 48), label


def split_test_folder(items: Sequence[ImageItem], test_dir: str) -> dict[str, list[ImageItem]] | None:
    """Sort `test/` images into validation / test by their PublicTest_/PrivateTest_ prefix.

    Returns None when no file carries a prefix (then `test/` is the test split as a whole).
    """
    by_split: dict[str, list[ImageItem]] = {"validation": [], "test": []}
    unprefixed = []
    for item in items:
        name = os.path.basename(item[0])
        split = next((s for prefix, s in PREFIX_TO_SPLIT.items() if name.startswith(prefix)), None)
        if split is None:
            unprefixed.append(name)
        else:
            by_split[split].append(item)
    if len(unprefixed) == len(items):
        return None
    if unprefixed:
        raise DatasetFormatError(
            f"{test_dir}: {len(unprefixed)} images (e.g. {unprefixed[0]}) lack the PublicTest_/PrivateTest_ "
            "prefix "
            "that the other images carry; rename them or remove them so the split is unambiguous"
        )
    return by_split


def drop_held_out_names(train: Sequence[ImageItem]) -> tuple[list[ImageItem], dict[str, int]]:
    """Leave out the `PublicTest_*` and `PrivateTest_*` images found inside `train/` (validation and test faces that
    would otherwise be trained on), counted per prefix."""
    kept, dropped = [], Counter()
    for item in train:
        name = os.path.basename(item[0])
        prefix = next((p for p in PREFIX_TO_SPLIT if name.startswith(p)), None)
        if prefix is None:
            kept.append(item)
        else:
            dropped[f"{prefix}* image inside train/ (a {PREFIX_TO_SPLIT[prefix]} face; never trained on)"] += 1
    return kept, dict(dropped)


class Fer2013(DropCountingBuilder):
    """FER2013 from `fer2013.csv` or from the Kaggle image folders."""

    BUILDER_CONFIG_CLASS = Fer2013Config
    VERSION = datasets.Version("1.0.0")
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="FER2013 facial expressions (48x48 grayscale, 7 classes)",
            features=expression_features(FER2013_LABELS),
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        data_dir = self.config.data_dir
        if resolve_source(data_dir, self.config.source) == "csv":
            return self._csv_splits(os.path.join(data_dir, CSV_NAME))
        return self._folder_splits(data_dir)

    def _csv_splits(self, path: str) -> list[datasets.SplitGenerator]:
        counts = Counter(scan_csv(path))
        splits = [s for s in USAGE_TO_SPLIT.values() if counts[s]]
        return _non_empty_generators({s: {"path": path, "usage_split": s} for s in splits}, counts, path)

    def _folder_splits(self, data_dir: str) -> list[datasets.SplitGenerator]:
        train, skipped = list_class_folders(data_dir, "train", FER2013_LABELS)
        train, misplaced = drop_held_out_names(train)
        self.record_dropped("train", {**skipped, **misplaced})
        test: list[ImageItem] = []
        if os.path.isdir(os.path.join(data_dir, "test")):
            test, skipped_test = list_class_folders(data_dir, "test", FER2013_LABELS)
            self.record_dropped("test", dict(skipped_test))
        else:
            logger.warning("FER2013: no test/ folder in %s", data_dir)
        by_split = split_test_folder(test, os.path.join(data_dir, "test"))
        if by_split is None:
            keep, held = stratified_holdout(
                [label for _, label in train], self.config.validation_fraction, self.config.seed
            )
            logger.info(
                "FER2013: image names carry no PublicTest_/PrivateTest_ prefix: test = the whole test/ "
                "folder, validation = %d train images carved with seed %d",
                len(held),
                self.config.seed,
            )
            by_split = {"validation": [train[i] for i in held], "test": test}
            train = [train[i] for i in keep]
        items = {"train": train, **by_split}
        gen_kwargs = {s: {"root": data_dir, "items": v} for s, v in items.items()}
        return _non_empty_generators(gen_kwargs, Counter({s: len(v) for s, v in items.items()}), data_dir)

    def _generate_examples(
        self,
        path: str | None = None,
        usage_split: str | None = None,
        root: str | None = None,
        items: Sequence[ImageItem] = (),
    ) -> Iterator[tuple[int, dict]]:
        if path is None:
            yield from image_examples(root, items)
            return
        name = os.path.basename(path)
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)  # header, checked in scan_csv
            for row_index, row in enumerate(reader):
                if USAGE_TO_SPLIT[row[2]] != usage_split:
                    continue
                image, label = parse_csv_row(row, f"{path} line {row_index + 2}")
                yield row_index, {"image": image, "label": label, SOURCE_COLUMN: f"{name}:{row_index}"}


def _non_empty_generators(
    gen_kwargs: dict[str, dict], counts: Counter[str], where: str
) -> list[datasets.SplitGenerator]:
    """SplitGenerators for the splits that have examples; warn about empty ones, fail on an empty train."""
    if not counts["train"]:
        raise DatasetFormatError(f"FER2013 ({where}): the train split has no images")
    generators = []
    for split in ("train", "validation", "test"):
        if counts[split]:
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs=gen_kwargs[split]))
        else:
            logger.warning("FER2013 (%s): the %s split has no images; it is omitted", where, split)
    return generators


def load_fer2013(
    data_dir: str,
    cache_dir: str | None = None,
    source: str = "auto",
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Build (or reuse from cache) FER2013 from `data_dir`; see the module docstring for the layouts.

    Args:
        data_dir: folder holding `fer2013.csv` or the `train/` and `test/` image folders.
        cache_dir: datasets cache root; `None` uses `HF_DATASETS_CACHE`.
        source: "auto", "csv" or "folders".
        validation_fraction: share of train carved out as validation where names carry no split prefix.
        seed: seed of that carving.

    Returns:
        A `DatasetDict` with `train` and, where they have images, `validation` and `test`; columns `image`,
        `label` (ClassLabel, `FER2013_LABELS`) and `source`.
    """
    return prepare_dataset(
        Fer2013,
        modules=[sys.modules[__name__], folders],
        input_paths=input_paths(data_dir, source),
        data_dir=data_dir,
        cache_dir=cache_dir,
        source=source,
        validation_fraction=validation_fraction,
        seed=seed,
    )


CLI_OPTIONS = (
    CliOption("source", str, "auto", "csv, folders, or auto (the CSV if present)", SOURCES),
    CliOption(
        "validation_fraction", float, 0.1, "validation share carved from train when names have no prefix"
    ),
    CliOption("seed", int, 0, "seed of the validation carving"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return run_cli(argv, "Prepare FER2013 as a Hugging Face dataset.", load_fer2013, CLI_OPTIONS)


if __name__ == "__main__":
    # Re-import under the package name so the builder's cache folder is "fer2013", not "__main__".
    from dataset_scripts.fer2013 import main as _main

    raise SystemExit(_main())
