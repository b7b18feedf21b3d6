"""Choosing one split of a prepared dataset, the same way for training and for evaluation."""

from __future__ import annotations

from collections.abc import Mapping

import datasets


def select_split(dataset_dict: Mapping[str, datasets.Dataset], split: str, purpose: str, limit: int | None = None,
                 dataset_name: str | None = None) -> datasets.Dataset:
    """`dataset_dict[split]`, cut to its first `limit` examples when `limit` is given.

    Args:
        purpose: what the split is for, in words ("training", "evaluation"), for the error messages.
        dataset_name: the dataset's name, for the error messages.

    Raises:
        ValueError: the dataset has no such split (the message lists those it has), or the split is empty.
    """
    where = "the dataset" if dataset_name is None else f"the dataset {dataset_name!r}"
    if split not in dataset_dict:
        raise ValueError(f"{where} has no {split!r} split for {purpose}; it has {sorted(dataset_dict)}")
    dataset = dataset_dict[split]
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"the {split!r} split of {where} is empty: nothing to use for {purpose}")
    return dataset


__all__ = ["select_split"]
