"""Baseline model configuration: a timm backbone, an optional attention neck and multi-scale fusion, a plain classifier.

The baseline is what GReFEL is compared with, and what the seeds' other systems ("Enhanced SOTA EmotionNet", "CNN
transfer learning") are built on. With every option at its default it is the plain head: the backbone's pooled
features and one linear layer. Like `GReFELConfig`, the config describes the network only; how it is trained (label
smoothing, class weights) is set by the training arguments.

This file is saved next to checkpoints as remote code, so it imports only transformers, the standard library and its
flat siblings, never the `grefel_hf` package itself.
"""

from transformers import PreTrainedConfig

from .configuration_grefel import (
    check_backbone_kwargs,
    complete_label_maps,
    drop_retired_kwargs,
    set_label_maps,
)

ATTENTION_BLOCKS = ("se", "cbam", "eca", "coord")
"""The attention blocks of the neck, by timm's name (`timm.layers.get_attn`): squeeze-and-excitation, CBAM,
efficient channel attention, coordinate attention."""


class BaselineConfig(PreTrainedConfig):
    r"""
    Configuration of a baseline facial-expression classifier: a timm backbone, an optional attention neck on its
    feature maps, optional multi-scale fusion, and a plain classifier (one linear layer, or an MLP with BatchNorm and
    dropout). It describes the network only; how it is trained is set by the training arguments.

    Args:
        backbone (`str`, *optional*, defaults to `"tf_efficientnet_lite0"`):
            Name of the timm model used as feature extractor, built with `pretrained=False`: weights come from the
            checkpoint, or for a fresh model from a local file (see `grefel_hf.backbone_weights`).
        backbone_kwargs (`dict`, *optional*):
            Extra architecture settings for `timm.create_model` (for example `{"drop_path_rate": 0.1}`); only the
            keys of `ALLOWED_BACKBONE_KWARGS` are accepted. For backbones with a fixed input size (ViT, ...),
            `img_size` is filled in from `image_size` unless given here.
        attention_blocks (`list[str]`, *optional*, defaults to `[]`):
            Attention blocks applied in this order to each feature map before it is pooled, by timm's name: `"se"`
            (squeeze-and-excitation), `"cbam"`, `"eca"` (efficient channel attention) or `"coord"` (coordinate
            attention), each from `timm.layers`. `[]` leaves the maps as they are. They need a convolutional
            backbone, whose maps are (batch, channels, height, width).
        fusion_levels (`list[int]`, *optional*, defaults to `[]`):
            Indices into the backbone's feature pyramid (timm `feature_info`, the index space of
            `forward_intermediates`; negative indices count from the end) of intermediate maps that are pooled and
            concatenated with the final pooled features (multi-scale fusion). `[]` classifies the final features
            alone.
        classifier_hidden_sizes (`list[int]`, *optional*, defaults to `[]`):
            Hidden layer sizes of the classifier MLP, each layer Linear → BatchNorm → ReLU; `[]` makes the
            classifier one linear layer (the plain head).
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability before each linear layer of the classifier.
        image_size (`int`, *optional*, defaults to 224):
            Side of the square input image in pixels.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels (grayscale faces are converted to RGB by the image processor).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the classifier's linear layers (the timm backbone and
            attention blocks keep timm's own initialisation).

    Example:

    ```python
    >>> import torch
    >>> from grefel_hf import BaselineConfig, BaselineForImageClassification

    >>> config = BaselineConfig(backbone="resnet18", image_size=112, attention_blocks=["se", "coord"],
    ...                         fusion_levels=[3], classifier_hidden_sizes=[256], classifier_dropout=0.3)
    >>> model = BaselineForImageClassification(config).eval()
    >>> model(torch.randn(2, 3, 112, 112)).logits.shape  # log-probabilities over the 7 FER2013 classes
    torch.Size([2, 7])
    ```
    """

    model_type = "grefel_baseline"

    backbone: str = "tf_efficientnet_lite0"
    backbone_kwargs: dict | None = None
    attention_blocks: list[str] | None = None
    fusion_levels: list[int] | None = None
    classifier_hidden_sizes: list[int] | None = None
    classifier_dropout: float | int = 0.0
    image_size: int = 224
    num_channels: int = 3
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        drop_retired_kwargs(type(self).__name__, kwargs, {})
        set_label_maps(self, kwargs)
        for name in ("attention_blocks", "fusion_levels", "classifier_hidden_sizes"):
            if getattr(self, name) is None:
                setattr(self, name, [])
        if self.backbone_kwargs is None:
            self.backbone_kwargs = {}
        super().__post_init__(**kwargs)
        complete_label_maps(self)
        self.validate_baseline()

    def validate_baseline(self) -> None:
        """Raise a `ValueError` naming the field when a field has an impossible value."""
        name = type(self).__name__
        unknown = [block for block in self.attention_blocks if block not in ATTENTION_BLOCKS]
        if unknown or len(set(self.attention_blocks)) != len(self.attention_blocks):
            raise ValueError(f"{name}.attention_blocks must be distinct names from {ATTENTION_BLOCKS}, got "
                             f"{self.attention_blocks}")
        if len(set(self.fusion_levels)) != len(self.fusion_levels):
            raise ValueError(f"{name}.fusion_levels must not repeat a level, got {self.fusion_levels}")
        if any(not isinstance(size, int) or size < 1 for size in self.classifier_hidden_sizes):
            raise ValueError(f"{name}.classifier_hidden_sizes must be positive integers, got "
                             f"{self.classifier_hidden_sizes}")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"{name}.classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")
        for field in ("image_size", "num_channels"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{name}.{field} must be positive, got {getattr(self, field)!r}")
        if self.num_labels < 2:
            raise ValueError(f"the baseline needs at least 2 labels, got num_labels={self.num_labels}")
        check_backbone_kwargs(self)


__all__ = ["ATTENTION_BLOCKS", "BaselineConfig"]
