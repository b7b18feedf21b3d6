"""The training job behind `train_hf.py`, in the fixed phase order of transformers' example scripts:
seed → data (main process first) → labels → config / model / processor → Trainer → train / save / metrics → eval.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModelForImageClassification, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..calibration.fitting import CalibrationRecord
from ..factory import build_image_processor, create_model
from ..hub import RUN_CONFIG_FILE, SELECTION_FILE, save_grefel_folder
from ..pretrained import resolve_model_path
from .arguments import DataArguments, GReFELTrainingArguments
from .calibration import calibrate_on_validation, drop_stale_calibration
from .class_transfer import with_target_classes
from .data import (
    TrainingData,
    attach_transforms,
    inverse_frequency_weights,
    load_dataset_dict,
    prepare_training_data,
)
from .metrics import build_compute_metrics
from .model_arguments import MODEL_CONFIGS
from .trainer import GReFELTrainer

logger = logging.getLogger(__name__)


class TrainingSetupError(ValueError):
    """A user error found while preparing a run (data, model, weights), before any training step."""


@dataclass
class RunSummary:
    """What a finished run produced: where the model went, which weights were kept and how they scored."""

    output_dir: str
    selected_weights: str
    inference_mode: str | None
    validation_accuracy: float | None
    metrics: dict[str, Any]
    is_main_process: bool = True
    calibration: CalibrationRecord | None = None

    def describe(self) -> str:
        """A few lines for the end of a run."""
        mode = f", inference mode {self.inference_mode}" if self.inference_mode else ""
        accuracy = "n/a" if self.validation_accuracy is None else f"{self.validation_accuracy:.2%}"
        calibration = "" if self.calibration is None else f"\n{self.calibration.describe()}"
        return (f"model saved to {self.output_dir}\n"
                f"kept the {self.selected_weights} weights{mode}: validation accuracy {accuracy} "
                f"(see {os.path.join(self.output_dir, SELECTION_FILE)}){calibration}")


def setup_logging(training_args: GReFELTrainingArguments) -> None:
    """Log levels follow Trainer's per-process level (quiet on non-main processes)."""
    level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    for name in ("grefel_hf", "dataset_scripts", __name__):
        logging.getLogger(name).setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def build_model(model_args, label_names: list[str]):
    """A fresh model (optionally from offline backbone weights) or a saved folder, with the dataset's labels.

    Raises:
        TrainingSetupError: an unreachable or invalid `--model_name_or_path`, or impossible architecture arguments.
    """
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    overrides = model_args.config_overrides()
    if model_args.model_name_or_path:
        return load_model_to_fine_tune(model_args, label_names, overrides)
    config = MODEL_CONFIGS[model_args.model_type](id2label=id2label, label2id=label2id, **overrides)
    return create_model(config, backbone_weights=model_args.backbone_weights)


def load_model_to_fine_tune(model_args, label_names: list[str], overrides: dict[str, Any]):
    """`--model_name_or_path` loaded for fine-tuning, with a clear error when it cannot be read. When the dataset's
    classes differ from the saved model's, each class head starts from the saved head of the same emotion
    (`class_transfer.with_target_classes`)."""
    path = str(resolve_model_path(model_args.model_name_or_path))  # a bundled model's name: its folder
    try:
        saved = AutoModelForImageClassification.from_pretrained(
            path, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **overrides)
    except OSError as err:
        where = "no such local folder" if not os.path.isdir(path) else "an unreadable model folder"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainingSetupError(f"--model_name_or_path {path!r}: {where}, and it cannot be loaded as a Hub model "
                                 f"either ({reason})") from err
    try:
        return with_target_classes(saved, list(label_names))
    except ValueError as err:
        raise TrainingSetupError(f"--model_name_or_path {path!r}: {err}") from err


def class_balance_weights(data: TrainingData,
                          training_args: GReFELTrainingArguments) -> tuple[list[float] | None, list[float] | None]:
    """(loss class weights, per-example sampler weights) for `--class_balance`, from the training counts."""
    if training_args.class_balance == "none":
        return None, None
    labels = np.asarray(data.train["label"][:], dtype=np.int64)  # read once: counts and sampler weights
    counts = np.bincount(labels, minlength=len(data.label_names))
    weights = inverse_frequency_weights(counts, power=training_args.class_balance_power)
    logger.info("class counts %s → inverse-frequency weights (power %s) %s", counts.tolist(),
                training_args.class_balance_power, [round(w, 3) for w in weights])
    if training_args.class_balance == "weights":
        return weights, None
    return None, [weights[label] for label in labels]


def build_trainer(model, processor, data: TrainingData, training_args: GReFELTrainingArguments,
                  class_weights: list[float] | None = None, sample_weights: list[float] | None = None,
                  trainer_cls: Callable[..., GReFELTrainer] = GReFELTrainer) -> GReFELTrainer:
    """GReFELTrainer (or `trainer_cls`, a subclass); it builds the collators, EMA and early stopping from the
    arguments. The evaluation gathers the logits and the reliability, by name (`GReFELTrainer.prediction_step`)."""
    return trainer_cls(
        model=model, args=training_args, train_dataset=data.train, eval_dataset=data.eval,
        processing_class=processor, compute_metrics=build_compute_metrics(data.label_names),
        class_weights=class_weights, sample_weights=sample_weights,
    )


def write_run_config(output_dir: str, model_args, data_args: DataArguments,
                     training_args: GReFELTrainingArguments) -> None:
    """Record the run's arguments as JSON (Trainer's own `training_args.bin` is a pickle)."""
    run_config = {"model_args": asdict(model_args), "data_args": asdict(data_args),
                  "training_args": training_args.to_dict()}
    with open(os.path.join(output_dir, RUN_CONFIG_FILE), "w") as f:
        json.dump(run_config, f, indent=2, default=str)


def finish(trainer: GReFELTrainer, processor, train_result, training_args: GReFELTrainingArguments,
           data_args: DataArguments) -> RunSummary:
    """Pick raw vs EMA (and then GReFEL's inference mode) on the validation split, calibrate the final model there
    (`--calibrate`), save the model folder, and write the metrics files.

    The output folder holds the selected weights in the selected inference mode; the other weights go to its `raw/`
    or `ema/` subfolder in the config's own mode, so the evaluation CLI can report both side by side.
    """
    metrics = dict(train_result.metrics)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    eval_metrics = trainer.evaluate()  # raw and EMA weights side by side
    decision = trainer.select_final_weights(eval_metrics, metric="accuracy")
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    output_dir = training_args.output_dir
    ema = trainer.ema_callback.ema if trainer.ema_callback is not None else None
    if ema is not None and trainer.is_world_process_zero():
        if decision["selected"] == "ema":
            save_grefel_folder(trainer.model, processor, os.path.join(output_dir, "raw"))
        else:
            save_grefel_folder(ema.module, processor, os.path.join(output_dir, "ema"))
    if decision["selected"] == "ema":
        trainer.load_ema_weights()
    score_key = "eval_accuracy" if decision["selected"] == "raw" else "eval_ema_accuracy"
    accuracy = eval_metrics.get(score_key)
    if training_args.select_inference_mode:
        decision.update(trainer.select_inference_mode(eval_metrics, decision["selected"], metric="accuracy"))
        accuracy = (decision.get("inference_mode_scores") or {}).get(decision.get("inference_mode"), accuracy)
    calibration = None
    if training_args.calibrate:
        calibration = calibrate_on_validation(trainer, data_args.dataset, data_args.eval_split)
    if trainer.is_world_process_zero():
        save_grefel_folder(trainer.model, processor, output_dir)
        if calibration is not None:
            calibration.write(output_dir)
        with open(os.path.join(output_dir, SELECTION_FILE), "w") as f:
            json.dump(decision, f, indent=2)
    return RunSummary(output_dir=output_dir, selected_weights=decision["selected"],
                      inference_mode=decision.get("inference_mode"), validation_accuracy=accuracy,
                      metrics={**metrics, **eval_metrics}, is_main_process=trainer.is_world_process_zero(),
                      calibration=calibration)


def configure_cpu_threads(training_args: GReFELTrainingArguments) -> None:
    """Give a single-process CPU run every core (or `--cpu_threads`); multi-process and GPU runs are left alone."""
    if torch.cuda.is_available() or training_args.world_size > 1:
        return
    threads = training_args.cpu_threads or os.cpu_count() or 1
    if threads != torch.get_num_threads():
        logger.info("training on %d CPU threads (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)


def teardown_distributed() -> None:
    """Destroy the process group cleanly at exit (without it, gloo runs sometimes abort at exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def prepare_run(model_args, data_args: DataArguments, training_args: GReFELTrainingArguments) -> GReFELTrainer:
    """Everything before the first training step: data, model, processor and trainer.

    Raises:
        TrainingSetupError: bad data, a bad model folder or impossible settings (the message says which).
    """
    training_args.resolve_backbone_lr_multiplier(
        pretrained_backbone=bool(model_args.backbone_weights or model_args.model_name_or_path))
    if training_args.resume_from_checkpoint is True or training_args.resume_from_checkpoint == "last":
        training_args.resume_from_checkpoint = get_last_checkpoint(training_args.output_dir)
    try:
        with training_args.main_process_first(desc="preparing the dataset"):
            data = prepare_training_data(load_dataset_dict(data_args), data_args)
        class_weights, sample_weights = class_balance_weights(data, training_args)
        model = build_model(model_args, data.label_names)
        drop_stale_calibration(model)
        processor = build_image_processor(model.config)
        data = attach_transforms(data, processor, training_args.augmentation_kwargs(), seed=training_args.seed)
        return build_trainer(model, processor, data, training_args, class_weights, sample_weights)
    except TrainingSetupError:
        raise
    except (ValueError, OSError) as err:
        raise TrainingSetupError(str(err)) from err


def run_training(model_args, data_args: DataArguments, training_args: GReFELTrainingArguments) -> RunSummary:
    """Train and save the final model into `training_args.output_dir`; returns what the run produced."""
    set_seed(training_args.seed)
    configure_cpu_threads(training_args)
    trainer = prepare_run(model_args, data_args, training_args)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or None)
    summary = finish(trainer, trainer.processing_class, train_result, training_args, data_args)
    if trainer.is_world_process_zero():
        write_run_config(training_args.output_dir, model_args, data_args, training_args)
    return summary


__all__ = ["RunSummary", "TrainingSetupError", "build_model", "build_trainer", "class_balance_weights",
           "prepare_run", "run_training", "setup_logging", "teardown_distributed"]
