"""Dataset names, their loaders and label sets, and the single entry point `load_expression_dataset`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import datasets

from .common import FER2013_LABELS, FERPLUS_LABELS, RAFDB_LABELS
from .fer2013 import load_fer2013
from .ferplus import load_ferplus
from .local import load_from_path
from .pixel_csv import load_pixel_csv
from .rafdb import load_rafdb
from .synthetic import load_synthetic

DATASET_LOADERS: dict[str, Callable[..., datasets.DatasetDict]] = {
    "synthetic": load_synthetic,
    "fer2013": load_fer2013,
    "ferplus": load_ferplus,
    "rafdb": load_rafdb,
    "pixel_csv": load_pixel_csv,
}
DATASET_LABELS = {
    "synthetic": FER2013_LABELS,
    "fer2013": FER2013_LABELS,
    "ferplus": FERPLUS_LABELS,
    "rafdb": RAFDB_LABELS,
    "pixel_csv": FERPLUS_LABELS,
}


def loader_options(name: str) -> list[str]:
    """The options the loader of the named dataset takes besides `data_dir` and `cache_dir` (e.g. `label_mode` for
    ferplus); [] for a name that is not a loader's (a path)."""
    loader = DATASET_LOADERS.get(name)
    if loader is None:
        return []
    return [p for p in inspect.signature(loader).parameters if p not in ("data_dir", "cache_dir")]


def load_expression_dataset(
    name_or_path: str, data_dir: str | None = None, cache_dir: str | None = None, **builder_kwargs: Any
) -> datasets.DatasetDict:
    """Load an expression dataset by name, or a prepared dataset folder by path.

    Args:
        name_or_path: one of `synthetic`, `fer2013`, `ferplus`, `rafdb`, `pixel_csv`; or a `save_to_disk` folder,
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
        accepted = loader_options(name_or_path)
        unknown = sorted(set(builder_kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"dataset {name_or_path!r} does not take {unknown}; its options are {accepted}")
        if data_dir is not None:
            builder_kwargs["data_dir"] = data_dir
        return DATASET_LOADERS[name_or_path](cache_dir=cache_dir, **builder_kwargs)
    if data_dir is not None:
        raise ValueError(
            f"data_dir is only used with a dataset name {sorted(DATASET_LOADERS)}, not with a path"
        )
    return load_from_path(name_or_path, cache_dir=cache_dir, **builder_kwargs)
