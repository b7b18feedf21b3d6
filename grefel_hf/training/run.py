"""The training job behind `train_hf.py`, in the fixed phase order of transformers' example scripts:
seed → data (main process first) → labels → config / model / processor → Trainer → train / save / metrics → eval.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..configuration_grefel import GReFELConfig
from ..factory import build_image_processor, create_model
from ..hub import RUN_CONFIG_FILE, SELECTION_FILE, save_grefel_folder
from ..modeling_grefel import GReFELForImageClassification
from .arguments import DataArguments, GReFELTrainingArguments, ModelArguments
from .collators import GReFELEvalCollator, GReFELMixCollator
from .data import (
    TrainingData,
    attach_transforms,
    inverse_frequency_weights,
    load_dataset_dict,
    prepare_training_data,
)
from .ema import GReFELEMACallback
from .metrics import build_compute_metrics
from .seeding import IndexSeededCollator
from .trainer import GReFELTrainer

logger = logging.getLogger(__name__)


def setup_logging(training_args: GReFELTrainingArguments) -> None:
    """Log levels follow Trainer's per-process level (quiet on non-main processes)."""
    level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    for name in ("grefel_hf", "dataset_scripts", __name__):
        logging.getLogger(name).setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def parse_overrides(text: str | None) -> dict[str, Any]:
    """Parse 'name=value,name=value' config overrides; values are JSON where possible, else strings."""
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"--config_overrides entries must look like name=value, got {item!r}")
        name, value = (s.strip() for s in item.split("=", 1))
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    unknown = [name for name in overrides if name not in GReFELConfig.__annotations__]
    if unknown:
        raise ValueError(f"--config_overrides names unknown GReFELConfig fields {unknown}")
    return overrides


def build_model(model_args: ModelArguments, label_names: list[str], class_weights: list[float] | None):
    """A fresh GReFEL (optionally from offline backbone weights) or a saved folder, with the dataset's labels."""
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    overrides = parse_overrides(model_args.config_overrides)
    if class_weights is not None:
        overrides["class_weights"] = class_weights
    if model_args.model_name_or_path:
        model = GReFELForImageClassification.from_pretrained(
            model_args.model_name_or_path, id2label=id2label, label2id=label2id,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **overrides,
        )
        return model
    config = GReFELConfig(
        backbone=model_args.backbone, image_size=model_args.image_size, embed_dim=model_args.embed_dim,
        anchors_per_class=model_args.anchors_per_class, geometry_variant=model_args.geometry_variant,
        reliability_variant=model_args.reliability_variant, id2label=id2label, label2id=label2id, **overrides,
    )
    return create_model(config, backbone_weights=model_args.backbone_weights)


def class_balance_weights(data: TrainingData, data_args: DataArguments) -> tuple[list[float] | None, list[float] | None]:
    """(loss class weights, per-example sampler weights) for the chosen balancing, from training counts."""
    if data_args.class_balance == "none":
        return None, None
    labels = np.asarray(data.train["label"][:], dtype=np.int64)  # read once: counts and sampler weights
    counts = np.bincount(labels, minlength=len(data.label_names))
    weights = inverse_frequency_weights(counts)
    logger.info("class counts %s → inverse-frequency weights %s", counts.tolist(), [round(w, 3) for w in weights])
    if data_args.class_balance == "weights":
        return weights, None
    return None, [weights[label] for label in labels]


def build_trainer(model, processor, data: TrainingData, training_args: GReFELTrainingArguments,
                  sample_weights: list[float] | None, trainer_cls: Callable[..., GReFELTrainer] = GReFELTrainer,
                  ) -> GReFELTrainer:
    """GReFELTrainer (or `trainer_cls`, a subclass) with the mixing collator on training only, EMA and early
    stopping as asked."""
    num_labels = model.config.num_labels
    mixing = training_args.mix_prob > 0 and (training_args.mixup_alpha > 0 or training_args.cutmix_alpha > 0)
    train_collator = GReFELMixCollator(
        num_labels, mixup_alpha=training_args.mixup_alpha, cutmix_alpha=training_args.cutmix_alpha,
        prob=training_args.mix_prob if mixing else 0.0, switch_prob=training_args.mix_switch_prob,
        label_smoothing=model.config.label_smoothing,
    )
    callbacks = []
    if training_args.use_ema:
        callbacks.append(GReFELEMACallback(decay=training_args.ema_decay, use_warmup=training_args.ema_warmup))
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    # logits and reliability are the two outputs gathered at evaluation (see keys_to_ignore_at_inference)
    return trainer_cls(
        model=model, args=training_args, train_dataset=data.train, eval_dataset=data.eval,
        data_collator=GReFELEvalCollator(num_labels),
        train_collator=IndexSeededCollator(train_collator, training_args.seed),
        processing_class=processor, compute_metrics=build_compute_metrics(data.label_names, reliability_index=1),
        callbacks=callbacks, sample_weights=sample_weights,
        backbone_lr_multiplier=training_args.backbone_lr_multiplier,
        anchor_lr_multiplier=training_args.anchor_lr_multiplier,
        anchor_weight_decay=training_args.anchor_weight_decay,
        backbone_frozen_groups=training_args.backbone_frozen_groups,
        channels_last=training_args.channels_last,
        fast_depthwise_grad=training_args.fast_depthwise_grad,
        cpu_reuse_memory=training_args.cpu_reuse_memory,
        clip_branch_separately=training_args.clip_branch_separately,
    )


def write_run_config(output_dir: str, model_args: ModelArguments, data_args: DataArguments,
                     training_args: GReFELTrainingArguments) -> None:
    """Record the run's arguments as JSON (Trainer's own `training_args.bin` is a pickle)."""
    run_config = {"model_args": asdict(model_args), "data_args": asdict(data_args),
                  "training_args": training_args.to_dict()}
    with open(os.path.join(output_dir, RUN_CONFIG_FILE), "w") as f:
        json.dump(run_config, f, indent=2, default=str)


def finish(trainer: GReFELTrainer, processor, train_result, training_args: GReFELTrainingArguments) -> dict:
    """Pick raw vs EMA (and then GReFEL's inference mode) on the validation split, save the model folder, and write
    the metrics files.

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
    if training_args.select_inference_mode:
        decision.update(trainer.select_inference_mode(eval_metrics, decision["selected"], metric="accuracy"))
    if trainer.is_world_process_zero():
        save_grefel_folder(trainer.model, processor, output_dir)
        with open(os.path.join(output_dir, SELECTION_FILE), "w") as f:
            json.dump(decision, f, indent=2)
    return {**metrics, **eval_metrics, "selected_weights": decision["selected"],
            "inference_mode": decision.get("inference_mode")}


def configure_cpu_threads(training_args: GReFELTrainingArguments) -> None:
    """Give a single-process CPU run every core (or `--cpu_threads`); multi-process and GPU runs are left alone."""
    if torch.cuda.is_available() or training_args.world_size > 1:
        return
    threads = training_args.cpu_threads or os.cpu_count() or 1
    if threads != torch.get_num_threads():
        logger.info("training on %d CPU threads (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)


def teardown_distributed() -> None:
    """Destroy the process group cleanly at exit (HF_NOTES §6: without it, gloo runs sometimes abort)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_training(model_args: ModelArguments, data_args: DataArguments,
                 training_args: GReFELTrainingArguments) -> dict:
    """Train GReFEL and save the final model into `training_args.output_dir`; returns the final metrics."""
    set_seed(training_args.seed)
    configure_cpu_threads(training_args)
    if training_args.backbone_lr_multiplier is None:
        pretrained = bool(model_args.backbone_weights or model_args.model_name_or_path)
        training_args.backbone_lr_multiplier = 0.1 if pretrained else 1.0
    if training_args.resume_from_checkpoint is True or training_args.resume_from_checkpoint == "last":
        training_args.resume_from_checkpoint = get_last_checkpoint(training_args.output_dir)
    with training_args.main_process_first(desc="preparing the dataset"):
        data = prepare_training_data(load_dataset_dict(data_args), data_args)
    class_weights, sample_weights = class_balance_weights(data, data_args)
    model = build_model(model_args, data.label_names, class_weights)
    processor = build_image_processor(model.config)
    data = attach_transforms(data, processor, training_args.augmentation_kwargs(), seed=training_args.seed)
    trainer = build_trainer(model, processor, data, training_args, sample_weights)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or None)
    results = finish(trainer, processor, train_result, training_args)
    if trainer.is_world_process_zero():
        write_run_config(training_args.output_dir, model_args, data_args, training_args)
    return results


__all__ = ["build_model", "parse_overrides", "run_training", "setup_logging",
           "teardown_distributed"]
