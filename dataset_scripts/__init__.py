"""Facial-expression datasets as Hugging Face `DatasetDict`s with one common schema.

Every loader returns splits (`train`, and where available `validation` and `test`) with the columns
`image` (datasets.Image), `label` (ClassLabel with names), `source` (file name, relative path or CSV row),
and for FER+ also `soft_label` (8 float32) and `votes` (10 raw counts).

Example:
    >>> from dataset_scripts import load_expression_dataset
    >>> dsd = load_expression_dataset("synthetic")                       # zero-download default
    >>> dsd = load_expression_dataset("ferplus", data_dir="FERPlus/data", label_mode="crossentropy")
    >>> dsd = load_expression_dataset("out/fer2013")                     # a prepared folder
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets

from .common import FER2013_LABELS, FERPLUS_LABELS, RAFDB_LABELS, DatasetFormatError, expression_features
from .fer2013 import load_fer2013
from .ferplus import load_ferplus
from .ferplus_rules import LABEL_MODES as FERPLUS_LABEL_MODES
from .ferplus_rules import ferplus_target
from .local import load_from_path
from .rafdb import load_rafdb
from .synthetic import load_synthetic

DATASET_LOADERS: dict[str, Callable[..., datasets.DatasetDict]] = {
    "synthetic": load_synthetic,
    "fer2013": load_fer2013,
    "ferplus": load_ferplus,
    "rafdb": load_rafdb,
}
DATASET_LABELS = {"synthetic": FER2013_LABELS, "fer2013": FER2013_LABELS, "ferplus": FERPLUS_LABELS,
                  "rafdb": RAFDB_LABELS}


def load_expression_dataset(
    name_or_path: str, data_dir: str | None = None, cache_dir: str | None = None, **builder_kwargs: Any
) -> datasets.DatasetDict:
    """Load an expression dataset by name, or a prepared dataset folder by path.

    Args:
        name_or_path: one of `synthetic`, `fer2013`, `ferplus`, `rafdb`; or a folder written by `save_to_disk`,
            a Parquet folder (`data/*.parquet`), or an image tree `<split>/<class>/*.{jpg,png}` with split
            folders `train`, `validation` (or `val` / `valid`) and `test`.
        data_dir: the raw files of a named dataset (required for all but `synthetic`).
        cache_dir: datasets cache root; `None` uses `HF_DATASETS_CACHE`.
        **builder_kwargs: options of the named loader (e.g. `label_mode="crossentropy"` for ferplus,
            `train_size=1000` for synthetic) or `label_names` for an image tree.

    Raises:
        DatasetFormatError: the files do not follow the expected layout (the message names file and row).
        FileNotFoundError: a file or folder is missing.
    """
    if name_or_path in DATASET_LOADERS:
        if name_or_path != "synthetic" and data_dir is None:
            raise ValueError(f"dataset {name_or_path!r} needs data_dir= (the folder with its raw files)")
        if data_dir is not None:
            builder_kwargs["data_dir"] = data_dir
        return DATASET_LOADERS[name_or_path](cache_dir=cache_dir, **builder_kwargs)
    if data_dir is not None:
        raise ValueError(f"data_dir is only used with a dataset name {sorted(DATASET_LOADERS)}, not with a path")
    return load_from_path(name_or_path, cache_dir=cache_dir, **builder_kwargs)


__all__ = [
    "DATASET_LABELS",
    "DATASET_LOADERS",
    "FER2013_LABELS",
    "FERPLUS_LABELS",
    "FERPLUS_LABEL_MODES",
    "RAFDB_LABELS",
    "DatasetFormatError",
    "expression_features",
    "ferplus_target",
    "load_expression_dataset",
    "load_fer2013",
    "load_ferplus",
    "load_rafdb",
    "load_synthetic",
]
