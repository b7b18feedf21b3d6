"""Exponential moving average (EMA) of model weights, and the Trainer callback that keeps and saves it.

The EMA follows the design of timm's ``ModelEmaV3``: a deep copy of the model made *after* device placement,
kept in eval mode without gradients; a decay that warms up as ``1 - (1 + step / gamma) ** -power`` so the
average is not dominated by the random initial weights early on; floating-point tensors (parameters and float
buffers such as BatchNorm statistics) are interpolated, integer buffers (``num_batches_tracked``) copied.

With ``transformers.Trainer``:

* :class:`GReFELEMACallback` creates the EMA at ``on_train_begin``, updates it once per optimizer step and
  writes it next to every checkpoint as ``checkpoint-N/ema/`` (``save_pretrained`` + ``ema_state.json``), so
  ``from_pretrained("checkpoint-N/ema")`` loads the EMA weights as an ordinary model.
* ``Trainer`` does not know about the EMA when it resumes, so the callback reloads ``ema/`` itself.
* To evaluate the EMA weights with the same Trainer, wrap ``evaluate`` in :func:`swap_weights`.
* ``load_best_model_at_end`` reloads the raw weights of the best checkpoint, not the EMA ones; load
  ``<best_model_checkpoint>/ema`` for those.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

EMA_SUBDIR = "ema"
EMA_STATE_NAME = "ema_state.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

DEFAULT_EMA_DECAY = 0.998
"""The EMA's default final decay, also the default of the training argument ``--ema_decay``, which reads it here; the
warm-up below reaches it after about 11k optimizer steps."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _paired_tensors(target: nn.Module, source: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of (target, source) parameters and buffers, checked to have matching names and shapes.

    Parameters and buffers are walked separately (not through ``state_dict``) so that tied weights are
    visited once, not interpolated twice.
    """
    for kind in ("named_parameters", "named_buffers"):
        target_items = list(getattr(target, kind)())
        source_items = list(getattr(source, kind)())
        if len(target_items) != len(source_items):
            raise ValueError(
                f"model structure differs from the EMA copy: {len(source_items)} vs {len(target_items)} "
                f"{kind.removeprefix('named_')}"
            )
        for (target_name, target_tensor), (source_name, source_tensor) in zip(
            target_items, source_items, strict=True
        ):
            if target_name != source_name or target_tensor.shape != source_tensor.shape:
                raise ValueError(
                    f"model tensor {source_name} {tuple(source_tensor.shape)} does not match EMA tensor "
                    f"{target_name} {tuple(target_tensor.shape)}"
                )
            yield target_tensor, source_tensor


class GReFELModelEMA:
    """An exponential moving average of a model's weights.

    Args:
        model (`nn.Module`): the model to follow, already on its device (DDP/compile wrappers are unwrapped).
        decay (`float`, *optional*, defaults to `DEFAULT_EMA_DECAY`, 0.998): the final (maximum) decay.
        min_decay (`float`, *optional*, defaults to 0.0): lower clamp of the warmed-up decay.
        use_warmup (`bool`, *optional*, defaults to `True`): warm the decay up with the step count.
        warmup_gamma (`float`, *optional*, defaults to 1.0): warm-up step scale.
        warmup_power (`float`, *optional*, defaults to 2/3): warm-up exponent; 2/3 reaches 0.999 near step
            31k and 0.9998 near step 350k, suiting long runs; 3/4 warms up faster.

    Attributes:
        module (`nn.Module`): the averaged copy (eval mode, no gradients).
        step (`int`): the optimizer step of the last update (0 before any); saved so warm-up survives resume.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = DEFAULT_EMA_DECAY,
        min_decay: float = 0.0,
        use_warmup: bool = True,
        warmup_gamma: float = 1.0,
        warmup_power: float = 2 / 3,
    ) -> None:
        if not 0.0 <= min_decay <= decay <= 1.0:
            raise ValueError(f"need 0 <= min_decay <= decay <= 1, got min_decay={min_decay}, decay={decay}")
        if warmup_gamma <= 0 or warmup_power <= 0:
            raise ValueError(
                f"warmup_gamma and warmup_power must be > 0, got {warmup_gamma} and {warmup_power}"
            )
        self.decay = decay
        self.min_decay = min_decay
        self.use_warmup = use_warmup
        self.warmup_gamma = warmup_gamma
        self.warmup_power = warmup_power
        self.step = 0
        self._pairs: tuple | None = None  # see _paired_lists
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        self.module.requires_grad_(False)

    def get_decay(self, step: int) -> float:
        """The decay for an update at ``step``: warmed up and clamped to ``[min_decay, decay]``, or fixed."""
        if not self.use_warmup:
            return self.decay
        warm = 1.0 - (1.0 + max(step, 0) / self.warmup_gamma) ** -self.warmup_power
        return min(max(warm, self.min_decay), self.decay)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the average towards ``model``: ``ema = decay * ema + (1 - decay) * model`` for float tensors.

        ``step`` is the optimizer step that just finished (``TrainerState.global_step``); it defaults to the
        previous update's step + 1. Integer buffers are copied, since averaging counters is meaningless.
        """
        step = self.step + 1 if step is None else step
        weight = 1.0 - self.get_decay(step)
        ema_floats, model_floats, ema_others, model_others = self._paired_lists(unwrap_model(model))
        if any(e.device != m.device or e.dtype != m.dtype for e, m in zip(ema_floats, model_floats, strict=True)):
            model_floats = [m.to(device=e.device, dtype=e.dtype) for e, m in zip(ema_floats, model_floats, strict=True)]
        if ema_floats:
            # One fused kernel per device/dtype group instead of one launch per tensor (as timm does).
            torch._foreach_lerp_(ema_floats, model_floats, weight)
        for ema_tensor, model_tensor in zip(ema_others, model_others, strict=True):
            ema_tensor.copy_(model_tensor)
        self.step = step

    def _paired_lists(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """(EMA floats, model floats, EMA others, model others): the model's tensors paired with the EMA's, once per
        followed model object and then reused, since walking both module trees at every step costs milliseconds.

        The model's own parameter and buffer objects are held: optimisers and BatchNorm update them in place. A model
        whose buffers are re-assigned as new tensors during training needs a new `GReFELModelEMA`.
        """
        if self._pairs is None or self._pairs[0] is not model:
            floats, others = ([], []), ([], [])
            for ema_tensor, model_tensor in _paired_tensors(self.module, model):
                target = floats if ema_tensor.is_floating_point() else others
                target[0].append(ema_tensor)
                target[1].append(model_tensor)  # read under no_grad; a parameter's .data may even be replaced
            self._pairs = (model, *floats, *others)
        return self._pairs[1:]

    def settings(self) -> dict[str, Any]:
        """The step and decay settings, as saved in ``ema_state.json``."""
        return {
            "step": self.step,
            "decay": self.decay,
            "min_decay": self.min_decay,
            "use_warmup": self.use_warmup,
            "warmup_gamma": self.warmup_gamma,
            "warmup_power": self.warmup_power,
        }

    def state_dict(self) -> dict[str, Any]:
        """The EMA weights (``module``) and its settings, including the step."""
        return {"module": self.module.state_dict(), **self.settings()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore weights and step from :meth:`state_dict`; the decay settings of ``self`` are kept."""
        self.module.load_state_dict(state_dict["module"])
        self.step = int(state_dict.get("step", 0))


@contextlib.contextmanager
def swap_weights(model: nn.Module, ema: GReFELModelEMA | nn.Module) -> Iterator[nn.Module]:
    """Temporarily copy the EMA weights into ``model`` (e.g. to evaluate them with the same Trainer).

    The original weights are restored on exit, also when the body raises. The tensors are copied in place, so
    optimizer state and device placement are untouched.
    """
    source = ema.module if isinstance(ema, GReFELModelEMA) else ema
    target = unwrap_model(model)
    pairs = list(_paired_tensors(target, unwrap_model(source)))
    backup = [target_tensor.detach().clone() for target_tensor, _ in pairs]
    try:
        with torch.no_grad():
            for target_tensor, source_tensor in pairs:
                target_tensor.copy_(source_tensor)
        yield model
    finally:
        with torch.no_grad():
            for (target_tensor, _), original in zip(pairs, backup, strict=True):
                target_tensor.copy_(original)


def save_ema(ema: GReFELModelEMA, directory: str) -> None:
    """Write the EMA model to ``directory`` (``save_pretrained``, safetensors) plus ``ema_state.json``."""
    os.makedirs(directory, exist_ok=True)
    if hasattr(ema.module, "save_pretrained"):
        ema.module.save_pretrained(directory)
    else:
        # A plain nn.Module: safetensors' save_model de-duplicates tied tensors like save_pretrained does.
        from safetensors.torch import save_model

        save_model(ema.module, os.path.join(directory, SAFE_WEIGHTS_NAME))
    with open(os.path.join(directory, EMA_STATE_NAME), "w", encoding="utf-8") as handle:
        json.dump(ema.settings(), handle, indent=2)


def _read_safetensors_dir(directory: str) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors``, or of the shards listed in ``model.safetensors.index.json``."""
    single = os.path.join(directory, SAFE_WEIGHTS_NAME)
    if os.path.isfile(single):
        return load_file(single)
    index_path = os.path.join(directory, SAFE_WEIGHTS_INDEX_NAME)
    if not os.path.isfile(index_path):
        raise FileNotFoundError(f"no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME} in {directory}")
    with open(index_path, encoding="utf-8") as handle:
        shards = sorted(set(json.load(handle)["weight_map"].values()))
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors.update(load_file(os.path.join(directory, shard)))
    return tensors


def load_ema(ema: GReFELModelEMA, directory: str) -> None:
    """Restore EMA weights and step from a directory written by :func:`save_ema`.

    Keys that ``save_pretrained`` dropped because they are tied to a saved tensor are accepted; any other
    missing or unexpected key is an error.
    """
    tensors = _read_safetensors_dir(directory)
    try:
        result = ema.module.load_state_dict(tensors, strict=False)
    except RuntimeError as error:  # shape mismatches: a checkpoint of another model configuration
        raise ValueError(f"{directory}: EMA weights do not fit the model: {error}") from error
    if result.unexpected_keys:
        raise ValueError(f"{directory}: weights not in the model: {sorted(result.unexpected_keys)[:10]}")
    current = ema.module.state_dict()
    loaded_storage = {current[key].data_ptr() for key in tensors}
    untied_missing = [key for key in result.missing_keys if current[key].data_ptr() not in loaded_storage]
    if untied_missing:
        raise ValueError(f"{directory}: weights missing from the checkpoint: {sorted(untied_missing)[:10]}")
    state_path = os.path.join(directory, EMA_STATE_NAME)
    if not os.path.isfile(state_path):
        raise FileNotFoundError(f"{state_path} not found; the EMA step (warm-up position) cannot be restored")
    with open(state_path, encoding="utf-8") as handle:
        saved = json.load(handle)
    changed = {k: (v, getattr(ema, k)) for k, v in saved.items() if k != "step" and getattr(ema, k, v) != v}
    if changed:
        logger.warning(
            "EMA settings differ from the checkpoint's (saved, current): %s; using current", changed
        )
    ema.step = int(saved["step"])


class GReFELEMACallback(TrainerCallback):
    """Keeps an EMA of the model during ``Trainer.train`` and saves it with every checkpoint.

    Args:
        decay, min_decay, use_warmup, warmup_gamma, warmup_power: see :class:`GReFELModelEMA`.
        resume_from_checkpoint (`str`, *optional*): a checkpoint directory whose ``ema/`` is loaded at
            ``on_train_begin``. May also be set later through the attribute of the same name.

    Attributes:
        ema (`GReFELModelEMA` or `None`): the EMA, created at the first ``on_train_begin``.
        resume_from_checkpoint (`str` or `None`): the checkpoint to restore the EMA from. The trainer sets it
            to the resolved checkpoint path. When unset, ``args.resume_from_checkpoint`` is used if it is a
            directory, else ``<output_dir>/checkpoint-<global_step>`` when training resumes at a step > 0.
    """

    def __init__(
        self,
        decay: float = DEFAULT_EMA_DECAY,
        min_decay: float = 0.0,
        use_warmup: bool = True,
        warmup_gamma: float = 1.0,
        warmup_power: float = 2 / 3,
        resume_from_checkpoint: str | None = None,
    ) -> None:
        self.ema_kwargs = {
            "decay": decay,
            "min_decay": min_decay,
            "use_warmup": use_warmup,
            "warmup_gamma": warmup_gamma,
            "warmup_power": warmup_power,
        }
        self.ema: GReFELModelEMA | None = None
        self.resume_from_checkpoint = resume_from_checkpoint

    def load_from_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore the EMA weights and step from ``checkpoint_dir/ema/``; the EMA must exist already."""
        if self.ema is None:
            raise ValueError(
                "the EMA does not exist before on_train_begin; set `resume_from_checkpoint` instead, "
                "and it will be loaded when training starts"
            )
        directory = os.path.join(checkpoint_dir, EMA_SUBDIR)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"no EMA folder {directory}; was the checkpoint saved with the EMA callback?"
            )
        load_ema(self.ema, directory)
        logger.info("Restored the EMA from %s (step %d)", directory, self.ema.step)

    def _checkpoint_to_resume(self, args: TrainingArguments, state: TrainerState) -> str | None:
        """The checkpoint whose EMA should be restored, or None for a fresh run (see the class docstring)."""
        if self.resume_from_checkpoint:
            return self.resume_from_checkpoint
        if isinstance(args.resume_from_checkpoint, str) and os.path.isdir(args.resume_from_checkpoint):
            return args.resume_from_checkpoint
        if state.global_step > 0:
            return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        return None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        """Create the EMA from the (unwrapped, placed) model and restore it when training resumes."""
        if self.ema is not None:
            return
        if model is None:
            raise ValueError("GReFELEMACallback.on_train_begin needs the `model` keyword argument")
        self.ema = GReFELModelEMA(model, **self.ema_kwargs)
        checkpoint = self._checkpoint_to_resume(args, state)
        if checkpoint is None:
            return
        if os.path.isdir(os.path.join(checkpoint, EMA_SUBDIR)):
            self.load_from_checkpoint(checkpoint)
        else:
            logger.warning(
                "Resuming at step %d but %s has no ema/ folder: the EMA restarts from the current weights",
                state.global_step,
                checkpoint,
            )
            self.ema.step = state.global_step

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        """Update the EMA once per optimizer step."""
        if self.ema is not None and model is not None:
            self.ema.update(model, step=state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Write the EMA into the checkpoint Trainer has just saved (main process only)."""
        if self.ema is None or not state.is_world_process_zero:
            return
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        save_ema(self.ema, os.path.join(checkpoint, EMA_SUBDIR))


__all__ = [
    "DEFAULT_EMA_DECAY",
    "GReFELEMACallback",
    "GReFELModelEMA",
    "load_ema",
    "save_ema",
    "swap_weights",
    "unwrap_model",
]
