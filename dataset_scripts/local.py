"""Load an already prepared expression dataset from a local path, and check it has the common schema.

Three kinds of folder are recognised:
- a `DatasetDict.save_to_disk` folder (it holds `dataset_dict.json`);
- a Parquet folder in the Hub layout (`data/{split}-*.parquet`, as `--format parquet` writes);
- an image tree `<split>/<class>/*.{jpg,jpeg,png}` (built with `folders.ExpressionImageFolder`).
"""

from __future__ import annotations

import glob
import json
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
    """Raise `DatasetFormatError` unless every split has `image` (Image) and `label` (ClassLabel) columns."""
    for split, dataset in dataset_dict.items():
        features = dataset.features
        if not isinstance(features.get("image"), datasets.Image):
            raise DatasetFormatError(
                f"{where} split {split}: expected an 'image' column of type datasets.Image, "
                f"got columns {dict(features)}"
            )
        if not isinstance(features.get("label"), datasets.ClassLabel):
            raise DatasetFormatError(
                f"{where} split {split}: expected a 'label' column of type ClassLabel "
                f"(with class names), got {features.get('label')}"
            )
    return dataset_dict


def _load_disk_split(split_dir: str) -> datasets.Dataset:
    """Load one split of a `save_to_disk` folder, including an empty one.

    datasets 5.2 saves a 0-row split without any Arrow file and then fails to load it (`IndexError` in
    `concat_tables`), so an empty split is rebuilt from its saved features instead.
    """
    with open(os.path.join(split_dir, "state.json")) as handle:
        has_data = bool(json.load(handle).get("_data_files"))
    if has_data:
        return datasets.load_from_disk(split_dir)
    features = datasets.DatasetInfo.from_directory(split_dir).features
    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)


def load_disk_folder(path: str) -> datasets.DatasetDict:
    """Load a `save_to_disk` folder that holds a `DatasetDict` (empty splits included)."""
    if not os.path.isfile(os.path.join(path, "dataset_dict.json")):
        raise DatasetFormatError(
            f"{path} holds a single Dataset; expected a DatasetDict with named splits "
            "(save it as DatasetDict({'train': ds, ...}).save_to_disk(path))"
        )
    with open(os.path.join(path, "dataset_dict.json")) as handle:
        splits = json.load(handle).get("splits", [])
    return datasets.DatasetDict({split: _load_disk_split(os.path.join(path, split)) for split in splits})


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
    # save_to_disk writes dataset_dict.json for a DatasetDict and state.json for a single Dataset.
    is_disk = any(os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json"))
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
            raise ValueError(
                f"unknown options for an image folder: {sorted(builder_kwargs)} (only label_names)"
            )
        dataset_dict = prepare_dataset(
            ExpressionImageFolder,
            modules=[folders],
            input_paths=[path],
            data_dir=path,
            cache_dir=cache_dir,
            label_names=label_names,
        )
        return check_schema(dataset_dict, path)
    raise DatasetFormatError(
        f"{path} is not a dataset folder: expected dataset_dict.json (save_to_disk), data/*.parquet, "
        "or split "
        "folders train/ validation/ test/ holding <class>/ image folders"
    )
