"""Saving GReFEL as a self-contained folder: weights, config with `auto_map`, processor, flat remote code and the
face detector the pipeline uses."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from transformers.dynamic_module_utils import custom_object_save, get_relative_imports

from .auto_registration import FER_TASK, register_auto_classes
from .face_detection_grefel import YUNET_FILE, yunet_model_path
from .json_files import read_json_file
from .pipeline_grefel import FacialExpressionRecognitionPipeline

logger = logging.getLogger(__name__)

REMOTE_CODE_FILES = ("configuration_grefel.py", "modeling_grefel.py", "layers_grefel.py", "losses.py",
                     "image_processing_grefel.py", "pipeline_grefel.py", "face_detection_grefel.py", "tta_grefel.py")
"""The flat modeling files a saved folder carries so that it loads with `trust_remote_code=True`."""

CUSTOM_PIPELINES = {
    task: {"impl": f"pipeline_grefel.{cls}", "pt": ["AutoModelForImageClassification"], "tf": [], "type": "image"}
    for task, cls in ((FER_TASK, "FacialExpressionRecognitionPipeline"),
                      ("image-classification", "GReFELImageClassificationPipeline"))
}
"""The `custom_pipelines` of a saved GReFEL config: where `grefel_hf` is not installed, `pipeline(task, model=folder,
trust_remote_code=True)` takes these classes from the folder's pipeline_grefel.py."""

FOLDER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
"""The files every saved model folder has, besides the code its configs name."""

REQUIRED_FILES = (*FOLDER_FILES, *REMOTE_CODE_FILES)
"""The files of a saved GReFEL folder."""

SELECTION_FILE = "weights_selection.json"
"""Written by train_hf.py next to the final model: whether the raw or the EMA weights were kept, and why."""

RUN_CONFIG_FILE = "training_config.json"
"""Written by train_hf.py next to the final model: the model, data and training arguments of the run."""


def _class_references(value) -> list[str]:
    """The `module.Class` references of an `auto_map` entry (a string, a list, or a mapping by backend)."""
    if isinstance(value, str):
        return [value]
    values = value.values() if isinstance(value, dict) else value or []
    return [reference for item in values for reference in _class_references(item)]


def named_code_files(folder: str | os.PathLike) -> list[str]:
    """The code files a saved folder needs: the modules its configs name (`auto_map`, `custom_pipelines`) and,
    for those it holds, the siblings they import (as transformers follows them for `trust_remote_code`)."""
    folder = Path(folder)
    references = []
    for name in ("config.json", "preprocessor_config.json"):
        values = read_json_file(folder / name) if (folder / name).is_file() else {}
        references += _class_references(values.get("auto_map") or {})
        references += [task["impl"] for task in (values.get("custom_pipelines") or {}).values()]
    needed = sorted({f"{reference.split('.')[0]}.py" for reference in references})
    for name in needed:  # grows while it is walked: each file's relative imports join the list
        if (folder / name).is_file():
            needed += [f"{module}.py" for module in get_relative_imports(folder / name) if f"{module}.py" not in needed]
    return needed


def missing_files(folder: str | os.PathLike) -> list[str]:
    """The files of `FOLDER_FILES`, and the code files its configs name (`named_code_files`), absent from `folder`
    (sharded weights count as `model.safetensors`)."""
    folder = Path(folder)
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if "model.safetensors.index.json" in present:
        present.add("model.safetensors")
    return [name for name in (*FOLDER_FILES, *named_code_files(folder)) if name not in present]


def _save_with_pipelines(model, folder: Path) -> None:
    """`model.save_pretrained(folder)`; a GReFEL model's config also names the pipeline classes, whose code is
    copied beside it. The in-memory config is left as it was."""
    if model.config.model_type not in ("grefel", "grefel_baseline"):  # the baseline gets the pipelines too
        model.save_pretrained(folder)
        return
    model.config.custom_pipelines = {task: dict(info) for task, info in CUSTOM_PIPELINES.items()}
    try:
        model.save_pretrained(folder)
    finally:
        del model.config.custom_pipelines
    custom_object_save(FacialExpressionRecognitionPipeline, folder)  # pipeline_grefel.py and its relative imports
    copy_face_detector(folder)


def copy_face_detector(folder: Path) -> None:
    """Copy the YuNet face detector (model, licences, provenance) into `folder`, at the path inside the package,
    so that the pipeline's remote code finds it where grefel_hf is not installed."""
    source = yunet_model_path().parent
    target = folder / YUNET_FILE.parent
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copyfile(path, target / path.name)


def save_grefel_folder(model, image_processor, folder: str | os.PathLike) -> Path:
    """Save `model` and `image_processor` into `folder` so that it loads anywhere.

    The folder then works with `AutoModel`/`AutoModelForImageClassification`/`AutoImageProcessor`
    `.from_pretrained(folder, trust_remote_code=True)` and `pipeline("image-classification", model=folder,
    trust_remote_code=True)` (and the same for `"facial-expression-recognition"`) on machines without `grefel_hf`,
    and without `trust_remote_code` where it is imported.

    Raises:
        RuntimeError: a required file was not written (the message names it).
    """
    register_auto_classes()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save_with_pipelines(model, folder)
    image_processor.save_pretrained(folder)
    missing = missing_files(folder)
    if missing:
        raise RuntimeError(f"saving GReFEL to {folder} did not write {missing}")
    logger.info("saved a self-contained GReFEL folder to %s", folder)
    return folder


__all__ = ["CUSTOM_PIPELINES", "FOLDER_FILES", "REMOTE_CODE_FILES", "REQUIRED_FILES", "RUN_CONFIG_FILE", "SELECTION_FILE",
           "missing_files", "named_code_files", "save_grefel_folder"]
