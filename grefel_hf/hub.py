"""Saving GReFEL as a self-contained folder: weights, config with `auto_map`, processor and flat remote code."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .auto_registration import register_auto_classes

logger = logging.getLogger(__name__)

REMOTE_CODE_FILES = ("configuration_grefel.py", "modeling_grefel.py", "losses.py", "image_processing_grefel.py")
"""The flat modeling files a saved folder carries so that it loads with `trust_remote_code=True`."""

REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES)

SELECTION_FILE = "weights_selection.json"
"""Written by train_hf.py next to the final model: whether the raw or the EMA weights were kept, and why."""

RUN_CONFIG_FILE = "training_config.json"
"""Written by train_hf.py next to the final model: the model, data and training arguments of the run."""


def missing_files(folder: str | os.PathLike) -> list[str]:
    """The files of `REQUIRED_FILES` absent from `folder` (sharded weights count as `model.safetensors`)."""
    folder = Path(folder)
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if "model.safetensors.index.json" in present:
        present.add("model.safetensors")
    return [name for name in REQUIRED_FILES if name not in present]


def save_grefel_folder(model, image_processor, folder: str | os.PathLike) -> Path:
    """Save `model` and `image_processor` into `folder` so that it loads anywhere.

    The folder then works with `AutoModel`/`AutoModelForImageClassification`/`AutoImageProcessor`
    `.from_pretrained(folder, trust_remote_code=True)` and `pipeline("image-classification", model=folder,
    trust_remote_code=True)` on machines without `grefel_hf`, and without `trust_remote_code` where it is imported.

    Raises:
        RuntimeError: a required file was not written (the message names it).
    """
    register_auto_classes()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    missing = missing_files(folder)
    if missing:
        raise RuntimeError(f"saving GReFEL to {folder} did not write {missing}")
    logger.info("saved a self-contained GReFEL folder to %s", folder)
    return folder


__all__ = ["REMOTE_CODE_FILES", "REQUIRED_FILES", "RUN_CONFIG_FILE", "SELECTION_FILE", "missing_files", "save_grefel_folder"]
