"""Class names of a prepared dataset."""

from __future__ import annotations

import datasets


def label_names_of(dataset: datasets.Dataset) -> list[str]:
    """The class names of a dataset's `label` ClassLabel column.

    Raises:
        ValueError: the column is missing or is not a ClassLabel with names.
    """
    feature = dataset.features.get("label")
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(f"the dataset's 'label' column must be a ClassLabel with class names, got {feature!r}")
    return list(feature.names)


__all__ = ["label_names_of"]
