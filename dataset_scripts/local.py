"""Load an already prepared expression dataset from a local path, and check it has the common schema.

Three kinds of folder are recognised:
- a `DatasetDict.save_to_disk` folder (it holds `dataset_dict.json`);
- a Parquet folder in the Hub layout (`data/{split}-*.parquet`, as `--format parquet` writes);
- an image tree `<split>/<class>/*.{jpg,jpeg,png}` (built with `folders.ExpressionImageFolder`).
"""

from __future__ import annotations

import glob
import logging
import os
from collections import defaultdict
from typing import Any

import datasets

from . import folders
from .building import prepare_dataset
from .common import DatasetFormatError
from .folders import ExpressionImageFolder, find_split_folders

logger = logging.getLogger(__name__)


def check_schema(dataset_dict: datasets.DatasetDict, where: str) -> datasets.DatasetDict:
    """Raise a `DatasetFormatError` unless every split has an `image` (Image) and a `label` (ClassLabel) column."""
    for split, dataset in dataset_dict.items():
        features = dataset.features
        if not isinstance(features.get("image"), datasets.Image):
            raise DatasetFormatError(f"{where} split {split}: expected an 'image' column of type datasets.Image, "
                                     f"got columns {dict(features)}")
        if not isinstance(features.get("label"), datasets.ClassLabel):
            raise DatasetFormatError(f"{where} split {split}: expected a 'label' column of type ClassLabel "
                                     f"(with class names), got {features.get('label')}")
    return dataset_dict


def load_disk_folder(path: str) -> datasets.DatasetDict:
    """Load a `save_to_disk` folder that holds a `DatasetDict`."""
    loaded = datasets.load_from_disk(path)
    if not isinstance(loaded, datasets.DatasetDict):
        raise DatasetFormatError(f"{path} holds a single Dataset; expected a DatasetDict with named splits "
                                 "(save it as DatasetDict({'train': ds, ...}).save_to_disk(path))")
    return loaded


def load_parquet_folder(path: str, cache_dir: str | None = None) -> datasets.DatasetDict:
    """Load `path/data/{split}-NNNNN-of-NNNNN.parquet` files, one split per file-name prefix."""
    files: dict[str, list[str]] = defaultdict(list)
    for file in sorted(glob.glob(os.path.join(path, "data", "*.parquet"))):
        files[os.path.basename(file).split("-")[0]].append(file)
    if not files:
        raise FileNotFoundError(f"no data/*.parquet files in {path}")
    return datasets.load_dataset("parquet", data_files=dict(files), cache_dir=cache_dir)


def load_from_path(path: str, cache_dir: str | None = None, **builder_kwargs: Any) -> datasets.DatasetDict:
    """Load a prepared dataset folder of any of the three kinds and check its schema.

    Args:
        path: the folder.
        cache_dir: datasets cache root (Parquet and image folders are converted into it).
        **builder_kwargs: for an image tree, `label_names` (class names in id order).
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset folder not found: {path} (and it is not a dataset name)")
    is_disk = os.path.isfile(os.path.join(path, "dataset_dict.json"))
    is_parquet = bool(glob.glob(os.path.join(path, "data", "*.parquet")))
    if builder_kwargs and (is_disk or is_parquet):
        raise ValueError(f"options {sorted(builder_kwargs)} only apply to image folders, not to {path}")
    if is_disk:
        return check_schema(load_disk_folder(path), path)
    if is_parquet:
        return check_schema(load_parquet_folder(path, cache_dir), path)
    if find_split_folders(path):
        label_names = tuple(builder_kwargs.pop("label_names", ()))
        if builder_kwargs:
            raise ValueError(f"unknown options for an image folder: {sorted(builder_kwargs)} (only label_names)")
        dataset_dict = prepare_dataset(ExpressionImageFolder, modules=[folders], input_paths=[path],
                                       data_dir=path, cache_dir=cache_dir, label_names=label_names)
        return check_schema(dataset_dict, path)
    raise DatasetFormatError(
        f"{path} is not a dataset folder: expected dataset_dict.json (save_to_disk), data/*.parquet, or split "
        "folders train/ validation/ test/ holding <class>/ image folders"
    )
