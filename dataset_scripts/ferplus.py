"""FER+ (FERPlus): the FER2013 faces relabelled by 10 annotators, with Microsoft's label modes.

Two layouts are read:

1. The generated layout that Microsoft's FERPlus generator writes: `FER2013Train/`, `FER2013Valid/` and
   `FER2013Test/` (directly in `data_dir` or in `data_dir/data/`), each with 48x48 PNGs and a headerless
   `label.csv`: `name,"(0, 0, 48, 48)",<10 vote counts>`.
2. `fer2013new.csv` (header `Usage,Image name,<10 vote columns>`) beside `fer2013.csv`: the pixels come from
   the row with the same index. Rows with an empty `Image name` are not faces and are skipped (counted).

Label modes (`dataset_scripts.ferplus_rules`): majority, probability, crossentropy, multi_target; validation
and test always use majority. Images the rules reject are counted per reason and logged. Columns: `image`,
`label` (ClassLabel over `FERPLUS_LABELS`), `soft_label` (8 float32: one-hot for majority, the kept vote
distribution for probability / crossentropy, the normalised multi-hot for multi_target), `votes` (the raw 10
counts: 8 emotions, unknown, NF) and `source` (relative PNG path, or the FER+ image name for the CSV layout).
For "probability" mode `label` is the argmax; sampling one hard label per epoch from `soft_label` is the
trainer's job.

Usage: `python -m dataset_scripts.ferplus --data_dir DIR --output_dir OUT --label_mode crossentropy`
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

from . import ferplus_rules
from .building import prepare_dataset
from .cli import CliOption, run_cli
from .common import (
    FERPLUS_LABELS,
    IMAGE_EXTENSIONS,
    SOURCE_COLUMN,
    DatasetFormatError,
    DropCountingBuilder,
    expression_features,
    read_image_bytes,
    require_dir,
    require_file,
)
from .fer2013 import CSV_NAME as FER2013_CSV_NAME
from .fer2013 import parse_csv_row, scan_csv
from .ferplus_rules import LABEL_MODES, NUM_VOTE_COLUMNS, ferplus_target

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
NEW_CSV_NAME = "fer2013new.csv"
NEW_CSV_HEADER = [
    "Usage",
    "Image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
]
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
MAX_VOTES = 10
SOURCES = ("auto", "folders", "csv")
DROP_EMPTY_NAME = "empty Image name (not a face, per FER+)"
DROP_DUPLICATE = "duplicate label.csv row (an image listed again with the same votes)"

# One labelled row: (image name or relative path, 10 vote counts, row index in fer2013.csv or -1).
VoteRow = tuple[str, list[int], int]


@dataclass
class FerPlusConfig(datasets.BuilderConfig):
    """Config of the FER+ builder.

    Attributes:
        label_mode (`str`, *optional*, defaults to `"majority"`): rule for the train split, one of
            majority, probability, crossentropy, multi_target. Validation and test always use majority.
        source (`str`, *optional*, defaults to `"auto"`): "folders" (generated layout), "csv"
            (fer2013new.csv + fer2013.csv) or "auto" (the folders when present).
    """

    label_mode: str = "majority"
    source: str = "auto"


def find_folder_root(data_dir: str) -> str | None:
    """The folder holding `FER2013Train/`: `data_dir` itself or `data_dir/data` (the FERPlus repo layout)."""
    for root in (data_dir, os.path.join(data_dir, "data")):
        if os.path.isdir(os.path.join(root, SPLIT_FOLDERS["train"])):
            return root
    return None


def resolve_source(data_dir: str, source: str) -> str:
    """Decide between the generated folders and the two CSVs, failing with what was expected."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    require_dir(data_dir, "FER+ data_dir")
    if source != "auto":
        return source
    if find_folder_root(data_dir) is not None:
        return "folders"
    if os.path.isfile(os.path.join(data_dir, NEW_CSV_NAME)):
        return "csv"
    raise FileNotFoundError(
        f"FER+: found neither FER2013Train/ (in {data_dir} or {data_dir}/data) "
        f"nor {NEW_CSV_NAME} in {data_dir}"
    )


def input_paths(data_dir: str, source: str) -> list[str]:
    """The files and folders the builder reads, for the cache key."""
    if resolve_source(data_dir, source) == "csv":
        return [os.path.join(data_dir, NEW_CSV_NAME), os.path.join(data_dir, FER2013_CSV_NAME)]
    root = find_folder_root(data_dir) or data_dir
    return [os.path.join(root, folder) for folder in SPLIT_FOLDERS.values()]


def parse_votes(fields: Sequence[str], where: str) -> list[int]:
    """Parse the 10 vote counts of one row; each must be an integer in 0-10."""
    if len(fields) != NUM_VOTE_COLUMNS:
        raise DatasetFormatError(f"{where}: expected {NUM_VOTE_COLUMNS} vote counts, got {len(fields)}")
    try:
        votes = [int(v) for v in fields]
    except ValueError:
        raise DatasetFormatError(f"{where}: vote counts must be integers, got {list(fields)}") from None
    if any(not 0 <= v <= MAX_VOTES for v in votes):
        raise DatasetFormatError(f"{where}: vote counts must be in 0-{MAX_VOTES}, got {votes}")
    if not sum(votes):
        raise DatasetFormatError(f"{where}: all {NUM_VOTE_COLUMNS} vote counts are 0; a FER+ row has at least one "
                                 "vote (a malformed row, not an image without a majority)")
    return votes


def read_label_csv(folder: str) -> tuple[list[VoteRow], int]:
    """Read a generated split's headerless `label.csv` and check that every listed PNG exists.

    Returns the rows and the number of exact duplicate rows left out (a second row for an image name with the same
    votes would train on that image twice); a repeated name with different votes is an error naming both lines.
    """
    path = require_file(os.path.join(folder, "label.csv"), f"FER+ labels of {os.path.basename(folder)}")
    rows: list[VoteRow] = []
    first_seen: dict[str, tuple[int, list[int]]] = {}
    duplicates = 0
    with open(path, newline="") as handle:
        for line_no, fields in enumerate(csv.reader(handle), start=1):
            where = f"{path} line {line_no}"
            if len(fields) != 2 + NUM_VOTE_COLUMNS:
                raise DatasetFormatError(
                    f"{where}: expected name, face box and {NUM_VOTE_COLUMNS} vote counts "
                    f"({2 + NUM_VOTE_COLUMNS} fields), got {len(fields)}"
                )
            if not os.path.isfile(os.path.join(folder, fields[0])):
                raise FileNotFoundError(f"{where}: image {fields[0]} not found in {folder}")
            votes = parse_votes(fields[2:], where)
            if fields[0] in first_seen:
                earlier_line, earlier_votes = first_seen[fields[0]]
                if earlier_votes != votes:
                    raise DatasetFormatError(f"{where}: {fields[0]} is listed again with other votes ({votes}) "
                                             f"than on line {earlier_line} ({earlier_votes})")
                duplicates += 1
                continue
            first_seen[fields[0]] = (line_no, votes)
            rows.append((fields[0], votes, -1))
    listed = {name for name, _, _ in rows}
    unlisted = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and n not in listed]
    if unlisted:
        logger.warning(
            "FER+ %s: %d images are not in label.csv and are not used (e.g. %s)",
            folder,
            len(unlisted),
            unlisted[0],
        )
    return rows, duplicates


def read_new_csv(path: str, usage: Sequence[str]) -> tuple[dict[str, list[VoteRow]], Counter[str]]:
    """Read `fer2013new.csv`, checking it row by row against the Usage column of `fer2013.csv`.

    Args:
        path: `fer2013new.csv`.
        usage: the split of every `fer2013.csv` row, in order.

    Returns:
        The vote rows per split and the number of skipped empty-name rows per split.
    """
    by_split: dict[str, list[VoteRow]] = {s: [] for s in USAGE_TO_SPLIT.values()}
    empty: Counter[str] = Counter()
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != NEW_CSV_HEADER:
            raise DatasetFormatError(
                f"{path} line 1: expected the header {','.join(NEW_CSV_HEADER)}, got {header}"
            )
        row_index = -1
        for row_index, fields in enumerate(reader):
            where = f"{path} line {row_index + 2}"
            if len(fields) != len(NEW_CSV_HEADER) or fields[0] not in USAGE_TO_SPLIT:
                raise DatasetFormatError(
                    f"{where}: expected {len(NEW_CSV_HEADER)} fields starting with a Usage "
                    f"in {list(USAGE_TO_SPLIT)}, got {fields[:2]}..."
                )
            split = USAGE_TO_SPLIT[fields[0]]
            if row_index >= len(usage) or usage[row_index] != split:
                found = usage[row_index] if row_index < len(usage) else "no row"
                raise DatasetFormatError(
                    f"{where}: Usage {fields[0]} does not match {FER2013_CSV_NAME} data row "
                    f"{row_index} ({found}); the two files must list the same faces in order"
                )
            if not fields[1].strip():
                empty[split] += 1
                continue
            by_split[split].append((fields[1], parse_votes(fields[2:], where), row_index))
    if row_index + 1 != len(usage):
        raise DatasetFormatError(
            f"{path}: {row_index + 1} data rows, but {FER2013_CSV_NAME} has {len(usage)}"
        )
    return by_split, empty


def apply_rules(rows: Sequence[VoteRow], mode: str) -> tuple[list[tuple[VoteRow, tuple]], Counter[str]]:
    """The rows that survive the FER+ rules of `mode`, paired with (label, soft_label), and the drops per reason."""
    kept = []
    dropped: Counter[str] = Counter()
    for row in rows:
        target = ferplus_target(row[1], mode)
        if target.kept:
            kept.append((row, (target.label, list(target.soft_label))))
        else:
            dropped[target.drop_reason] += 1
    return kept, dropped


class FerPlus(DropCountingBuilder):
    """FER+ from Microsoft's generated folders or from fer2013new.csv + fer2013.csv."""

    BUILDER_CONFIG_CLASS = FerPlusConfig
    VERSION = datasets.Version("1.0.0")
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="FER+ facial expressions (48x48 grayscale, 8 classes, 10 annotator votes per face)",
            features=expression_features(FERPLUS_LABELS, soft_label=True, votes=NUM_VOTE_COLUMNS),
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        if self.config.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.config.label_mode!r}")
        data_dir = self.config.data_dir
        if resolve_source(data_dir, self.config.source) == "csv":
            rows, skipped, kwargs = self._csv_rows(data_dir)
        else:
            rows, skipped, kwargs = self._folder_rows(data_dir)
        generators = []
        for split, split_rows in rows.items():
            mode = self.config.label_mode if split == "train" else "majority"
            kept, dropped = apply_rules(split_rows, mode)
            self.record_dropped(split, {**skipped[split], **dropped})
            if kept:
                generators.append(
                    datasets.SplitGenerator(name=split, gen_kwargs={"examples": kept, **kwargs[split]})
                )
            elif split == "train":
                raise DatasetFormatError(f"FER+ ({data_dir}): no train image survives the {mode} rules")
            else:
                logger.warning(
                    "FER+ (%s): no %s image survives the %s rules; split omitted", data_dir, split, mode
                )
        return generators

    def _folder_rows(self, data_dir: str) -> tuple[dict, dict, dict]:
        root = find_folder_root(data_dir)
        if root is None:
            raise FileNotFoundError(
                f"FER+: folder {SPLIT_FOLDERS['train']}/ not found in {data_dir} or {data_dir}/data"
            )
        rows, kwargs, skipped = {}, {}, {}
        for split, name in SPLIT_FOLDERS.items():
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                logger.warning("FER+: no %s/ folder in %s; the %s split is omitted", name, root, split)
                continue
            rows[split], duplicates = read_label_csv(folder)
            skipped[split] = {DROP_DUPLICATE: duplicates}
            kwargs[split] = {"image_root": folder, "pixels_csv": None}
        return rows, skipped, kwargs

    def _csv_rows(self, data_dir: str) -> tuple[dict, dict, dict]:
        pixels_csv = require_file(
            os.path.join(data_dir, FER2013_CSV_NAME), f"FER+ pixels (beside {NEW_CSV_NAME})"
        )
        new_csv = require_file(os.path.join(data_dir, NEW_CSV_NAME), "FER+ votes")
        rows, empty = read_new_csv(new_csv, scan_csv(pixels_csv))
        kwargs = {split: {"image_root": None, "pixels_csv": pixels_csv} for split in rows}
        return rows, {split: {DROP_EMPTY_NAME: empty[split]} for split in rows}, kwargs

    def _generate_examples(
        self, examples: Sequence[tuple[VoteRow, tuple]], image_root: str | None, pixels_csv: str | None
    ) -> Iterator[tuple[int, dict]]:
        if pixels_csv is not None:
            yield from _csv_examples(examples, pixels_csv)
            return
        label_csv = os.path.join(image_root, "label.csv")
        for key, ((name, votes, _), (label, soft)) in enumerate(examples):
            data = read_image_bytes(os.path.join(image_root, name), context=label_csv)
            yield (
                key,
                {
                    "image": {"bytes": data, "path": name},
                    "label": label,
                    "soft_label": soft,
                    "votes": votes,
                    SOURCE_COLUMN: f"{os.path.basename(image_root)}/{name}",
                },
            )


def _csv_examples(examples: Sequence[tuple[VoteRow, tuple]], pixels_csv: str) -> Iterator[tuple[int, dict]]:
    """Yield the kept examples of one split, taking each face's pixels from its `fer2013.csv` row."""
    wanted = {row[2]: (row, target) for row, target in examples}
    with open(pixels_csv, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)  # header, checked by scan_csv
        for row_index, fields in enumerate(reader):
            if row_index not in wanted:
                continue
            (name, votes, _), (label, soft) = wanted[row_index]
            image, _ = parse_csv_row(fields, f"{pixels_csv} line {row_index + 2}")
            yield (
                row_index,
                {"image": image, "label": label, "soft_label": soft, "votes": votes, SOURCE_COLUMN: name},
            )


def load_ferplus(
    data_dir: str, cache_dir: str | None = None, label_mode: str = "majority", source: str = "auto"
) -> datasets.DatasetDict:
    """Build (or reuse from cache) FER+ from `data_dir`; see the module docstring for layouts and modes.

    Args:
        data_dir: folder holding `FER2013Train/` ... (or `data/FER2013Train/` ...), or `fer2013new.csv` and
            `fer2013.csv`.
        cache_dir: datasets cache root; `None` uses `HF_DATASETS_CACHE`.
        label_mode: majority, probability, crossentropy or multi_target (train only; the others use majority).
        source: "auto", "folders" or "csv".

    Returns:
        A `DatasetDict` with the splits that have images; columns `image`, `label`, `soft_label`, `votes`,
        `source`.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    return prepare_dataset(
        FerPlus,
        modules=[sys.modules[__name__], ferplus_rules, sys.modules[parse_csv_row.__module__]],
        input_paths=input_paths(data_dir, source),
        data_dir=data_dir,
        cache_dir=cache_dir,
        dataset_label=f"FER+ ({label_mode} labels for train, majority for validation and test)",
        label_mode=label_mode,
        source=source,
    )


CLI_OPTIONS = (
    CliOption("label_mode", str, "majority", "label rule for the train split", LABEL_MODES),
    CliOption(
        "source",
        str,
        "auto",
        "folders (generated layout), csv (fer2013new.csv + fer2013.csv) or auto",
        SOURCES,
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return run_cli(argv, "Prepare FER+ as a Hugging Face dataset.", load_ferplus, CLI_OPTIONS)


if __name__ == "__main__":
    # Re-import under the package name so the builder's cache folder is "ferplus", not "__main__".
    from dataset_scripts.ferplus import main as _main

    raise SystemExit(_main())
