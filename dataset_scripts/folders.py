"""Class-per-folder image trees: the listing helpers the builders share, and a generic image-folder builder.

The generic builder reads `<root>/<split>/<class>/*.{jpg,jpeg,png}` with split folders named `train`,
`validation` (or `val` / `valid`) and `test`. Unlike datasets' packaged `imagefolder` (which sorts class names
alphabetically), it keeps the canonical class order when the class folders are exactly one of the known label
sets, so `neutral` stays class 6 for a FER2013 tree.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import datasets

from .common import (
    FER2013_LABELS,
    FERPLUS_LABELS,
    IMAGE_EXTENSIONS,
    RAFDB_LABELS,
    SOURCE_COLUMN,
    DatasetFormatError,
    expression_features,
    read_image_bytes,
    require_dir,
)

logger = logging.getLogger(__name__)

SPLIT_FOLDER_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}
KNOWN_LABEL_SETS = (FER2013_LABELS, FERPLUS_LABELS, RAFDB_LABELS)

# One listed image: its path relative to the data folder, and its class id.
ImageItem = tuple[str, int]


def list_class_folders(
    root: str, split_dir: str, label_names: Sequence[str]
) -> tuple[list[ImageItem], Counter[str]]:
    """List `root/split_dir/<class>/<image>` files, sorted, as (relative path, class id).

    Args:
        root: the data folder; paths are returned relative to it.
        split_dir: the split folder inside `root` (e.g. "train").
        label_names: allowed class folder names; their index is the class id.

    Returns:
        The items and a counter of skipped non-image files per reason (so they are reported, not lost).

    Raises:
        DatasetFormatError: a class folder name that is not in `label_names`.
    """
    split_path = require_dir(os.path.join(root, split_dir), f"split folder '{split_dir}'")
    items: list[ImageItem] = []
    skipped: Counter[str] = Counter()
    for entry in sorted(os.listdir(split_path)):
        class_path = os.path.join(split_path, entry)
        if not os.path.isdir(class_path):
            skipped[f"non-folder entry in {split_dir}/"] += 1
            continue
        if entry not in label_names:
            raise DatasetFormatError(
                f"unknown class folder {class_path}: expected class folders named {list(label_names)}"
            )
        for name in sorted(os.listdir(class_path)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                items.append((os.path.join(split_dir, entry, name), label_names.index(entry)))
            else:
                skipped[f"file without an image extension {IMAGE_EXTENSIONS}"] += 1
    missing = [name for name in label_names if not os.path.isdir(os.path.join(split_path, name))]
    if missing:
        logger.warning("%s has no class folder for %s", split_path, missing)
    return items, skipped


def image_examples(root: str, items: Sequence[ImageItem]) -> Iterator[tuple[int, dict]]:
    """Yield `(key, example)` for listed image files, reading and verifying each one."""
    for key, (relpath, label) in enumerate(items):
        data = read_image_bytes(os.path.join(root, relpath))
        yield (
            key,
            {
                "image": {"bytes": data, "path": os.path.basename(relpath)},
                "label": label,
                SOURCE_COLUMN: relpath,
            },
        )


def find_split_folders(root: str) -> dict[str, str]:
    """Map each split under `root` to its folder name (e.g. {"train": "train", "validation": "val"})."""
    found: dict[str, str] = {}
    for split, candidates in SPLIT_FOLDER_NAMES.items():
        present = [name for name in candidates if os.path.isdir(os.path.join(root, name))]
        if len(present) > 1:
            raise DatasetFormatError(f"{root}: more than one folder for the {split} split: {present}")
        if present:
            found[split] = present[0]
    return found


def infer_label_names(root: str, split_folders: Sequence[str]) -> tuple[str, ...]:
    """Class names of an image tree: a known label set (in its canonical order) or the sorted folder names."""
    names = set()
    for split_dir in split_folders:
        split_path = os.path.join(root, split_dir)
        names.update(e for e in os.listdir(split_path) if os.path.isdir(os.path.join(split_path, e)))
    for known in KNOWN_LABEL_SETS:
        if names == set(known):
            return known
    logger.info("class folders %s match no known label set: using them in sorted order", sorted(names))
    return tuple(sorted(names))


@dataclass
class ImageFolderConfig(datasets.BuilderConfig):
    """Config of `ExpressionImageFolder`.

    Attributes:
        label_names (`tuple[str, ...]`, *optional*): class names in id order; inferred from the folders
            if empty.
    """

    label_names: tuple[str, ...] = field(default_factory=tuple)


class ExpressionImageFolder(datasets.GeneratorBasedBuilder):
    """Builder for a `<split>/<class>/<image>` tree with the common expression schema."""

    BUILDER_CONFIG_CLASS = ImageFolderConfig
    VERSION = datasets.Version("1.0.0")
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def _label_names(self) -> tuple[str, ...]:
        if self.config.label_names:
            return tuple(self.config.label_names)
        root = require_dir(self.config.data_dir, "image folder dataset")
        return infer_label_names(root, list(find_split_folders(root).values()))

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Expression images in <split>/<class>/ folders",
            features=expression_features(self._label_names()),
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        root = require_dir(self.config.data_dir, "image folder dataset")
        folders = find_split_folders(root)
        if "train" not in folders:
            raise FileNotFoundError(f"image folder dataset: no 'train' split folder in {root}")
        label_names = self._label_names()
        generators = []
        for split, folder in folders.items():
            items, skipped = list_class_folders(root, folder, label_names)
            for reason, count in skipped.items():
                logger.warning("%s/%s: skipped %d entries: %s", root, folder, count, reason)
            if not items:
                if split == "train":
                    raise DatasetFormatError(
                        f"image folder dataset: the train folder {root}/{folder} has no images"
                    )
                logger.warning("image folder dataset: %s/%s has no images; split omitted", root, folder)
                continue
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"root": root, "items": items}))
        return generators

    def _generate_examples(self, root: str, items: Sequence[ImageItem]) -> Iterator[tuple[int, dict]]:
        yield from image_examples(root, items)
