"""GReFEL model configuration.

This file is saved next to checkpoints as remote code, so it imports only transformers and the standard
library, and never the `grefel_hf` package itself.
"""

from transformers import PreTrainedConfig

FER2013_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_GEOMETRY_VARIANTS = ("basic", "enhanced")
_RELIABILITY_VARIANTS = ("basic", "enhanced")
INFERENCE_MODES = ("corrected", "primary")
"""GReFEL's inference modes: the reliability-corrected distribution q, or the primary head's p alone."""
_PRIMARY_INPUTS = ("embedding", "backbone")


class GReFELConfig(PreTrainedConfig):
    r"""
    Configuration of a GReFEL model (geometry-aware anchors plus reliability balancing on a timm backbone).

    Args:
        backbone (`str`, *optional*, defaults to `"tf_efficientnet_lite0"`):
            Name of the timm model used as feature extractor. It is always built with `pretrained=False`: weights
            come from the GReFEL checkpoint, or for a fresh model from a local file (see
            `grefel_hf.backbone_weights`). Any timm model with `forward_intermediates` works.
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model` (for example `{"drop_path_rate": 0.1}`). For backbones
            with a fixed input size (ViT, Swin, ...), `img_size` is filled in from `image_size` unless given here.
        image_size (`int`, *optional*, defaults to 224):
            Side of the square input image in pixels.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels. FER images are grayscale but are converted to RGB by the image processor, so
            ImageNet backbones can be reused.
        feature_levels (`list[int]`, *optional*):
            Indices into the backbone's feature pyramid (timm `feature_info`, the index space of
            `forward_intermediates`) of the intermediate maps that feed the multi-scale features, in addition to
            the backbone's final pooled features. Each map is average-pooled and projected to `embed_dim`.
            Defaults to two levels evenly spaced below the last one (for resnet/efficientnet: strides 8 and 16,
            for ViT-B: blocks 6 and 9).
        embed_dim (`int`, *optional*, defaults to 512):
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
        primary_hidden_sizes (`list[int]`, *optional*, defaults to `[256]`):
            Hidden layer sizes of the primary head MLP (GELU + dropout between layers).
        primary_input (`str`, *optional*, defaults to `"embedding"`):
            What the primary head classifies: `"embedding"`, the fused GReFEL embedding x (the paper's design), or
            `"backbone"`, the backbone's final pooled features, as a plain linear head would. With `"backbone"` the
            anchors, the geometry attention and the reliability paths still work on x; only p reads the backbone
            directly, so a narrow `embed_dim` no longer limits it.
        primary_pool_grid (`int`, *optional*, defaults to 1):
            With `primary_input="backbone"`, the side of the grid the backbone's final feature map is average-pooled
            into for the primary head. 1 is global average pooling, the backbone's own pooling. 2 keeps the face's
            coarse layout (upper and lower, left and right halves), so the head sees where an activation is: its
            input then has `backbone_num_features · grid²` values. Needs a backbone whose final features are a
            spatial map (CNNs; not ViT tokens). Values above 1 need `primary_input="backbone"`.
        branch_gradient_scale (`float`, *optional*, defaults to 1.0):
            Scale, in [0, 1], of the gradient that GReFEL's own branch (the level projections, the geometry attention,
            the anchors' paths g and t, and the center loss) sends back into the backbone. 1 trains everything end to
            end, as the paper does. 0 stops that gradient: the backbone then learns from the primary head and the
            final classification only, and the branch learns to read the backbone's features as they are. The
            forward pass and the predictions are the same for every value. 0 needs `primary_input="backbone"`:
            with the embedding as the primary head's input, nothing would train the backbone.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout probability in the projections, the primary head and the attention blocks.
        detach_confidences (`bool`, *optional*, defaults to `False`):
            Stop the gradient through the confidences c, c_g and c_t where they weight the blends r and q (the
            distributions themselves still get their gradients). With the gradient, the loss on a face the primary
            head gets wrong can also fall by making that head less sure rather than right; detaching closes that
            route. Training only: predictions are the same.
            The enhanced reliability MLP then learns from `reliability_loss_weight` alone, so that must be > 0.
        blend_trains_primary (`bool`, *optional*, defaults to `True`):
            Whether the cross-entropy on the final distribution (the trust-ramp blend of p and q) trains the primary
            head. With `True`, the paper's end-to-end objective, that loss reaches p scaled by (1 − τ) + τ·c, so faces
            the head is unsure of (often those of the rare classes) train it less than a plain cross-entropy would.
            `False` detaches p where it enters q and the blend, and in its confidence c: p then learns from its own
            path cross-entropy alone, as a plain linear head would, and the loss on the blend teaches the anchor and
            attentive paths and their confidences to correct it. Training only: predictions are the same. Needs
            `path_loss_weight` > 0, which is what trains p then.
        inference_mode (`str`, *optional*, defaults to `"corrected"`):
            Distribution returned at inference: `"corrected"` (q, after reliability balancing) or `"primary"` (p).
        classification_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the cross-entropy on the final distribution.
        path_loss_weight (`float`, *optional*, defaults to 0.5):
            Weight of the cross-entropy of each path's own distribution (primary p, anchor path g, attentive path
            t), averaged. Without it the anchor and attentive paths are only trained through q, stay biased while
            the primary head is unsure, and pull q's predictions toward their bias (0 disables it).
        anchor_margin_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of the bounded hinge loss that pushes anchors of different classes at least `anchor_margin` apart.
        anchor_margin (`float`, *optional*, defaults to 1.0):
            Margin of the anchor separation loss, in RMS distance units.
        center_loss_weight (`float`, *optional*, defaults to 0.05):
            Weight of the loss that pulls each embedding toward the nearest anchor of its class, weighted by the
            primary confidence.
        diversity_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the geometry diversity loss that keeps the anchors of one class from collapsing (seed
            "enhanced" variant; 0 disables it).
        diversity_margin (`float`, *optional*, defaults to 0.5):
            Minimum RMS distance between two anchors of the same class below which the diversity loss is active.
        reliability_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the reliability target loss: binary cross-entropy between the primary confidence and whether
            the primary prediction is correct (seed "enhanced" variant; 0 disables it).
        label_smoothing (`float`, *optional*, defaults to 0.11):
            Label smoothing applied to hard labels. Soft labels (FER+ vote distributions, CutMix/Mixup targets) are
            used as given: mixing collators fold smoothing into their targets themselves.
        class_weights (`list[float]`, *optional*):
            Per-class weights of the classification loss (for example inverse class frequencies, the paper's answer to
            imbalance). `None` weighs all classes equally.
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

    Example:

    ```python
    >>> from grefel_hf import GReFELConfig, GReFELForImageClassification

    >>> config = GReFELConfig(backbone="resnet18", image_size=112)
    >>> model = GReFELForImageClassification(config)
    >>> model.config.id2label[3]
    'happy'
    ```
    """

    model_type = "grefel"

    backbone: str = "tf_efficientnet_lite0"
    backbone_kwargs: dict | None = None
    image_size: int = 224
    num_channels: int = 3
    feature_levels: list[int] | None = None
    embed_dim: int = 512
    anchors_per_class: int = 10
    anchor_init_std: float | int = 0.1
    anchor_temperature: float | int = 0.1
    primary_temperature: float | int = 1.0
    num_attention_heads: int = 8
    primary_hidden_sizes: list[int] | None = None
    primary_input: str = "embedding"
    primary_pool_grid: int = 1
    branch_gradient_scale: float | int = 1.0
    dropout: float | int = 0.1
    detach_confidences: bool = False
    blend_trains_primary: bool = True
    inference_mode: str = "corrected"
    classification_loss_weight: float | int = 1.0
    path_loss_weight: float | int = 0.5
    anchor_margin_loss_weight: float | int = 0.1
    anchor_margin: float | int = 1.0
    center_loss_weight: float | int = 0.05
    diversity_loss_weight: float | int = 0.0
    diversity_margin: float | int = 0.5
    reliability_loss_weight: float | int = 0.0
    label_smoothing: float | int = 0.11
    class_weights: list[float] | None = None
    geometry_variant: str = "basic"
    geometry_heads: int = 8
    anchor_refinement_scale: float | int = 0.1
    reliability_variant: str = "basic"
    reliability_hidden_sizes: list[int] | None = None
    mc_dropout_samples: int = 4
    mc_dropout_rate: float | int = 0.1
    mc_dropout_seed: int = 0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(FER2013_EMOTIONS))
        if self.primary_hidden_sizes is None:
            self.primary_hidden_sizes = [256]
        if self.reliability_hidden_sizes is None:
            self.reliability_hidden_sizes = [32, 16]
        if self.backbone_kwargs is None:
            self.backbone_kwargs = {}
        # Auxiliary outputs are not gathered by Trainer's evaluation loop: only logits and reliability are.
        kwargs.setdefault(
            "keys_to_ignore_at_inference",
            ["primary_probs", "corrected_probs", "confidences", "embeddings", "loss_parts"],
        )
        super().__post_init__(**kwargs)
        # transformers leaves label2id empty when only id2label (or num_labels) is given: always keep both.
        self.label2id = {name: int(idx) for idx, name in self.id2label.items()}
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
        if self.detach_confidences and self.reliability_variant == "enhanced" and not self.reliability_loss_weight:
            raise ValueError("GReFELConfig.detach_confidences with reliability_variant='enhanced' needs "
                             "reliability_loss_weight > 0: otherwise nothing trains the reliability MLP")
        for name in ("num_attention_heads", "geometry_heads"):
            if self.embed_dim % getattr(self, name):
                raise ValueError(f"GReFELConfig.embed_dim ({self.embed_dim}) must be divisible by {name} "
                                 f"({getattr(self, name)})")
        if self.num_labels < 2:
            raise ValueError(f"GReFEL needs at least 2 labels, got num_labels={self.num_labels}")
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(f"GReFELConfig.class_weights has {len(self.class_weights)} entries but the model has "
                             f"{self.num_labels} labels")
        if self.primary_pool_grid < 1:
            raise ValueError(f"GReFELConfig.primary_pool_grid must be >= 1, got {self.primary_pool_grid!r}")
        if self.primary_pool_grid > 1 and self.primary_input != "backbone":
            raise ValueError("GReFELConfig.primary_pool_grid > 1 needs primary_input='backbone': the grid pools the "
                             f"backbone's feature map, which a primary head on the embedding never reads (got "
                             f"primary_pool_grid={self.primary_pool_grid}, primary_input={self.primary_input!r})")
        if not 0.0 <= self.branch_gradient_scale <= 1.0:
            raise ValueError("GReFELConfig.branch_gradient_scale must be in [0, 1], got "
                             f"{self.branch_gradient_scale!r}")
        if self.branch_gradient_scale == 0 and self.primary_input == "embedding":
            raise ValueError("GReFELConfig.branch_gradient_scale=0 with primary_input='embedding' leaves nothing to "
                             "train the backbone: the primary head reads the branch's embedding. Use "
                             "primary_input='backbone' or a scale above 0")
        if not self.blend_trains_primary and not self.path_loss_weight:
            raise ValueError("GReFELConfig.blend_trains_primary=False needs path_loss_weight > 0: with the blend "
                             "detached from the primary head, its own path cross-entropy is all that trains it")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"GReFELConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.reliability_variant == "enhanced" and self.mc_dropout_samples < 1:
            raise ValueError("GReFELConfig.mc_dropout_samples must be >= 1 for the enhanced reliability variant, "
                             f"got {self.mc_dropout_samples}")


__all__ = ["GReFELConfig", "FER2013_EMOTIONS", "INFERENCE_MODES"]
