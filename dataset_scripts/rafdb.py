"""RAF-DB basic (Li et al., 2017): 7 expression classes, train / test by file-name prefix.

Layout (the official one; `data_dir` may be the folder holding `basic/` or `basic/` itself):
`basic/EmoLabel/list_patition_label.txt` (sic) with lines `train_00001.jpg 5`, and the images in
`basic/Image/aligned/train_00001_aligned.jpg` (100x100 RGB, the default) or
`basic/Image/original/train_00001.jpg`. Labels in the file are 1-based: 1 surprise, 2 fear, 3 disgust,
4 happiness, 5 sadness, 6 anger, 7 neutral; they are stored 0-based (`RAFDB_LABELS`). RAF-DB has no
validation split: one is carved from train, stratified by class, with a fixed seed. The `source` column holds
the name from the label file (e.g. `train_00001.jpg`).

RAF-DB is distributed only by agreement with its authors: it is tested on generated fixtures in this layout.

Usage: `python -m dataset_scripts.rafdb --data_dir DIR --output_dir OUT [--image_variant original]`
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets

from .building import prepare_dataset
from .cli import CliOption, run_cli
from .common import (
    RAFDB_LABELS,
    SOURCE_COLUMN,
    DatasetFormatError,
    DropCountingBuilder,
    expression_features,
    read_image_bytes,
    require_file,
    stratified_holdout,
)

logger = logging.getLogger(__name__)

LABEL_FILE = os.path.join("EmoLabel", "list_patition_label.txt")
IMAGE_VARIANTS = ("aligned", "original")
_NAME_PATTERN = re.compile(r"^(train|test)_\d+\.jpg$")

# One listed image: (name in the label file, path relative to the basic/ folder, 0-based class id).
RafItem = tuple[str, str, int]


@dataclass
class RafDbConfig(datasets.BuilderConfig):
    """Config of the RAF-DB builder.

    Attributes:
        image_variant (`str`, *optional*, defaults to `"aligned"`): "aligned" (100x100 face crops) or
            "original".
        validation_fraction (`float`, *optional*, defaults to 0.1): share of train carved out as validation.
        seed (`int`, *optional*, defaults to 0): seed of that carving.
    """

    image_variant: str = "aligned"
    validation_fraction: float = 0.1
    seed: int = 0


def find_basic_root(data_dir: str) -> str:
    """The `basic/` folder: `data_dir/basic` or `data_dir` itself, whichever holds the label file."""
    for root in (os.path.join(data_dir, "basic"), data_dir):
        if os.path.isfile(os.path.join(root, LABEL_FILE)):
            return root
    return require_file(os.path.join(data_dir, "basic", LABEL_FILE), "RAF-DB label list")


def image_relpath(name: str, variant: str) -> str:
    """Where the image listed as `name` lives, relative to `basic/`."""
    if variant == "aligned":
        return os.path.join("Image", "aligned", name[: -len(".jpg")] + "_aligned.jpg")
    return os.path.join("Image", "original", name)


def read_label_list(root: str, variant: str) -> tuple[dict[str, list[RafItem]], dict[str, int]]:
    """Parse the label list into train / test items, checking every line and that every image exists.

    Returns the items and, per split, the exact duplicate lines left out (a second line for an image with the same
    label would train on it twice, and could put one copy in train and one in the validation carved from it); a
    repeated image with another label is an error naming both lines.
    """
    if variant not in IMAGE_VARIANTS:
        raise ValueError(f"image_variant must be one of {IMAGE_VARIANTS}, got {variant!r}")
    path = os.path.join(root, LABEL_FILE)
    items: dict[str, list[RafItem]] = {"train": [], "test": []}
    first_seen: dict[str, tuple[int, str]] = {}
    duplicates = {"train": 0, "test": 0}
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_no}"
            fields = line.split()
            if len(fields) != 2 or not _NAME_PATTERN.match(fields[0]):
                raise DatasetFormatError(
                    f"{where}: expected '<train|test>_<number>.jpg <label 1-7>', got {line!r}"
                )
            if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(RAFDB_LABELS):
                raise DatasetFormatError(
                    f"{where}: label must be an integer 1-{len(RAFDB_LABELS)}, got {fields[1]!r}"
                )
            relpath = image_relpath(fields[0], variant)
            if not os.path.isfile(os.path.join(root, relpath)):
                raise FileNotFoundError(f"{where}: image {os.path.join(root, relpath)} not found")
            split = fields[0].split("_")[0]
            if fields[0] in first_seen:
                earlier_line, earlier_label = first_seen[fields[0]]
                if earlier_label != fields[1]:
                    raise DatasetFormatError(f"{where}: {fields[0]} is listed again with label {fields[1]}, but "
                                             f"line {earlier_line} gives it label {earlier_label}")
                duplicates[split] += 1
                continue
            first_seen[fields[0]] = (line_no, fields[1])
            items[split].append((fields[0], relpath, int(fields[1]) - 1))
    return items, duplicates


class RafDb(DropCountingBuilder):
    """RAF-DB basic, with a validation split carved from train."""

    BUILDER_CONFIG_CLASS = RafDbConfig
    VERSION = datasets.Version("1.0.0")
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="RAF-DB basic facial expressions (7 classes)",
            features=expression_features(RAFDB_LABELS),
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        root = find_basic_root(self.config.data_dir)
        items, duplicates = read_label_list(root, self.config.image_variant)
        for split, count in duplicates.items():
            self.record_dropped(split, {"duplicate line of the label list (same image, same label)": count})
        if not items["train"]:
            raise DatasetFormatError(f"{os.path.join(root, LABEL_FILE)}: no train_* images listed")
        keep, held = stratified_holdout(
            [label for _, _, label in items["train"]], self.config.validation_fraction, self.config.seed
        )
        logger.info("RAF-DB: validation = %d train images carved with seed %d", len(held), self.config.seed)
        splits = {
            "train": [items["train"][i] for i in keep],
            "validation": [items["train"][i] for i in held],
            "test": items["test"],
        }
        generators = []
        for split, split_items in splits.items():
            if split_items:
                generators.append(
                    datasets.SplitGenerator(name=split, gen_kwargs={"root": root, "items": split_items})
                )
            else:
                logger.warning("RAF-DB (%s): the %s split has no images; it is omitted", root, split)
        return generators

    def _generate_examples(self, root: str, items: Sequence[RafItem]) -> Iterator[tuple[int, dict]]:
        label_file = os.path.join(root, LABEL_FILE)
        for key, (name, relpath, label) in enumerate(items):
            data = read_image_bytes(os.path.join(root, relpath), context=label_file)
            yield (
                key,
                {
                    "image": {"bytes": data, "path": os.path.basename(relpath)},
                    "label": label,
                    SOURCE_COLUMN: name,
                },
            )


def load_rafdb(
    data_dir: str,
    cache_dir: str | None = None,
    image_variant: str = "aligned",
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Build (or reuse from cache) RAF-DB basic from `data_dir`; see the module docstring for the layout.

    Args:
        data_dir: folder holding `basic/` (or the `basic/` folder itself).
        cache_dir: datasets cache root; `None` uses `HF_DATASETS_CACHE`.
        image_variant: "aligned" or "original".
        validation_fraction: share of train carved out as validation (stratified).
        seed: seed of that carving.

    Returns:
        A `DatasetDict` with `train`, `validation` and `test`; columns `image`, `label` (`RAFDB_LABELS`),
        `source`.
    """
    if image_variant not in IMAGE_VARIANTS:
        raise ValueError(f"image_variant must be one of {IMAGE_VARIANTS}, got {image_variant!r}")
    root = find_basic_root(data_dir)
    paths = [os.path.join(root, LABEL_FILE), os.path.join(root, "Image", image_variant)]
    return prepare_dataset(
        RafDb,
        modules=[sys.modules[__name__]],
        input_paths=paths,
        data_dir=data_dir,
        cache_dir=cache_dir,
        image_variant=image_variant,
        validation_fraction=validation_fraction,
        seed=seed,
    )


CLI_OPTIONS = (
    CliOption("image_variant", str, "aligned", "aligned (100x100 crops) or original images", IMAGE_VARIANTS),
    CliOption("validation_fraction", float, 0.1, "validation share carved from train"),
    CliOption("seed", int, 0, "seed of the validation carving"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    return run_cli(argv, "Prepare RAF-DB basic as a Hugging Face dataset.", load_rafdb, CLI_OPTIONS)


if __name__ == "__main__":
    # Re-import under the package name so the builder's cache folder is "rafdb", not "__main__".
    from dataset_scripts.rafdb import main as _main

    raise SystemExit(_main())
