"""`GReFELTrainer`: transformers' Trainer with GReFEL's multi-term loss, trust ramp, parameter groups, training-only
mixing, class balancing, EMA evaluation, SAM, OneCycle, progressive unfreezing and test-time augmentation of its
evaluations. Every option is read from `self.args` (`GReFELTrainingArguments`).

Loss scale: GReFEL's loss is a per-batch mean and its forward takes no `**kwargs`, so Trainer divides it by the
gradient-accumulation steps itself and DDP averages gradients over processes: the scale is the same with or without
accumulation and with one or many processes.

The loss is the trainer's, as in transformers' `compute_loss`: `self.objective` (`GReFELObjective`, or the
baseline's `BaselineObjective`), filled from the training arguments, scores the model's outputs, with GReFEL's trust ramp
τ (`self.trust`) advanced before every step. The model holds no training state.

On CPU, two speed-ups that never change results are on by default for the duration of `train()` only, each behind a
runtime argument: the per-tap weight gradient of depthwise convolutions whose kernel is larger than their input map
(`--fast_depthwise_grad`, `depthwise.py`), and keeping freed memory in the process (`--keep_freed_memory`,
`cpu_memory.py`). A trainer that only evaluates or predicts makes neither.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import WeightedRandomSampler
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_utils import speed_metrics

from ..configuration_grefel import INFERENCE_MODES
from ..data.collators import GReFELEvalCollator, GReFELMixCollator
from ..losses import GReFELObjective
from ..modeling_baseline import BaselineObjective
from ..tta_grefel import predict_probabilities
from .clipping import check_part_clipping_supported, clip_grad_norm_by_part, gradient_clip_parts
from .cpu_memory import reuse_freed_memory
from .depthwise import use_fast_depthwise_weight_grad, use_native_depthwise_weight_grad
from .ema import GReFELEMACallback, swap_weights
from .freezing import freeze_backbone_groups
from .parameter_parts import parameter_parts_of
from .sam import (
    SharpnessAwareStep,
    batch_norm_statistics_kept,
    check_sam_supported,
    perturbed_weights,
    sam_perturbation,
)
from .schedules import one_cycle_scheduler
from .seeding import IndexSeededCollator
from .unfreezing import ProgressiveUnfreezing

logger = logging.getLogger(__name__)


def parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    decay_names: Sequence[str],
    backbone_lr_multiplier: float,
    anchor_lr_multiplier: float = 1.0,
    anchor_weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """AdamW parameter groups from the model's parameter map (`parameter_parts`): the heads (primary head and
    branch, full lr), the backbone (lr × multiplier) and the anchors (own lr, own decay).

    The head groups come first, so the `learning_rate` Trainer logs (group 0) is the heads' learning rate.
    """
    decay_names = set(decay_names)
    parts = parameter_parts_of(model)
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = parts[name]
        if part == "anchors":
            bucket = "anchors"
        else:
            no_decay = name not in decay_names or name.endswith("level_embeddings")
            bucket = f"{'backbone' if part == 'backbone' else 'head'}_{'no_decay' if no_decay else 'decay'}"
        buckets.setdefault(bucket, []).append(param)
    settings = {
        "head_decay": (learning_rate, weight_decay),
        "head_no_decay": (learning_rate, 0.0),
        "backbone_decay": (learning_rate * backbone_lr_multiplier, weight_decay),
        "backbone_no_decay": (learning_rate * backbone_lr_multiplier, 0.0),
        "anchors": (learning_rate * anchor_lr_multiplier, anchor_weight_decay),
    }
    return [
        {"params": buckets[name], "lr": lr, "weight_decay": wd, "name": name}
        for name, (lr, wd) in settings.items()
        if buckets.get(name)
    ]


OBJECTIVES: dict[str, type] = {"grefel": GReFELObjective, "grefel_baseline": BaselineObjective}
"""The objective class of each model type (`config.model_type`)."""


def build_objective(config, args, class_weights: Sequence[float] | None = None):
    """The objective of `config`'s model type, filled from the training arguments of the same names and checked
    against the config.

    Raises:
        ValueError: no objective for the model type, or a setting impossible for this model (the message names it).
    """
    if config.model_type not in OBJECTIVES:
        raise ValueError(f"GReFELTrainer trains {sorted(OBJECTIVES)} models, got model_type {config.model_type!r}")
    objective_class = OBJECTIVES[config.model_type]
    settings = {**args.objective_settings(), "class_weights": None if class_weights is None else list(class_weights)}
    names = {f.name for f in dataclasses.fields(objective_class)}
    objective = objective_class(**{name: value for name, value in settings.items() if name in names})
    objective.check(config)
    return objective


def objective_loss(objective, model, inputs: Mapping[str, Any], trust: float | None = None, unwrapped=None):
    """`(loss, parts, outputs)`: the forward pass of `model` on `inputs` (every key but `labels`), with the
    objective's gradient routing, and the objective's loss on its outputs and `inputs["labels"]`.

    Args:
        trust: GReFEL's trust ramp τ in training; None scores the model's own final distribution (see
            `GReFELObjective.loss`).
        unwrapped: the bare model inside a DDP or compile wrapper `model` (default: `model` itself).

    Raises:
        ValueError: `inputs` has no labels.
    """
    if inputs.get("labels") is None:
        raise ValueError(f"the batch has no labels (keys {sorted(inputs)}), so there is no loss to compute")
    features = {name: value for name, value in inputs.items() if name != "labels"}
    outputs = model(**features, **objective.model_kwargs())
    loss, parts = objective.loss(model if unwrapped is None else unwrapped, outputs, inputs["labels"], trust=trust)
    return loss, parts, outputs


def build_train_collator(num_labels: int, args) -> IndexSeededCollator:
    """The training loader's collator: face-aware CutMix/Mixup with label smoothing folded into the targets, its
    randomness keyed on the batch's sample indices (resume-exact)."""
    mixing = args.mix_prob > 0 and (args.mixup_alpha > 0 or args.cutmix_alpha > 0)
    collator = GReFELMixCollator(
        num_labels, mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha,
        prob=args.mix_prob if mixing else 0.0, switch_prob=args.mix_switch_prob,
        label_smoothing=args.label_smoothing_factor,
    )
    return IndexSeededCollator(collator, args.seed)


class GReFELTrainer(Trainer):
    """Trainer for GReFEL (and the baseline); every option comes from `self.args` (`GReFELTrainingArguments`).

    It builds what the options ask for: the objective (`self.objective`), the frozen backbone groups (or the
    progressive unfreezing callback), channels-last layout, the training-only mixing collator (evaluation keeps
    `GReFELEvalCollator`, so validation batches are never mixed), the EMA callback, early stopping and SAM.

    Attributes:
        objective: what the loss is made of (`GReFELObjective` or `BaselineObjective`).
        trust: GReFEL's trust ramp τ, the weight of q in the training blend (1 − τ)·p + τ·q; set to
            `training_progress()` before every training step.

    Args (besides Trainer's own; `model` must be passed by keyword):
        class_weights: per-class loss weights derived from the training data (`--class_balance weights`).
        sample_weights: per-training-example weights for a class-balanced sampler (`--class_balance sampler`).
        train_collator: replaces the mixing collator built from the arguments (tests use it).
    """

    def __init__(self, *args, class_weights: Sequence[float] | None = None,
                 sample_weights: Sequence[float] | None = None, train_collator=None, **kwargs):
        model = kwargs["model"]
        num_labels = model.config.num_labels
        kwargs.setdefault("data_collator", GReFELEvalCollator(num_labels))
        super().__init__(*args, **kwargs)
        options = self.args
        if options.clip_branch_separately:
            check_part_clipping_supported(self.accelerator.distributed_type)
        self.objective = build_objective(model.config, options, class_weights)
        self.trust = 1.0
        # before the optimiser is built, which then only holds the trainable parameters
        self.frozen_parameter_names = freeze_backbone_groups(model, options.backbone_frozen_groups)
        if options.unfreeze_schedule:  # freezes at train begin, after the optimiser holds every parameter
            self.add_callback(ProgressiveUnfreezing(model, options.unfreeze_schedule))
        self.sam = None
        if options.sam_rho > 0:
            check_sam_supported(self.accelerator.distributed_type)
            self.sam = SharpnessAwareStep(options.sam_rho, options.sam_adaptive)
        self._sam_second_pass = False
        if options.channels_last:
            model.to(memory_format=torch.channels_last)
        self.train_collator = train_collator or build_train_collator(num_labels, options)
        self.sample_weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.double)
        if options.use_ema and self.ema_callback is None:
            self.add_callback(GReFELEMACallback(decay=options.ema_decay, use_warmup=options.ema_warmup))
        if options.early_stopping_patience is not None:
            self.add_callback(EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience))
        self._clip_parts: list[list[nn.Parameter]] | None = None
        self._loss_part_sums: dict[str, torch.Tensor] = {}
        self._loss_part_count = 0

    # -- data -----------------------------------------------------------------------------------------------

    def get_train_dataloader(self):
        """The training loader uses `train_collator` (mixing); every other loader keeps `data_collator`."""
        if self.train_collator is None:
            return super().get_train_dataloader()
        eval_collator, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = eval_collator

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        # Same seed on every process: accelerate then shards one shared sequence of batches.
        generator = torch.Generator().manual_seed(self.args.seed)
        return WeightedRandomSampler(self.sample_weights, len(self.sample_weights), replacement=True,
                                     generator=generator)

    def _prepare_inputs(self, inputs):
        """Trainer's device placement, then the channels-last layout for image batches when asked."""
        inputs = super()._prepare_inputs(inputs)
        pixel_values = inputs.get("pixel_values")
        if self.args.channels_last and isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4:
            inputs["pixel_values"] = pixel_values.contiguous(memory_format=torch.channels_last)
        return inputs

    # -- optimisation ---------------------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            args = self.args
            # run_training resolves it from the model arguments; a trainer built without them cannot know that the
            # backbone is pretrained
            backbone_lr_multiplier = args.resolve_backbone_lr_multiplier(pretrained_backbone=False)
            groups = parameter_groups(
                opt_model, args.learning_rate, args.weight_decay, self.get_decay_parameter_names(opt_model),
                backbone_lr_multiplier, args.anchor_lr_multiplier, args.anchor_weight_decay,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("params", None)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
            logger.info("parameter groups: %s", [(g["name"], len(g["params"]), g["lr"]) for g in groups])
        return self.optimizer

    def _clip_grad_norm(self, model):
        """Trainer's clipping, or with `clip_branch_separately` each part clipped on its own. Returns the norm of
        all gradients before clipping, the `grad_norm` Trainer logs either way."""
        if not self.args.clip_branch_separately:
            return super()._clip_grad_norm(model)
        if self._clip_parts is None:  # the trainable parameters are fixed once training starts
            self._clip_parts = gradient_clip_parts(self.accelerator.unwrap_model(model))
        self.accelerator.unscale_gradients()  # fp16: once, before any part is measured
        return clip_grad_norm_by_part(self._clip_parts, self.args.max_grad_norm)

    def training_progress(self) -> float:
        """The fraction of training done, global_step / max_steps; the trust ramp τ follows it.

        A subclass whose schedule runs on something else (a wall-clock budget, say) overrides this.
        """
        return self.state.global_step / max(1, self.state.max_steps)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Trainer's schedule, or with `one_cycle` PyTorch's OneCycleLR (see `schedules.py`)."""
        if not self.args.one_cycle or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = one_cycle_scheduler(optimizer or self.optimizer, num_training_steps, self.args)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Advance the trust ramp τ to `training_progress()`, then run Trainer's step; with SAM, after the last
        micro-batch of an accumulation window, the second pass at the perturbed weights (see `sam.py`)."""
        self.trust = float(min(1.0, max(0.0, self.training_progress())))
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.sam is not None:
            self.sam.remember(inputs, num_items_in_batch)
            if self.accelerator.sync_gradients:  # the window's gradient is complete (and all-reduced)
                self._sharpness_aware_second_pass(model, self.sam.take_window())
        return loss

    def _sharpness_aware_second_pass(self, model, window: list) -> None:
        """Replace the window's gradient by the gradient at w + e over the same micro-batches; weights stay w."""
        parameters = [p for p in self.accelerator.unwrap_model(model).parameters() if p.grad is not None]
        perturbation = sam_perturbation(parameters, self.sam.rho, self.sam.adaptive)
        if perturbation is None:  # zero or non-finite gradients (an fp16 overflow the scaler will skip)
            return
        with perturbed_weights(parameters, perturbation), batch_norm_statistics_kept(model):
            model.zero_grad(set_to_none=True)
            self._sam_second_pass = True
            try:
                for index, (inputs, num_items_in_batch) in enumerate(window):
                    last = index == len(window) - 1
                    with nullcontext() if last else self.accelerator.no_sync(model):
                        super().training_step(model, inputs, num_items_in_batch)
            finally:
                self._sam_second_pass = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The objective's loss on the model's outputs: in training GReFEL's classification term scores the trust
        blend (1 − τ)·p + τ·q, in evaluation the model's own final distribution. During training the loss's named
        parts are accumulated for logging."""
        loss, parts, outputs = objective_loss(self.objective, model, inputs, self.trust if model.training else None,
                                              unwrapped=self.accelerator.unwrap_model(model))
        if model.training and parts and not self._sam_second_pass:  # SAM's second pass: logged once already
            for name, value in parts.items():
                self._loss_part_sums[name] = self._loss_part_sums.get(name, 0.0) + value.detach().float()
            self._loss_part_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of every loss part since the last training log (averaged over processes)."""
        if "loss" in logs and self._loss_part_count:
            names = sorted(self._loss_part_sums)
            means = torch.stack([self._loss_part_sums[n] for n in names]) / self._loss_part_count
            if self.accelerator.num_processes > 1:
                means = self.accelerator.reduce(means.to(self.accelerator.device), reduction="mean")
            logs.update({f"loss_{n}": round(v, 4) for n, v in zip(names, means.tolist(), strict=True)})
            self._loss_part_sums, self._loss_part_count = {}, 0
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """One evaluation batch: (loss, predictions, labels), the predictions by name: `{"logits", "reliability"}`,
        the log of the final distribution and its reliability, so that `compute_metrics` reads them by name. With
        `eval_tta_views` > 1 both come from the mean of the model's distributions over the test-time views
        (`grefel_hf.tta_grefel`), the loss from the images as they are."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            if labels is None:
                loss, outputs = None, model(pixel_values=inputs["pixel_values"])
            else:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach().mean()
            if prediction_loss_only:
                return loss, None, None
            if self.args.eval_tta_views > 1:
                probs, reliability = predict_probabilities(model, inputs["pixel_values"], self.args.eval_tta_views)
                predictions = {"logits": probs.clamp_min(1e-12).log(), "reliability": reliability}
            else:
                predictions = {"logits": outputs["logits"], "reliability": outputs["reliability"]}
        return loss, {name: value.detach() for name, value in predictions.items()}, labels

    # -- EMA ------------------------------------------------------------------------------------------------

    @property
    def ema_callback(self) -> GReFELEMACallback | None:
        """The registered EMA callback, if any."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, GReFELEMACallback):
                return callback
        return None

    def _evaluation_metrics(self, eval_dataset, ignore_keys, metric_key_prefix: str) -> dict[str, float]:
        """One evaluation loop's metrics and speed, as Trainer.evaluate computes them, without logging them or
        calling the callbacks."""
        dataloader = self.get_eval_dataloader(eval_dataset)
        start = time.time()
        output = self.evaluation_loop(dataloader, description="Evaluation",
                                      prediction_loss_only=True if self.compute_metrics is None else None,
                                      ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        steps = math.ceil(output.num_samples / (self.args.eval_batch_size * self.args.world_size))
        output.metrics.update(speed_metrics(metric_key_prefix, start, num_samples=output.num_samples,
                                            num_steps=steps))
        return output.metrics

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Trainer.evaluate; when an EMA is kept, the EMA weights are evaluated beside the raw ones (`<prefix>_ema_*`)
        and the metrics of both are logged together and reach the callbacks (early stopping) in one `on_evaluate`
        event, as Trainer's own evaluation would."""
        callback = self.ema_callback
        several = isinstance(self.eval_dataset if eval_dataset is None else eval_dataset, dict)
        if callback is None or callback.ema is None or several:  # Trainer calls this method per named dataset
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics = self._evaluation_metrics(eval_dataset, ignore_keys, metric_key_prefix)
        with swap_weights(self.model, callback.ema):
            metrics.update(self._evaluation_metrics(eval_dataset, ignore_keys, f"{metric_key_prefix}_ema"))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    @contextmanager
    def _cpu_speed_ups(self) -> Iterator[None]:
        """The CPU speed-ups the runtime arguments ask for, for the duration of training: the per-tap depthwise
        weight gradient (switched back afterwards, in the model and its EMA copy) and freed memory kept in the
        process (a process-wide setting, made once)."""
        fast_depthwise = self.args.device.type == "cpu" and self.args.fast_depthwise_grad
        if self.args.device.type == "cpu" and self.args.keep_freed_memory:
            reuse_freed_memory()
        if fast_depthwise:
            use_fast_depthwise_weight_grad(self.model)
        try:
            yield
        finally:
            if fast_depthwise:
                use_native_depthwise_weight_grad(self.model)
                if self.ema_callback is not None and self.ema_callback.ema is not None:
                    use_native_depthwise_weight_grad(self.ema_callback.ema.module)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer.train, restoring the EMA from the checkpoint that training resumes from."""
        callback = self.ema_callback
        if callback is not None and resume_from_checkpoint:
            if resume_from_checkpoint is True:
                from transformers.trainer_utils import get_last_checkpoint

                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
                if resume_from_checkpoint is None:
                    raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}")
            callback.resume_from_checkpoint = resume_from_checkpoint
        with self._cpu_speed_ups():
            return super().train(resume_from_checkpoint, *args, **kwargs)

    def select_final_weights(self, results: dict[str, float], metric: str = "accuracy") -> dict[str, Any]:
        """Decide whether the raw or the EMA weights score better in `results`, the output of `evaluate()` on the
        evaluation (validation) split. Returns `{"selected": "ema" | "raw", "metric": ..., "raw": .., "ema": ..}`.
        """
        callback = self.ema_callback
        if callback is None or callback.ema is None:
            return {"selected": "raw", "metric": f"eval_{metric}", "reason": "no EMA was kept"}
        raw, ema = results.get(f"eval_{metric}"), results.get(f"eval_ema_{metric}")
        if raw is None or ema is None:
            raise ValueError(f"cannot select final weights: eval_{metric} / eval_ema_{metric} missing from "
                             f"{sorted(results)}")
        greater_is_better = not metric.endswith("loss")
        ema_wins = ema > raw if greater_is_better else ema < raw
        decision = {"selected": "ema" if ema_wins else "raw", "metric": f"eval_{metric}", "raw": raw, "ema": ema,
                    "split": "evaluation split (validation)"}
        logger.info("final weights: %s (raw %s=%.4f, EMA %.4f)", decision["selected"], metric, raw, ema)
        return decision

    def select_inference_mode(self, results: dict[str, float], weights: str,
                              metric: str = "accuracy") -> dict[str, Any]:
        """Keep GReFEL's primary head p or its corrected distribution q as the inference mode, whichever scores
        better on the evaluation (validation) split with the final weights.

        `results` is `evaluate()`'s output, which holds the current mode's score of the `weights` ("raw" or "ema")
        now in the model; this evaluates the model once more in the other mode and sets `config.inference_mode`
        to the winner (the current mode on a tie). Returns the decision; a model without an inference mode (not
        GReFEL) is left alone.
        """
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        current = getattr(config, "inference_mode", None)
        if current not in INFERENCE_MODES:
            return {"inference_mode": None, "reason": "the model has no GReFEL inference mode"}
        key = f"eval_{metric}" if weights == "raw" else f"eval_ema_{metric}"
        if key not in results:
            raise ValueError(f"cannot select the inference mode: {key} missing from {sorted(results)}")
        other = next(mode for mode in INFERENCE_MODES if mode != current)
        config.inference_mode = other
        other_metrics = self._evaluation_metrics(None, None, f"eval_{other}")  # a selection, not an evaluation event
        self.log(other_metrics)
        other_score = other_metrics[f"eval_{other}_{metric}"]
        scores = {current: results[key], other: other_score}
        better = other_score < scores[current] if metric.endswith("loss") else other_score > scores[current]
        config.inference_mode = other if better else current
        logger.info("inference mode: %s (%s: %s)", config.inference_mode, metric, scores)
        return {"inference_mode": config.inference_mode, "inference_mode_metric": f"eval_{metric}",
                "inference_mode_scores": scores}

    def load_ema_weights(self) -> None:
        """Copy the EMA weights into the model for good (after `select_final_weights` chose them)."""
        self.model.load_state_dict(self.ema_callback.ema.module.state_dict())


__all__ = ["GReFELTrainer", "OBJECTIVES", "build_objective", "build_train_collator", "objective_loss",
           "parameter_groups"]
