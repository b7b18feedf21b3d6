"""What every expression dataset shares: label names, the output schema, the error type and input checks."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Label names, index = class id. FER2013 ids come from the Kaggle challenge CSV.
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER+ ids follow the column order of Microsoft's fer2013new.csv / label.csv.
FERPLUS_LABELS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
# RAF-DB files number these 1..7; we store them 0-based.
RAFDB_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "validation", "test")
SOURCE_COLUMN = "source"


class DatasetFormatError(ValueError):
    """The input files do not follow the expected layout; the message names the file and the row or line."""


def expression_features(
    label_names: Sequence[str], soft_label: bool = False, votes: int | None = None
) -> datasets.Features:
    """The common output schema.

    Args:
        label_names: class names, index = class id.
        soft_label: add a `soft_label` column of `len(label_names)` float32 values.
        votes: when given, add a `votes` column of that many int32 raw annotator counts.

    Returns:
        `Features` with `image` (Image), `label` (ClassLabel), the optional columns, and `source` (string: the
        file name, relative path or CSV row the example came from).
    """
    columns: dict[str, datasets.features.features.FeatureType] = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(label_names)),
    }
    if soft_label:
        columns["soft_label"] = datasets.List(datasets.Value("float32"), length=len(label_names))
    if votes is not None:
        columns["votes"] = datasets.List(datasets.Value("int32"), length=votes)
    columns[SOURCE_COLUMN] = datasets.Value("string")
    return datasets.Features(columns)


def require_dir(path: str, what: str) -> str:
    """Return `path` if it is a folder, else raise a `FileNotFoundError` that says what was expected there."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: folder not found: {path}")
    return path


def require_file(path: str, what: str) -> str:
    """Return `path` if it is a file, else raise a `FileNotFoundError` that says what was expected there."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file not found: {path}")
    return path


def read_image_bytes(path: str, context: str = "") -> bytes:
    """Read an image file and check that it decodes completely.

    Decoding here (about 50 microseconds for a 48x48 JPEG) turns a corrupt or truncated file into an error
    that names it, instead of a failure at training time deep inside a DataLoader worker.

    Args:
        path: the image file.
        context: where the file was referenced from (e.g. "label.csv line 12"), added to the error message.
    """
    where = f" (listed in {context})" if context else ""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}{where}")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"unreadable or truncated image {path}{where}: {err}") from None
    return data


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split example indices into (kept, held out) with about `fraction` of every class held out.

    Used to carve a validation split from train where a dataset has none. Deterministic for a given `seed`;
    every class with at least 2 examples keeps at least one example on each side.

    Returns:
        Two sorted index lists.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    held: list[int] = []
    for cls in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == cls)
        rng.shuffle(members)
        n_held = int(round(fraction * len(members)))
        n_held = min(max(n_held, 1 if len(members) > 1 else 0), len(members) - 1)
        held.extend(members[:n_held].tolist())
    held_set = set(held)
    kept = [i for i in range(len(labels_arr)) if i not in held_set]
    return kept, sorted(held)


DROPPED_ROWS_FILE = "dropped_rows.json"
"""Written into a prepared dataset's cache folder: the rows dropped per split and reason, so a cached load reports
them as the first one did."""


class DropCountingBuilder(datasets.GeneratorBasedBuilder):
    """A builder that records the rows it leaves out, per split and reason (`record_dropped`).

    `dropped_rows` is None until the builder generates its splits; `prepare_dataset` saves it beside the prepared
    data and reports it, from the saved file when the dataset comes from the cache.
    """

    dropped_rows: dict[str, dict[str, int]] | None = None

    def record_dropped(self, split: str, counts: dict[str, int]) -> None:
        """Add `counts` (reason -> rows) to the dropped rows of `split`."""
        if self.dropped_rows is None:
            self.dropped_rows = {}
        split_counts = self.dropped_rows.setdefault(split, {})
        for reason, count in counts.items():
            if count:
                split_counts[reason] = split_counts.get(reason, 0) + int(count)


def log_dropped(dataset: str, split: str, counts: dict[str, int]) -> None:
    """Report the rows dropped from `split`, per reason: a WARNING when any was, so it is always seen."""
    total = sum(counts.values())
    if total:
        reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        logger.warning("%s %s: dropped %d rows: %s", dataset, split, total, reasons)
