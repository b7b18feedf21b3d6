"""Evaluate a saved GReFEL model on a dataset split and write metrics, figures and paper-ready tables.

Used by `grefel-hf evaluate`. When the model folder also holds the other weights of its run (`raw/` or `ema/`,
written by `train_hf.py`), both are evaluated side by side.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..hub import SELECTION_FILE
from ..json_files import read_json_file
from ..metrics.classification import compute_classification_metrics, write_metrics_json
from ..tta_grefel import check_shift, predict_probabilities, resolve_views
from .plots import plot_confusion_matrix, plot_reliability_diagram, plot_risk_coverage, plot_training_curves
from .report import write_latex_report, write_markdown_report

logger = logging.getLogger(__name__)

OTHER_WEIGHTS = ("raw", "ema")


@dataclass
class EvaluationOptions:
    """What to evaluate and how (the `grefel-hf evaluate` arguments)."""

    model_dir: str
    dataset: str
    output_dir: str
    data_dir: str | None = None
    split: str = "test"
    label_mode: str | None = None
    batch_size: int = 64
    tta_views: int = 1
    tta_shift: float = 0.05
    max_samples: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse impossible options before any work starts (the message names the option)."""
        check_loader_numbers(self)
        resolve_views(self.tta_views)
        check_shift(self.tta_shift)
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"--output_dir {self.output_dir} is an existing file; expected a folder (new or "
                             "existing) to write the evaluation into")


def check_loader_numbers(options) -> None:
    """Refuse a `batch_size` or `max_samples` below 1 or a negative `num_workers` (the message names the option)."""
    for name, low in (("batch_size", 1), ("num_workers", 0), ("max_samples", 1)):
        value = getattr(options, name)
        if value is not None and value < low:
            raise ValueError(f"--{name} must be >= {low}, got {value}")


def add_split_arguments(parser, split_default: str, split_help: str, samples_help: str) -> None:
    """The command-line options of the split a command reads and how (`grefel-hf evaluate` and `calibrate`):
    --dataset, --data_dir, --split, --label_mode, --batch_size, --max_samples, --num_workers, --cache_dir and
    --no_progress."""
    parser.add_argument("--dataset", required=True,
                        help="dataset_scripts builder (synthetic, fer2013, ferplus, rafdb), a save_to_disk folder, "
                             "a Parquet folder or an image folder")
    parser.add_argument("--data_dir", default=None, help="raw data folder for the fer2013/ferplus/rafdb builders")
    parser.add_argument("--split", default=split_default, help=f"{split_help} (default: {split_default})")
    parser.add_argument("--label_mode", default=None, help="FER+ label mode (evaluation splits use majority anyway)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_samples", type=int, default=None, help=samples_help)
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--cache_dir", default=None, help="datasets cache folder of the builders")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_variants(model_dir: str) -> dict[str, str]:
    """`{variant name: folder}`: the folder itself (named after `weights_selection.json`) plus `raw/` / `ema/`.

    Raises:
        FileNotFoundError: `model_dir` is a local path that does not exist or holds no `config.json`.
    """
    if not os.path.isdir(model_dir):
        if not _HUB_ID.match(model_dir) or os.path.exists(model_dir):
            raise FileNotFoundError(f"model folder {model_dir!r} does not exist")
        return {"model": model_dir}  # a hub id (namespace/name); loading it says if it is unreachable
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(f"{model_dir!r} holds no config.json: it is not a saved GReFEL model folder")
    selection = Path(model_dir, SELECTION_FILE)
    name = read_json_file(selection)["selected"] if selection.is_file() else "model"
    variants = {name: model_dir}
    for other in OTHER_WEIGHTS:
        folder = os.path.join(model_dir, other)
        if other != name and os.path.isfile(os.path.join(folder, "config.json")):
            variants[other] = folder
    return variants


def load_split(options: EvaluationOptions, label_names: list[str]):
    """The requested split, checked: it exists, is not empty, and has the model's labels in the model's order.

    `options` needs only the data fields of `EvaluationOptions` (`dataset`, `data_dir`, `split`, `label_mode`,
    `max_samples`, `cache_dir`), which `calibration.folder.CalibrationOptions` has too."""
    from dataset_scripts import load_expression_dataset

    from ..data.labels import label_names_of
    from ..data.splits import select_split

    kwargs = {"label_mode": options.label_mode} if options.label_mode else {}
    dataset_dict = load_expression_dataset(options.dataset, data_dir=options.data_dir,
                                           cache_dir=options.cache_dir, **kwargs)
    dataset = select_split(dataset_dict, options.split, "evaluation", options.max_samples, options.dataset)
    names = label_names_of(dataset)
    if names != list(label_names):
        raise ValueError(f"the dataset's labels {names} do not match the model's labels {list(label_names)}; "
                         "evaluate on a dataset with the label set the model was trained on")
    return dataset


@torch.no_grad()
def predict(model, loader: DataLoader, tta_views: int | Sequence[str] = 1, tta_shift: float = 0.05,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (N,), final distributions (N, C) and reliability (N,) of `model` over `loader`.

    With more than one TTA view (see `grefel_hf.tta_grefel`), the final distributions of the views are averaged and the
    reliability is recomputed from the mean.
    """
    device = next(model.parameters()).device
    labels, probs, reliability = [], [], []
    for batch in tqdm(loader, desc="evaluating", disable=not progress):
        mean, rel = predict_probabilities(model, batch["pixel_values"].to(device), tta_views, tta_shift)
        labels.append(batch["labels"].cpu().numpy())
        probs.append(mean.cpu().numpy())
        reliability.append(rel.cpu().numpy())
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(reliability)


def evaluation_loader(dataset, processor, options: EvaluationOptions) -> DataLoader:
    """The split's images as the model's processor makes them (never augmented), in batches of
    `options.batch_size`."""
    from ..data.augmentation import build_eval_transform
    from ..data.collators import GReFELEvalCollator

    return DataLoader(dataset.with_transform(build_eval_transform(processor)), batch_size=options.batch_size,
                      shuffle=False, num_workers=options.num_workers, collate_fn=GReFELEvalCollator())


def load_variant(folder: str):
    """The model (eval mode, on the GPU when there is one) and its image processor from a saved folder.

    Raises:
        FileNotFoundError: neither a local model folder nor a reachable hub model id.
        ValueError: the folder's config, processor config or weights cannot be read (the message names the file).
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from ..factory import build_image_processor

    try:
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
    except OSError as err:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot load a model from {folder!r}: it is neither a local model folder nor a "
                                    f"reachable hub model id ({err})") from err
        raise ValueError(f"cannot load the model in {folder}: {err}") from err
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    try:
        processor = AutoImageProcessor.from_pretrained(folder)
    except OSError as err:
        if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
            raise ValueError(f"cannot read {os.path.join(folder, 'preprocessor_config.json')}: {err}") from err
        processor = build_image_processor(model.config)
    return model, processor


def evaluate_variant(folder: str, options: EvaluationOptions, dataset=None) -> tuple[dict[str, Any], Any]:
    """Metrics of one saved model folder; returns (metrics, the dataset split it used)."""
    model, processor = load_variant(folder)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset = dataset if dataset is not None else load_split(options, label_names)
    labels, probs, reliability = predict(model, evaluation_loader(dataset, processor, options), options.tta_views,
                                         options.tta_shift, options.progress)
    metrics = compute_classification_metrics(labels, probs, reliability=reliability, label_names=label_names)
    metrics.update({"model_dir": folder, "dataset": options.dataset, "split": options.split,
                    "tta_views": list(resolve_views(options.tta_views))})
    return metrics, dataset


class PartialEvaluationError(ValueError):
    """Some weight variants could not be evaluated; the others' results were written (the message says which)."""


def write_outputs(results: dict[str, dict[str, Any]], options: EvaluationOptions) -> dict[str, Path]:
    """metrics.json, report.md/.tex and the figures (of the first variant, the published weights)."""
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = next(iter(results.values())) if len(results) == 1 else results
    primary = next(iter(results.values()))
    files = {
        "metrics": write_metrics_json(metrics, out / "metrics.json"),
        "report_md": write_markdown_report(metrics, out / "report.md",
                                           title=f"GReFEL on {options.dataset} ({options.split})"),
        "report_tex": write_latex_report(metrics, out / "report.tex",
                                         caption=f"GReFEL on {options.dataset} ({options.split} split)"),
        "confusion_matrix": plot_confusion_matrix(primary["confusion_matrix"], primary["labels"],
                                                  out / "confusion_matrix.png"),
        "reliability_diagram": plot_reliability_diagram(primary["calibration"], out / "reliability_diagram.png"),
        "risk_coverage": plot_risk_coverage(primary["selective"], out / "risk_coverage.png"),
    }
    state = Path(options.model_dir, "trainer_state.json")
    if state.is_file():
        files["training_curves"] = plot_training_curves(state, out / "training_curves.png")
    return files


def run_evaluation(options: EvaluationOptions) -> dict[str, dict[str, Any]]:
    """Evaluate every weight variant of `options.model_dir` and write the outputs; returns metrics per variant.

    Raises:
        PartialEvaluationError: a variant other than the first failed to load; the variants that were evaluated
            are written first, so a corrupt `raw/` or `ema/` never discards the finished results.
    """
    if "test" not in options.split:
        logger.info("evaluating on %r: report test-split numbers only for models selected on validation",
                    options.split)
    variants = model_variants(options.model_dir)
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    dataset = None
    for index, (name, folder) in enumerate(variants.items()):
        try:
            results[name], dataset = evaluate_variant(folder, options, dataset)
        except (OSError, ValueError) as err:
            if index == 0:
                raise
            failures[name] = str(err)
            continue
        logger.info("%s: accuracy %.4f, macro-F1 %.4f, ECE %.4f on %d images", name, results[name]["accuracy"],
                    results[name]["macro_f1"], results[name]["ece"], results[name]["num_images"])
    write_outputs(results, options)
    if failures:
        raise PartialEvaluationError(f"wrote the evaluation of {sorted(results)} to {options.output_dir}, but could "
                                     f"not evaluate {failures}")
    return results


__all__ = ["EvaluationOptions", "PartialEvaluationError", "add_split_arguments", "check_loader_numbers",
           "evaluation_loader", "load_split", "load_variant",
           "model_variants", "predict", "run_evaluation"]
