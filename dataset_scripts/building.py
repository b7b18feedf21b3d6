"""Run a builder with a cache key that notices edited code and edited input files.

datasets 5 gives a directly instantiated `GeneratorBasedBuilder` no code hash, so an edited builder or an
edited input file silently reuses the stale Arrow cache. `prepare_dataset` therefore passes `hash=` built
from the source of the builder's modules plus the (path, size, mtime) of every input file, and it turns
datasets' `DatasetGenerationError` back into the builder's own clear error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

from .common import DROPPED_ROWS_FILE, DatasetFormatError, log_dropped

logger = logging.getLogger(__name__)

# Modules whose source is part of every builder's cache key (shared schema, rules, this file).
_SHARED_MODULES = ("dataset_scripts.common", "dataset_scripts.building")


def _module_source(module: ModuleType) -> bytes:
    """The bytes of a module's source file."""
    path = getattr(module, "__file__", None)
    if not path or not os.path.isfile(path):
        raise ValueError(f"cannot hash module {module.__name__}: no source file")
    with open(path, "rb") as handle:
        return handle.read()


def _iter_file_stats(path: str) -> Iterable[str]:
    """Yield `relpath|size|mtime_ns` for `path`, or for every file below it when it is a folder."""
    if os.path.isfile(path):
        st = os.stat(path)
        yield f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            st = os.stat(full)
            yield f"{os.path.relpath(full, path)}|{st.st_size}|{st.st_mtime_ns}"


def compute_cache_hash(modules: Sequence[ModuleType], input_paths: Sequence[str]) -> str:
    """A short hex digest of the modules' source code and the inputs' paths, sizes and modification times.

    Args:
        modules: the builder's own modules; the shared modules of this package are always added.
        input_paths: files or folders the builder reads (folders are walked; missing paths count too).
    """
    digest = hashlib.sha256()
    names = sorted({m.__name__ for m in modules} | set(_SHARED_MODULES))
    for name in names:
        digest.update(name.encode())
        digest.update(_module_source(sys.modules[name]))
    for path in sorted(os.path.abspath(p) for p in input_paths):
        digest.update(path.encode())
        if not os.path.exists(path):
            digest.update(b"<missing>")
            continue
        for line in _iter_file_stats(path):
            digest.update(line.encode())
    return digest.hexdigest()[:16]


def prepare_dataset(
    builder_cls: type[datasets.GeneratorBasedBuilder],
    *,
    modules: Sequence[ModuleType],
    input_paths: Sequence[str],
    data_dir: str | None = None,
    cache_dir: str | None = None,
    dataset_label: str | None = None,
    **config_kwargs: Any,
) -> datasets.DatasetDict:
    """Build (or reuse from cache) a dataset and return all its splits; report the rows it dropped.

    Args:
        builder_cls: the `GeneratorBasedBuilder` subclass.
        modules: modules whose source is part of the cache key (the builder's module and its helpers).
        input_paths: the files or folders the builder reads, for the cache key.
        data_dir: passed to the builder (and part of datasets' own config id).
        cache_dir: datasets cache root; `None` uses `HF_DATASETS_CACHE`.
        dataset_label: how the drop report names the dataset (default: the builder's name).
        **config_kwargs: fields of the builder's config (e.g. `label_mode`).

    Raises:
        DatasetFormatError, FileNotFoundError: the builder's own errors, unwrapped from datasets' wrapper.
    """
    cache_hash = compute_cache_hash(modules, input_paths)
    builder = builder_cls(data_dir=data_dir, cache_dir=cache_dir, hash=cache_hash, **config_kwargs)
    builder.dropped_rows = None
    try:
        builder.download_and_prepare()
    except (DatasetFormatError, FileNotFoundError) as err:  # raised up front, in _split_generators
        # A data problem needs the message (file and row), not the frames inside datasets that led to it.
        raise err.with_traceback(None) from None
    except DatasetGenerationError as err:  # datasets wraps whatever _generate_examples raised
        cause = err.__cause__
        if isinstance(cause, DatasetFormatError | FileNotFoundError):
            raise cause.with_traceback(None) from None
        raise
    logger.info("%s ready in %s", builder.name, builder.cache_dir)
    report_dropped_rows(builder, dataset_label or builder.name)
    return builder.as_dataset()


def report_dropped_rows(builder: datasets.GeneratorBasedBuilder, label: str) -> dict[str, dict[str, int]]:
    """Save the rows a fresh build dropped beside the prepared data, or read them back for a cached one, and log
    them (a WARNING per split with drops). Returns them."""
    path = os.path.join(builder.cache_dir, DROPPED_ROWS_FILE)
    dropped = getattr(builder, "dropped_rows", None)
    if dropped is not None:
        with open(path, "w") as handle:
            json.dump(dropped, handle, indent=2, sort_keys=True)
    elif os.path.isfile(path):
        with open(path) as handle:
            dropped = json.load(handle)
    for split, counts in (dropped or {}).items():
        log_dropped(label, split, counts)
    return dropped or {}
