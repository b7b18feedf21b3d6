"""GReFEL model configuration: the network and how it predicts, nothing about how it is trained.

How a model is trained (loss weights, label smoothing, class weights, gradient routing, clipping) lives in the
training arguments and in `GReFELObjective` (`losses.py`), never in the saved config.

This file is saved next to checkpoints as remote code, so it imports only transformers and the standard
library, and never the `grefel_hf` package itself.
"""

import math

from transformers import PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

FER2013_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_GEOMETRY_VARIANTS = ("basic", "enhanced")
_RELIABILITY_VARIANTS = ("basic", "enhanced")
INFERENCE_MODES = ("corrected", "primary")
"""GReFEL's inference modes: the reliability-corrected distribution q, or the primary head's p alone."""
_PRIMARY_INPUTS = ("embedding", "backbone")

ALLOWED_BACKBONE_KWARGS = frozenset({
    "drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate", "patch_drop_rate",
    "img_size", "patch_size", "global_pool", "output_stride", "class_token", "reg_tokens", "no_embed_class",
    "dynamic_img_size", "dynamic_img_pad", "layer_scale_init_value", "init_values", "qkv_bias", "qk_norm",
    "window_size", "act_layer", "norm_layer", "se_layer",
})
"""Keyword arguments a saved config may pass to `timm.create_model`: architecture settings only. Anything else
(for example `checkpoint_path` or `pretrained_cfg_overlay`, which make timm read a file) is refused, so loading a
config never opens a file it names."""

RETIRED_FIELDS = {
    "classification_loss_weight": "the training argument --classification_loss_weight",
    "path_loss_weight": "the training argument --path_loss_weight",
    "anchor_margin_loss_weight": "the training argument --anchor_margin_loss_weight",
    "anchor_margin": "the training argument --anchor_margin",
    "center_loss_weight": "the training argument --center_loss_weight",
    "diversity_loss_weight": "the training argument --diversity_loss_weight",
    "diversity_margin": "the training argument --diversity_margin",
    "reliability_loss_weight": "the training argument --reliability_loss_weight",
    "label_smoothing": "the training argument --label_smoothing_factor",
    "class_weights": "the training argument --class_balance weights",
    "branch_gradient_scale": "the training argument --branch_gradient_scale",
    "blend_trains_primary": "the training argument --blend_trains_primary",
    "detach_confidences": "nothing: measured to change nothing, it was removed",
    "primary_pool_grid": "nothing: measured to change nothing, it was removed",
}
"""Fields of configs saved by earlier versions that only shaped training (or were removed), and where each went.
A saved config that still has them loads; they are ignored with a warning."""

_CONFIG_KWARGS = frozenset({
    "num_labels", "torch_dtype", "name_or_path", "_name_or_path", "_commit_hash", "output_attentions",
    "attn_implementation", "experts_implementation", "per_layer_config", "auto_map", "keys_to_ignore_at_inference",
    "model_type", "use_cache", "custom_pipelines",
})
"""Keys transformers itself passes to a config beside its fields; they are never "unknown"."""

_IS_REMOTE_COPY = __name__.startswith("transformers_modules")
"""True for the copy of this file that transformers loads from a saved folder (`trust_remote_code=True`)."""


def check_label_maps(config) -> None:
    """Refuse `id2label` maps whose ids are not exactly 0..N-1 or whose names repeat (the message names the field)."""
    ids = sorted(config.id2label)
    if ids != list(range(len(ids))):
        raise ValueError(f"{type(config).__name__}.id2label must have the ids 0..{len(ids) - 1} without gaps, got "
                         f"{ids}")
    names = [config.id2label[i] for i in ids]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{type(config).__name__}.id2label names a class more than once: {repeated}")
    if any(not isinstance(name, str) or not name for name in names):
        raise ValueError(f"{type(config).__name__}.id2label must map each id to a non-empty class name, got {names}")


def check_backbone_kwargs(config) -> None:
    """Refuse `backbone_kwargs` that are not a mapping of known architecture settings (`ALLOWED_BACKBONE_KWARGS`)."""
    kwargs = config.backbone_kwargs
    if not isinstance(kwargs, dict):
        raise ValueError(f"{type(config).__name__}.backbone_kwargs must be a mapping, got {type(kwargs).__name__}")
    refused = sorted(set(kwargs) - ALLOWED_BACKBONE_KWARGS)
    if refused:
        raise ValueError(f"{type(config).__name__}.backbone_kwargs may only hold timm architecture settings "
                         f"{sorted(ALLOWED_BACKBONE_KWARGS)}; refused {refused}")


def check_calibration(config) -> None:
    """Refuse a calibration temperature that is not a positive finite number, or a bias that is not one finite
    number per label (the message names the field)."""
    temperature = config.calibration_temperature
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
        raise ValueError(f"{type(config).__name__}.calibration_temperature must be a positive number, got "
                         f"{temperature!r}")
    bias = config.calibration_bias
    if bias is None:
        return
    if not isinstance(bias, list | tuple) or len(bias) != config.num_labels or any(
            isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b) for b in bias):
        raise ValueError(f"{type(config).__name__}.calibration_bias must be None or {config.num_labels} finite "
                         f"numbers, one per label, got {bias!r}")


def drop_retired_kwargs(config_name: str, kwargs: dict, retired: dict[str, str]) -> None:
    """Remove the `retired` keys from a config's extra `kwargs` in place, each with a warning saying where its setting
    went. Any other unknown key stays, as `PreTrainedConfig` keeps it (an attribute, saved again with the config),
    with one warning naming them, since a misspelt field would otherwise go unnoticed.

    `custom_pipelines` is removed too, except in the remote copy of this file. A saved folder names its pipeline
    classes (pipeline_grefel.py) there for machines without grefel_hf, where transformers reads them from the remote
    copy of the config. The package's own configs drop them: with grefel_hf imported, `pipeline()` takes the
    registered classes, without `trust_remote_code`.
    """
    if not _IS_REMOTE_COPY:
        kwargs.pop("custom_pipelines", None)
    for name in [key for key in kwargs if key in retired]:
        kwargs.pop(name)
        logger.warning("%s: ignoring the field %r, which is no longer part of the model config (see %s)",
                       config_name, name, retired[name])
    unknown = sorted(key for key in kwargs if key not in _CONFIG_KWARGS)
    if unknown:
        logger.warning("%s: keeping fields it does not use: %s", config_name, unknown)


def set_label_maps(config, kwargs: dict) -> None:
    """Give `config` the FER2013 classes when neither `id2label` nor `num_labels` was passed (before
    `PreTrainedConfig.__post_init__`)."""
    if config.id2label is None and "num_labels" not in kwargs:
        config.id2label = dict(enumerate(FER2013_EMOTIONS))


def complete_label_maps(config) -> None:
    """Check `id2label` and derive `label2id` from it (after `PreTrainedConfig.__post_init__`): transformers leaves
    `label2id` empty when only `id2label` or `num_labels` is given, so a saved config would lack it."""
    check_label_maps(config)
    config.label2id = {name: int(idx) for idx, name in config.id2label.items()}


class GReFELConfig(PreTrainedConfig):
    r"""
    Configuration of a GReFEL model (geometry-aware anchors plus reliability balancing on a timm backbone). It
    describes the network and how it predicts; how it is trained is set by the training arguments. The defaults
    describe the model that ships with the package (`grefel_hf/pretrained/grefel-ferplus`): EfficientNet-Lite0 at
    112 px, a 256-d embedding, the primary head one linear layer on the backbone's pooled features, no dropout;
    only its calibration, fitted to its weights, is not a default (the default is the identity). Configs saved by
    earlier versions hold every field, so they load as they were saved whatever the defaults.

    Args:
        backbone (`str`, *optional*, defaults to `"tf_efficientnet_lite0"`):
            Name of the timm model used as feature extractor. It is always built with `pretrained=False`: weights
            come from the GReFEL checkpoint, or for a fresh model from a local file (see
            `grefel_hf.backbone_weights`). Any timm model with `forward_intermediates` works.
        backbone_kwargs (`dict`, *optional*):
            Extra architecture settings for `timm.create_model` (for example `{"drop_path_rate": 0.1}`); only the
            keys of `ALLOWED_BACKBONE_KWARGS` are accepted. For backbones with a fixed input size (ViT, Swin, ...),
            `img_size` is filled in from `image_size` unless given here.
        image_size (`int`, *optional*, defaults to 112):
            Side of the square input image in pixels.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels. FER images are grayscale but are converted to RGB by the image processor, so
            ImageNet backbones can be reused.
        feature_levels (`list[int]`, *optional*):
            Indices into the backbone's feature pyramid (timm `feature_info`, the index space of
            `forward_intermediates`) of the intermediate maps that feed the multi-scale features, in addition to
            the backbone's final pooled features. Each map is average-pooled and projected to `embed_dim`.
            Defaults to two levels evenly spaced below the last one (for resnet/efficientnet: strides 8 and 16,
            for ViT-B: blocks 6 and 9); `[]` uses the final features only.
        embed_dim (`int`, *optional*, defaults to 256):
            Size of the fused embedding and of the anchors.
        anchors_per_class (`int`, *optional*, defaults to 10):
            Number of learnable anchors per class (K).
        anchor_init_std (`float`, *optional*, defaults to 0.1):
            Standard deviation of the random anchor initialisation (the reference code used zeros, which makes all
            anchors identical).
        anchor_temperature (`float`, *optional*, defaults to 0.1):
            Similarity temperature δ of the anchor path: s = softmax(-d / δ) over all anchors, with d the RMS
            distance (‖x − a‖₂ / √embed_dim) between an embedding and an anchor.
        primary_temperature (`float`, *optional*, defaults to 1.0):
            Temperature T of the primary head: p = softmax(z / T).
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of the attentive path's self-attention over the per-class tokens of one sample.
        primary_hidden_sizes (`list[int]`, *optional*, defaults to `[]`):
            Hidden layer sizes of the primary head MLP (GELU + dropout between layers); `[]` makes it one linear
            layer (the paper's head has one hidden layer of 256).
        primary_input (`str`, *optional*, defaults to `"backbone"`):
            What the primary head classifies: `"embedding"`, the fused GReFEL embedding x (the paper's design), or
            `"backbone"`, the backbone's final pooled features, as a plain linear head would. With `"backbone"` the
            anchors, the geometry attention and the reliability paths still work on x; only p reads the backbone
            directly, so a narrow `embed_dim` no longer limits it.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability in the projections, the primary head and the attention blocks.
        inference_mode (`str`, *optional*, defaults to `"corrected"`):
            Distribution returned at inference: `"corrected"` (q, after reliability balancing) or `"primary"` (p).
        geometry_variant (`str`, *optional*, defaults to `"basic"`):
            `"basic"`: single-head attention from each level token to the class anchors, with a residual.
            `"enhanced"`: `geometry_heads`-head attention, bounded per-sample anchor refinement, LayerNorm + GELU
            feed-forward and residuals.
        geometry_heads (`int`, *optional*, defaults to 8):
            Attention heads of the enhanced geometry module.
        anchor_refinement_scale (`float`, *optional*, defaults to 0.1):
            Bound of the enhanced per-sample anchor refinement: a' = a + scale · tanh(Δ).
        reliability_variant (`str`, *optional*, defaults to `"basic"`):
            `"basic"`: the primary confidence is c = 1 − H(p)/log C. `"enhanced"`: c comes from an MLP over
            entropy, max-probability, agreement and Monte Carlo dropout confidence measures.
        reliability_hidden_sizes (`list[int]`, *optional*, defaults to `[32, 16]`):
            Hidden sizes of the enhanced reliability MLP.
        mc_dropout_samples (`int`, *optional*, defaults to 4):
            Monte Carlo dropout samples of the enhanced reliability module. At inference the dropout masks are drawn
            from a fixed seed and shared by every sample, so predictions stay deterministic and never depend on the
            rest of the batch.
        mc_dropout_rate (`float`, *optional*, defaults to 0.1):
            Dropout probability of the Monte Carlo samples.
        mc_dropout_seed (`int`, *optional*, defaults to 0):
            Seed of the inference-time Monte Carlo dropout masks.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of GReFEL's own linear layers (the timm backbone keeps its
            own initialisation).
        calibration_temperature (`float`, *optional*, defaults to 1.0):
            Temperature T of the post-hoc calibration, fitted on a validation split (`grefel-hf calibrate`, or at the
            end of `train_hf.py`): the model's `logits` are log_softmax(log(final) / T + b), with `final` the
            distribution `inference_mode` names and b `calibration_bias`. Above 1 softens the probabilities, below 1
            sharpens them; a temperature alone never changes the predicted class. 1.0 with no bias leaves the
            distribution exactly as it is (configs saved before calibration existed load that way).
        calibration_bias (`list[float]`, *optional*):
            Per-class bias b of the calibration, one value per label, added to the temperature-scaled
            log-probabilities before they are renormalised (vector scaling with a shared scale; post-hoc logit
            adjustment by class priors is a bias too). Unlike the temperature, a bias can change the predicted class.
            None is no bias.

    Example:

    ```python
    >>> from grefel_hf import GReFELConfig, GReFELForImageClassification

    >>> config = GReFELConfig()  # the bundled model's architecture, FER2013's 7 classes
    >>> model = GReFELForImageClassification(config)
    >>> (config.backbone, config.image_size, model.config.id2label[3])
    ('tf_efficientnet_lite0', 112, 'happy')
    ```
    """

    model_type = "grefel"

    backbone: str = "tf_efficientnet_lite0"
    backbone_kwargs: dict | None = None
    image_size: int = 112
    num_channels: int = 3
    feature_levels: list[int] | None = None
    embed_dim: int = 256
    anchors_per_class: int = 10
    anchor_init_std: float | int = 0.1
    anchor_temperature: float | int = 0.1
    primary_temperature: float | int = 1.0
    num_attention_heads: int = 8
    primary_hidden_sizes: list[int] | None = None
    primary_input: str = "backbone"
    dropout: float | int = 0.0
    inference_mode: str = "corrected"
    geometry_variant: str = "basic"
    geometry_heads: int = 8
    anchor_refinement_scale: float | int = 0.1
    reliability_variant: str = "basic"
    reliability_hidden_sizes: list[int] | None = None
    mc_dropout_samples: int = 4
    mc_dropout_rate: float | int = 0.1
    mc_dropout_seed: int = 0
    initializer_range: float = 0.02
    calibration_temperature: float | int = 1.0
    calibration_bias: list[float] | None = None

    def __post_init__(self, **kwargs):
        if kwargs.get("primary_pool_grid", 1) not in (1, None):
            raise ValueError(f"this config was saved with primary_pool_grid={kwargs['primary_pool_grid']}, whose "
                             "primary head this version of GReFEL no longer builds; retrain with the default")
        drop_retired_kwargs(type(self).__name__, kwargs, RETIRED_FIELDS)
        set_label_maps(self, kwargs)
        if self.primary_hidden_sizes is None:
            self.primary_hidden_sizes = []
        if self.reliability_hidden_sizes is None:
            self.reliability_hidden_sizes = [32, 16]
        if self.backbone_kwargs is None:
            self.backbone_kwargs = {}
        # Auxiliary outputs are not gathered by a plain Trainer's evaluation loop: only logits and reliability are.
        kwargs.setdefault("keys_to_ignore_at_inference", [
            "primary_probs", "corrected_probs", "anchor_probs", "attentive_probs", "confidences", "embeddings",
            "hidden_states", "loss_parts",
        ])
        super().__post_init__(**kwargs)
        complete_label_maps(self)
        self.validate_grefel()

    def validate_grefel(self) -> None:
        """Raise a `ValueError` naming the field when a GReFEL-specific field has an impossible value."""
        choices = {
            "geometry_variant": _GEOMETRY_VARIANTS,
            "reliability_variant": _RELIABILITY_VARIANTS,
            "inference_mode": INFERENCE_MODES,
            "primary_input": _PRIMARY_INPUTS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GReFELConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = ("embed_dim", "anchors_per_class", "image_size", "num_channels", "num_attention_heads",
                    "geometry_heads", "anchor_temperature", "primary_temperature")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"GReFELConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("num_attention_heads", "geometry_heads"):
            if self.embed_dim % getattr(self, name):
                raise ValueError(f"GReFELConfig.embed_dim ({self.embed_dim}) must be divisible by {name} "
                                 f"({getattr(self, name)})")
        if self.num_labels < 2:
            raise ValueError(f"GReFEL needs at least 2 labels, got num_labels={self.num_labels}")
        for name in ("dropout", "mc_dropout_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"GReFELConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.reliability_variant == "enhanced" and self.mc_dropout_samples < 1:
            raise ValueError("GReFELConfig.mc_dropout_samples must be >= 1 for the enhanced reliability variant, "
                             f"got {self.mc_dropout_samples}")
        check_backbone_kwargs(self)
        check_calibration(self)


__all__ = ["ALLOWED_BACKBONE_KWARGS", "FER2013_EMOTIONS", "GReFELConfig", "INFERENCE_MODES", "RETIRED_FIELDS"]
