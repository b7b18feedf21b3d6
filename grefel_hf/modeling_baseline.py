"""The baseline classifier: a timm backbone, an optional attention neck and multi-scale fusion, a plain classifier.

Reads top to bottom in data-flow order:
objective and loss → outputs → attention neck → classifier → PreTrainedModels (base model, then the task head).

With every config field at its default it is the plain head GReFEL is compared with: the backbone's pooled features
and one linear layer. Like GReFEL it returns log-probabilities as `logits` (so `pipeline` and the metrics treat both
alike) and a reliability score, and it accepts hard or soft labels.

This file is saved next to checkpoints as remote code: it imports only torch, timm, transformers and its flat
siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import get_attn
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_baseline import BaselineConfig
from .layers_grefel import backbone_features, create_timm_backbone, prepare_pixel_values
from .losses import check_class_weights, normalized_entropy, target_distribution

BASELINE_AUTO_MAP = {
    "AutoConfig": "configuration_baseline.BaselineConfig",
    "AutoModel": "modeling_baseline.BaselineModel",
    "AutoModelForImageClassification": "modeling_baseline.BaselineForImageClassification",
}
"""The remote-code `auto_map` of a saved baseline folder."""


# ---------------------------------------------------------------------------------------------------------------
# Objective
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class BaselineObjective:
    r"""
    How a baseline model is trained. None of it is saved with the model: `GReFELTrainer` holds one, filled from the
    training arguments of the same names (`label_smoothing` from `--label_smoothing_factor`, `class_weights` from
    `--class_balance weights`), and computes the loss with it from the model's outputs. With every setting at its
    default it is the model's own default loss, a plain cross-entropy.

    Args:
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Smoothing of hard labels; soft labels (FER+ votes, CutMix/Mixup targets) are used as given.
        class_weights (`list[float]`, *optional*):
            Per-class weights of the cross-entropy; `None` weighs all classes equally.
    """

    label_smoothing: float = 0.0
    class_weights: list[float] | None = None

    def model_kwargs(self) -> dict[str, Any]:
        """The settings the model's forward pass takes: none (the baseline routes no gradients)."""
        return {}

    def loss(self, model, outputs, labels: torch.Tensor,
             trust: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`(cross-entropy, {})` of a baseline model's `outputs` on `labels`; `model` and `trust` (GReFEL's trust
        ramp) are not used, so that every objective is called alike."""
        return baseline_loss(outputs.logits, labels, self), {}

    def check(self, config) -> None:
        """Raise a `ValueError` naming the setting when it is impossible for `config`'s model."""
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        check_class_weights(self.class_weights, config.num_labels)


def baseline_loss(log_probs: torch.Tensor, labels: torch.Tensor, objective: BaselineObjective) -> torch.Tensor:
    """Cross-entropy of hard or soft `labels` against log-probabilities (B, C); with class weights, each sample is
    weighted by the target mass it puts on each class and the sum is normalised by the total weight."""
    targets = target_distribution(labels, log_probs.shape[-1], objective.label_smoothing)
    per_sample = -(targets * log_probs).sum(dim=-1)
    if objective.class_weights is None:
        return per_sample.mean()
    weights = targets @ torch.tensor(objective.class_weights, dtype=targets.dtype, device=targets.device)
    return (weights * per_sample).sum() / weights.sum().clamp_min(1e-8)


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class BaselineImageClassifierOutput(ModelOutput):
    """
    Output of [`BaselineForImageClassification`]: `loss` (shape `()`, the plain cross-entropy, returned when `labels`
    is given), `logits` (shape `(batch_size, num_labels)`, log-probabilities: `softmax(logits) == exp(logits)`),
    `reliability` (shape `(batch_size,)`, one minus the normalised entropy of the distribution, in [0, 1]) and, when
    `output_hidden_states=True`, `hidden_states` (the backbone's feature maps, one per level of its feature pyramid).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class BaselineModelOutput(ModelOutput):
    """
    Output of [`BaselineModel`], under the names transformers' vision models use: `last_hidden_state`, the backbone's
    final features before the neck and pooling (`(batch_size, channels, height, width)` for CNNs, the backbone's own
    token layout for others); `pooler_output` (`(batch_size, num_features)`), what the classifier reads: the final
    map's pooled features after the attention neck, after those of the `fusion_levels` maps; and, when
    `output_hidden_states=True`, `hidden_states`, the backbone's feature maps, one per level of its feature pyramid.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Attention neck and classifier
# ---------------------------------------------------------------------------------------------------------------


class BaselineAttentionNeck(nn.Sequential):
    """timm's attention blocks (`config.attention_blocks`, in order) over one (B, C, H, W) feature map; with no
    blocks it returns the map unchanged."""

    def __init__(self, names: list[str], channels: int):
        super().__init__(*(get_attn(name)(channels) for name in names))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        if len(self) and feature_map.dim() != 4:
            raise ValueError(f"the attention blocks need a convolutional feature map (batch, channels, height, "
                             f"width), but the backbone gives shape {tuple(feature_map.shape)}; use a CNN backbone or "
                             "attention_blocks=[]")
        return super().forward(feature_map)


class BaselineClassifier(nn.Sequential):
    """The classifier: per hidden size Dropout → Linear → BatchNorm → ReLU, then Dropout → Linear to the classes.
    Dropout layers with probability 0 are left out, so the defaults give one linear layer."""

    def __init__(self, config: BaselineConfig, in_dim: int):
        layers: list[nn.Module] = []
        for hidden in config.classifier_hidden_sizes:
            layers += self._dropout(config) + [nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            in_dim = hidden
        layers += self._dropout(config) + [nn.Linear(in_dim, config.num_labels)]
        super().__init__(*layers)

    @staticmethod
    def _dropout(config: BaselineConfig) -> list[nn.Module]:
        return [nn.Dropout(config.classifier_dropout)] if config.classifier_dropout > 0 else []


# ---------------------------------------------------------------------------------------------------------------
# PreTrainedModels
# ---------------------------------------------------------------------------------------------------------------


class BaselinePreTrainedModel(PreTrainedModel):
    """Weight initialisation and the shared class attributes of the baseline models."""

    config_class = BaselineConfig
    base_model_prefix = "baseline"  # the base model's attribute in the task model (its weights' name prefix)
    main_input_name, input_modalities = "pixel_values", "image"
    supports_gradient_checkpointing = True  # timm's own, on the backbone
    _no_split_modules: list[str] = []
    accepts_loss_kwargs = False  # no **kwargs and a per-batch mean loss: Trainer scales it for accumulation

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the classifier; leave timm's modules (backbone, attention blocks) with timm's own init."""
        if getattr(module, "_timm_initialised", False):
            if hasattr(module, "init_non_persistent_buffers"):  # not in checkpoints: rebuilt here
                module.init_non_persistent_buffers()
            return
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; registered for remote code, the saved `auto_map` names every baseline
        Auto class (transformers names only the class being saved, and `AutoModel` would then fail)."""
        if self._auto_class is not None:
            self.config.auto_map = dict(getattr(self.config, "auto_map", None) or {}) | BASELINE_AUTO_MAP
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None,
                                    every_n_layers: int = 1) -> None:
        """Activation checkpointing is timm's own, on the backbone (`set_grad_checkpointing`)."""
        for module in self.modules():
            if isinstance(module, BaselineModel):
                module.backbone.set_grad_checkpointing(enable)


def _as_requested(output: ModelOutput, return_dict: bool | None, config: BaselineConfig) -> ModelOutput | tuple:
    """`output`, or its tuple where `return_dict` (or, when it is None, the config's) is False."""
    return output if (config.return_dict if return_dict is None else return_dict) else output.to_tuple()


def _mark_timm_modules(module: nn.Module) -> None:
    """Flag `module` and its children as timm's, so `_init_weights` leaves their initialisation alone."""
    for child in module.modules():
        child._timm_initialised = True  # a plain attribute, not part of the state dict


class BaselineModel(BaselinePreTrainedModel):
    """The baseline feature extractor: timm backbone → attention neck on each used map → pooling → concatenation.

    `num_features` is the width of `pooler_output`.
    """

    # loaded from a classifier checkpoint, the classifier's weights are not this model's
    _keys_to_ignore_on_load_unexpected = [r"^classifier\."]

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.backbone = create_timm_backbone(config)
        pyramid = self.backbone.feature_info
        self.fusion_levels = self._resolve_levels(config.fusion_levels, len(pyramid))
        level_channels = [pyramid[i]["num_chs"] for i in self.fusion_levels]
        self.level_necks = nn.ModuleList(BaselineAttentionNeck(config.attention_blocks, c) for c in level_channels)
        self.final_neck = BaselineAttentionNeck(config.attention_blocks, self.backbone.num_features)
        for module in (self.backbone, self.level_necks, self.final_neck):
            _mark_timm_modules(module)
        self.num_features = sum(level_channels) + self.backbone.num_features
        self.post_init()

    def _resolve_levels(self, levels: list[int], count: int) -> list[int]:
        """`fusion_levels` as non-negative indices, range-checked against the backbone's pyramid."""
        resolved = [level + count if level < 0 else level for level in levels]
        if any(not 0 <= level < count for level in resolved):
            raise ValueError(f"BaselineConfig.fusion_levels {levels} is out of range: backbone "
                             f"{self.config.backbone!r} has {count} feature levels (valid: {-count}..{count - 1})")
        return resolved

    def forward(self, pixel_values: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None):
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): the images, from
            `GReFELImageProcessor`; any float dtype, cast to the weights' dtype.
        output_hidden_states (`bool`, *optional*): also return every map of the backbone's feature pyramid
            (defaults to `config.output_hidden_states`).
        """
        pixel_values = prepare_pixel_values(pixel_values, self.config.num_channels, self.dtype)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        feature_map, maps, hidden_states = backbone_features(self.backbone, pixel_values, self.fusion_levels,
                                                             output_hidden_states)
        pooled = [neck(level_map).mean(dim=(2, 3)) for neck, level_map in zip(self.level_necks, maps, strict=True)]
        pooled.append(self.backbone.forward_head(self.final_neck(feature_map), pre_logits=True))
        output = BaselineModelOutput(last_hidden_state=feature_map, pooler_output=torch.cat(pooled, dim=1),
                                     hidden_states=hidden_states)
        return _as_requested(output, return_dict, self.config)


class BaselineForImageClassification(BaselinePreTrainedModel):
    """The baseline with its classifier: log-probabilities, a reliability score and (given labels) the plain
    cross-entropy; `GReFELTrainer` trains with the objective its arguments set (`BaselineObjective`) instead."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.baseline = BaselineModel(config)
        self.classifier = BaselineClassifier(config, self.baseline.num_features)
        self.post_init()

    def parameter_parts(self) -> dict[str, str]:
        """Which part each parameter belongs to: `"backbone"` (the timm backbone) or `"primary_head"` (the attention
        neck and the classifier). The one map that parameter groups, freezing and clipping use."""
        return {name: "backbone" if name.startswith("baseline.backbone.") else "primary_head"
                for name, _ in self.named_parameters()}

    def class_indexed_parameters(self) -> tuple[str, ...]:
        """The state-dict names of the tensors whose first dimension indexes the classes (the last linear layer of
        the classifier): what fine-tuning on another label set maps class by class."""
        last = len(self.classifier) - 1
        return (f"classifier.{last}.weight", f"classifier.{last}.bias")

    def get_backbone(self) -> nn.Module:
        """The timm backbone module (its parameters are the `"backbone"` part of `parameter_parts`)."""
        return self.baseline.backbone

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None):
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
            `(batch_size, num_labels)`, *optional*): hard class ids, or soft label distributions (FER+ votes,
            CutMix/Mixup targets). When given, the plain cross-entropy is returned as the loss.
        """
        base = self.baseline(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        log_probs = torch.log_softmax(self.classifier(base.pooler_output), dim=-1)
        # the reliability is a by-product for evaluation: no gradient flows through it
        reliability = 1.0 - normalized_entropy(log_probs.detach().exp())
        loss = None if labels is None else baseline_loss(log_probs, labels, BaselineObjective())
        output = BaselineImageClassifierOutput(loss=loss, logits=log_probs, reliability=reliability,
                                               hidden_states=base.hidden_states)
        return _as_requested(output, return_dict, self.config)


__all__ = [
    "BASELINE_AUTO_MAP",
    "BaselineForImageClassification",
    "BaselineImageClassifierOutput",
    "BaselineModel",
    "BaselineModelOutput",
    "BaselineObjective",
    "BaselinePreTrainedModel",
    "baseline_loss",
]
