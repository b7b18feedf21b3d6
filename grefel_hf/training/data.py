"""Training data: load the splits, check them, derive label names and class weights, attach the transforms."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from ..data.augmentation import build_eval_transform, build_train_transform, class_apply_probabilities
from ..data.labels import label_names_of
from ..data.splits import select_split
from .arguments import DataArguments
from .seeding import IndexSeededTransform, add_sample_index
from .split_checks import SplitSharpness, check_split_sharpness

logger = logging.getLogger(__name__)

_SOFT_LABEL_MODES = ("crossentropy", "multi_target", "probability")


@dataclass
class TrainingData:
    """The splits a training run uses, and what was derived from them."""

    train: datasets.Dataset
    eval: datasets.Dataset
    label_names: list[str]
    use_soft_labels: bool
    sample_hard_labels: bool
    sharpness: SplitSharpness | None = None


def load_dataset_dict(data_args: DataArguments) -> datasets.DatasetDict:
    """Load the dataset named by `data_args` through `dataset_scripts` (builder name, or a folder).

    `--label_mode` goes to the builders that have label modes (FER+); any other dataset is loaded as it is, with a
    warning, so a FER+ recipe also runs on another dataset (`--dataset synthetic`).
    """
    from dataset_scripts import load_expression_dataset, loader_options

    kwargs: dict[str, Any] = {}
    if data_args.label_mode is not None:
        if "label_mode" in loader_options(data_args.dataset):
            kwargs["label_mode"] = data_args.label_mode
        else:
            logger.warning("--label_mode %s is an option of the FER+ builder; the dataset %r is not built with label "
                           "modes, so its labels are used as they are", data_args.label_mode, data_args.dataset)
    return load_expression_dataset(
        data_args.dataset, data_dir=data_args.data_dir, cache_dir=data_args.dataset_cache_dir, **kwargs
    )


def prepare_training_data(dataset_dict: Mapping[str, datasets.Dataset], data_args: DataArguments) -> TrainingData:
    """Select and check the train / evaluation splits and decide how labels are fed to the loss."""
    train = select_split(dataset_dict, data_args.train_split, "training", data_args.max_train_samples,
                         data_args.dataset)
    evaluation = select_split(dataset_dict, data_args.eval_split,
                              "evaluation (model selection needs a validation split; test splits are never used)",
                              data_args.max_eval_samples, data_args.dataset)
    names = label_names_of(train)
    if label_names_of(evaluation) != names:
        raise ValueError(f"the training labels {names} differ from the evaluation labels "
                         f"{label_names_of(evaluation)}")
    # label modes exist where the data has FER+ vote distributions (load_dataset_dict ignores them elsewhere)
    mode = data_args.label_mode if "soft_label" in train.column_names else None
    use_soft = data_args.use_soft_labels
    if use_soft is None:
        use_soft = mode in ("crossentropy", "multi_target")
    if use_soft and "soft_label" not in train.column_names:
        raise ValueError("--use_soft_labels needs a 'soft_label' column (FER+), but the training split has only "
                         f"{train.column_names}")
    logger.info("training on %d images, evaluating on %d images, %d classes: %s",
                len(train), len(evaluation), len(names), names)
    sharpness = None
    if isinstance(train.features.get("image"), datasets.Image) and isinstance(evaluation.features.get("image"),
                                                                            datasets.Image):
        sharpness = check_split_sharpness(train, evaluation)
    return TrainingData(train=train, eval=evaluation, label_names=names, use_soft_labels=bool(use_soft),
                        sample_hard_labels=mode == "probability", sharpness=sharpness)


def inverse_frequency_weights(counts: Sequence[int], power: float = 1.0) -> list[float]:
    """Class weights ∝ 1 / frequency ** power, normalised to mean 1; classes without images get weight 0. Power 1
    gives every class the same total weight; 0.5 (square-root balancing) only halves the imbalance's log-ratio."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0) ** power, 0.0)
    present = weights > 0
    weights[present] *= present.sum() / weights[present].sum()
    return [float(w) for w in weights]


class SampledHardLabels:
    """FER+ "probability" mode: each time an image is drawn, sample one hard label from its vote distribution."""

    def __init__(self, transform, soft_label_column: str = "soft_label"):
        self.transform = transform
        self.soft_label_column = soft_label_column

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        output = self.transform(batch)
        soft = torch.as_tensor(np.asarray(batch[self.soft_label_column], dtype=np.float32))
        output["labels"] = torch.multinomial(soft, 1).squeeze(1).tolist()
        return output


def attach_transforms(data: TrainingData, image_processor, augmentation_kwargs: Mapping[str, Any],
                      seed: int = 0) -> TrainingData:
    """Decode + augment + process training images on the fly; evaluation images get the processor only.

    Training randomness is keyed on `seed` and the batch's sample indices (see `seeding`), so a resumed run sees
    the same augmented batches as an uninterrupted one. Evaluation always uses hard (majority) labels, so metrics
    are comparable across label modes.
    """
    augmentation_kwargs = dict(augmentation_kwargs)
    class_probs = augmentation_kwargs.pop("class_probs", None)
    if class_probs:
        augmentation_kwargs["class_apply_probs"] = class_apply_probabilities(
            class_probs, data.label_names, augmentation_kwargs.get("apply_prob", 1.0))
    train_transform = build_train_transform(image_processor, use_soft_labels=data.use_soft_labels,
                                            **augmentation_kwargs)
    if data.sample_hard_labels:
        train_transform = SampledHardLabels(train_transform)
    eval_transform = build_eval_transform(image_processor)
    return TrainingData(
        train=add_sample_index(data.train).with_transform(IndexSeededTransform(train_transform, seed)),
        eval=data.eval.with_transform(eval_transform),
        label_names=data.label_names,
        use_soft_labels=data.use_soft_labels,
        sample_hard_labels=data.sample_hard_labels,
        sharpness=data.sharpness,
    )


__all__ = [
    "SampledHardLabels",
    "TrainingData",
    "attach_transforms",
    "inverse_frequency_weights",
    "load_dataset_dict",
    "prepare_training_data",
]
