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

import importlib
from typing import Any

# Public name -> "submodule" or "submodule:attribute" that defines it. Imported on first use (PEP 562) so that
# `python -m dataset_scripts.<name>` does not find its own module already imported by the package.
_EXPORTS = {
    "DATASET_LABELS": "registry",
    "DATASET_LOADERS": "registry",
    "load_expression_dataset": "registry",
    "loader_options": "registry",
    "FER2013_LABELS": "common",
    "FERPLUS_LABELS": "common",
    "RAFDB_LABELS": "common",
    "DatasetFormatError": "common",
    "expression_features": "common",
    "FERPLUS_LABEL_MODES": "ferplus_rules:LABEL_MODES",
    "ferplus_target": "ferplus_rules",
    "load_fer2013": "fer2013",
    "load_ferplus": "ferplus",
    "load_rafdb": "rafdb",
    "load_synthetic": "synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attribute or name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    """Public names, for tab completion."""
    return sorted(set(globals()) | set(_EXPORTS))
