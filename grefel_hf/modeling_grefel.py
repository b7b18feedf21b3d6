"""GReFEL: geometry-aware anchors plus reliability balancing on a timm backbone.

Reads top to bottom in data-flow order:
backbone helper → multi-scale level projections → geometry-aware anchor attention → fusion
→ primary head → reliability balancing (anchor path, attentive path, confidences) → PreTrainedModels.

This file is saved next to checkpoints as remote code: it imports only torch, timm, transformers and its flat
siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import timm
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_grefel import GReFELConfig, check_backbone_kwargs
from .losses import GReFELLoss, GReFELObjective, normalized_entropy, rms_distance

logger = logging.get_logger(__name__)

_LOG_EPS = 1e-12

GREFEL_AUTO_MAP = {
    "AutoConfig": "configuration_grefel.GReFELConfig",
    "AutoModel": "modeling_grefel.GReFELModel",
    "AutoModelForImageClassification": "modeling_grefel.GReFELForImageClassification",
}
"""The remote-code `auto_map` of a saved GReFEL folder."""


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class GReFELModelOutput(ModelOutput):
    """
    Output of [`GReFELModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            The fused multi-scale embedding x of each image.
        level_embeddings (`torch.FloatTensor` of shape `(batch_size, num_levels, embed_dim)`):
            The per-level embeddings after geometry-aware anchor attention, before fusion.
        sample_anchors (`torch.FloatTensor` of shape `(batch_size, num_labels * anchors_per_class, embed_dim)`):
            Per-sample refined anchors. Only returned by the enhanced geometry variant.
        pooled_features (`torch.FloatTensor` of shape `(batch_size, backbone_num_features)`):
            The backbone's final pooled features, before GReFEL's projections.
        feature_map (`torch.FloatTensor`):
            The backbone's final features before pooling: `(batch_size, backbone_num_features, height, width)` for
            CNNs, the backbone's own token layout for others.
    """

    embeddings: torch.FloatTensor | None = None
    level_embeddings: torch.FloatTensor | None = None
    sample_anchors: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None
    feature_map: torch.FloatTensor | None = None


@dataclass
class GReFELImageClassifierOutput(ModelOutput):
    """
    Output of [`GReFELForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            The weighted GReFEL objective (see `grefel_hf.losses.GReFELLoss`).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Log of the final distribution: `softmax(logits) == exp(logits)`. At inference the final distribution is
            the corrected q (or the primary p when `config.inference_mode == "primary"`); in training it is the
            trust-ramp blend (1 − τ)·p + τ·q.
        reliability (`torch.FloatTensor` of shape `(batch_size,)`):
            Per-sample reliability score in [0, 1]: one minus the normalised entropy of the final distribution.
        primary_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The primary head's distribution p.
        corrected_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The reliability-balanced distribution q = c·p + (1 − c)·r.
        confidences (`torch.FloatTensor` of shape `(batch_size, 3)`):
            The confidences (c, c_g, c_t) of the primary head, the anchor path and the attentive path, in [0, 1].
        embeddings (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            The fused embedding x.
        loss_parts (`dict[str, torch.FloatTensor]`, returned when `labels` is given):
            The unweighted value of every active loss term, for logging.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None
    primary_probs: torch.FloatTensor | None = None
    corrected_probs: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    loss_parts: dict[str, torch.FloatTensor] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Backbone and multi-scale features
# ---------------------------------------------------------------------------------------------------------------


def scale_gradient(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    """`tensor` unchanged in the forward pass; the gradient flowing back through it is multiplied by `scale`."""
    if scale == 1:
        return tensor
    if scale == 0:
        return tensor.detach()
    return tensor.detach() + scale * (tensor - tensor.detach())


def create_timm_backbone(config) -> nn.Module:
    """Build the timm backbone named by `config.backbone`, headless and with `pretrained=False`.

    Weights never come from timm's downloader: they come from the GReFEL checkpoint, or for a fresh model from a
    local file (`grefel_hf.backbone_weights`).
    """
    name = config.backbone
    check_backbone_kwargs(config)  # a saved config must never make timm read a file it names
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0].split('_')[0]}*")[:8]
        raise ValueError(f"Unknown timm backbone {name!r}. Pass a name from `timm.list_models()`; similar names: {close}")
    kwargs = dict(config.backbone_kwargs or {})
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size and "img_size" not in kwargs:
        kwargs["img_size"] = config.image_size  # ViT-like models must know the input size at construction
    for reserved in ("pretrained", "num_classes", "in_chans"):
        if reserved in kwargs:
            raise ValueError(f"backbone_kwargs must not set {reserved!r}: GReFEL controls it")
    backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=config.num_channels, **kwargs)
    if not hasattr(backbone, "forward_intermediates"):
        raise ValueError(f"timm backbone {name!r} has no `forward_intermediates`, which GReFEL needs for its "
                         "multi-scale features; choose another backbone")
    return backbone


def resolve_feature_levels(config, num_levels: int) -> list[int]:
    """The intermediate pyramid levels that feed GReFEL besides the final pooled features (see the config doc)."""
    if config.feature_levels is None:
        step = max(1, num_levels // 4)
        last = num_levels - 1
        return sorted({max(0, last - 2 * step), max(0, last - step)} - {last})
    levels = []
    for level in config.feature_levels:
        resolved = level + num_levels if level < 0 else level
        if not 0 <= resolved < num_levels:
            raise ValueError(f"feature_levels entry {level} is out of range: backbone {config.backbone!r} has "
                             f"{num_levels} feature levels (valid: {-num_levels}..{num_levels - 1})")
        levels.append(resolved)
    if len(set(levels)) != len(levels):
        raise ValueError(f"feature_levels must not repeat a level, got {config.feature_levels}")
    return levels


class GReFELLevelProjection(nn.Module):
    """Average-pool one feature map (or take an already pooled vector) and project it to `embed_dim`."""

    def __init__(self, in_dim: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return self.dropout(self.proj(self.norm(features)))


# ---------------------------------------------------------------------------------------------------------------
# Geometry-aware anchor attention and fusion
# ---------------------------------------------------------------------------------------------------------------


class GReFELAttention(nn.Module):
    """Multi-head attention whose queries or keys may be shared by the whole batch.

    Queries and keys/values are (B, L, D) per sample or (L, D) shared. Shared anchors are projected once instead of
    once per sample, which keeps GReFEL's heads cheap next to the backbone. Each sample only ever attends within its
    own tokens (or to the shared anchors), so predictions never depend on the rest of the batch.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., L, D) → (..., heads, L, head_dim)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.attend(self.q_proj(queries), self.k_proj(keys), self.v_proj(keys))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention from already projected queries, keys and values (each (..., L, D)), then the output projection."""
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        weights = torch.softmax((q @ k.transpose(-1, -2)) * self.head_dim**-0.5, dim=-1)
        out = self.dropout(weights) @ v  # broadcasting pairs shared and per-sample operands
        return self.out_proj(out.transpose(-3, -2).flatten(-2))


class GReFELGeometryAttention(nn.Module):
    """Each level token attends to the class anchors, so the features are read in the anchors' geometry.

    The basic variant is single-head attention with a residual. The enhanced variant (seed "enhanced geometry")
    uses `geometry_heads` heads, refines the anchors per sample within a bound (a' = a + s·tanh(Δ), where the
    anchors attend to the sample's own level tokens), and adds a LayerNorm + GELU feed-forward block.
    """

    def __init__(self, config):
        super().__init__()
        dim = config.embed_dim
        self.enhanced = config.geometry_variant == "enhanced"
        heads = config.geometry_heads if self.enhanced else 1
        self.refinement_scale = config.anchor_refinement_scale
        self.token_norm = nn.LayerNorm(dim)
        self.anchor_norm = nn.LayerNorm(dim)
        self.attention = GReFELAttention(dim, heads, config.dropout)
        if self.enhanced:
            self.refine_attention = GReFELAttention(dim, heads, config.dropout)
            self.ffn_norm = nn.LayerNorm(dim)
            self.ffn = nn.Sequential(
                nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(2 * dim, dim)
            )

    def forward(self, tokens: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, L, D), anchors (N, D) → updated tokens and, for the enhanced variant, anchors (B, N, D)."""
        normed_tokens = self.token_norm(tokens)
        keys, sample_anchors = anchors, None
        if self.enhanced:
            # the shared anchors query this sample's own level tokens; the refinement is bounded by tanh
            delta = self.refine_attention(self.anchor_norm(anchors), normed_tokens)
            keys = sample_anchors = anchors + self.refinement_scale * torch.tanh(delta)
        tokens = tokens + self.attention(normed_tokens, self.anchor_norm(keys))
        if self.enhanced:
            tokens = tokens + self.ffn(self.ffn_norm(tokens))
        return tokens, sample_anchors


class GReFELFusion(nn.Module):
    """Concatenate the level tokens and project them to one embedding."""

    def __init__(self, num_levels: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(num_levels * dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens.flatten(1)))


# ---------------------------------------------------------------------------------------------------------------
# Primary head and reliability balancing
# ---------------------------------------------------------------------------------------------------------------


class GReFELPrimaryHead(nn.Module):
    """MLP from its input (the embedding, or the backbone's pooled features: `config.primary_input`) to class
    logits z; the last hidden layer is exposed for Monte Carlo dropout."""

    def __init__(self, config, in_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for hidden in config.primary_hidden_sizes:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(config.dropout)]
            in_dim = hidden
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_dim, config.num_labels)


class GReFELReliabilityBalancing(nn.Module):
    """The anchor path g and the attentive path t, their confidences, and their blend r.

    - anchor path: s = softmax over all anchors of (−d/δ), g_i = Σ_j s_ij, with d the RMS distance to each anchor;
    - attentive path: self-attention over this sample's own per-class tokens (the class prototype shifted by the
      sample embedding), scored to t. Tokens never mix across samples (the reference code's 2-D attention did);
    - r = (c_g·g + c_t·t) / (c_g + c_t) with c = 1 − H/log C.
    """

    def __init__(self, config):
        super().__init__()
        dim = config.embed_dim
        self.num_labels = config.num_labels
        self.temperature = config.anchor_temperature
        self.token_proj = nn.Linear(dim, dim)
        self.token_norm = nn.LayerNorm(dim)
        self.attention = GReFELAttention(dim, config.num_attention_heads, config.dropout)
        self.out_norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def anchor_path(self, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """x (B, D), anchors (N, D) or per-sample (B, N, D) with N = C·K → g (B, C)."""
        distances = rms_distance(x.unsqueeze(1), anchors).squeeze(1)
        similarity = torch.softmax(-distances / self.temperature, dim=-1)
        return similarity.view(x.shape[0], self.num_labels, -1).sum(dim=-1)

    def attentive_path(self, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """x (B, D), anchors (N, D) or (B, N, D) → t (B, C)."""
        prototypes = anchors.unflatten(-2, (self.num_labels, -1)).mean(dim=-2)  # (C, D) or (B, C, D)
        sample_part = self.token_proj(x).unsqueeze(1)
        tokens = self.token_norm(sample_part + prototypes)
        if prototypes.dim() == 2:
            attended = self.attention.attend(*self._shared_prototype_projections(sample_part, prototypes))
        else:
            attended = self.attention(tokens, tokens)
        tokens = self.out_norm(tokens + attended)
        return torch.softmax(self.score(tokens).squeeze(-1), dim=-1)

    def _shared_prototype_projections(
        self, sample_part: torch.Tensor, prototypes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The attention's q, k, v of the per-class tokens LayerNorm(u + P_c), without projecting B·C tokens.

        With shared prototypes P (C, D) and per-sample parts u (B, 1, D), a token's centred value is the centred u
        plus the centred P_c, and LayerNorm only rescales it by the token's own 1/σ. The projection W is linear, so
        W·token = (1/σ)·(W(γ⊙ū) + W(γ⊙P̄_c)) + W·β + b: B + C projected rows instead of B·C, the same values up to
        float rounding (the attentive path was the head's largest cost on CPU).
        """
        attention, norm = self.attention, self.token_norm
        weight = torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight])
        bias = torch.cat([attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias])
        centred_sample = sample_part - sample_part.mean(dim=-1, keepdim=True)
        centred_prototypes = prototypes - prototypes.mean(dim=-1, keepdim=True)
        variance = (centred_sample + centred_prototypes).pow(2).mean(dim=-1, keepdim=True)  # (B, C, 1)
        projected = (nn.functional.linear(norm.weight * centred_sample, weight)
                     + nn.functional.linear(norm.weight * centred_prototypes, weight))
        qkv = torch.rsqrt(variance + norm.eps) * projected + nn.functional.linear(norm.bias, weight, bias)
        return qkv.chunk(3, dim=-1)

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return r (B, C), the anchor and attentive distributions g and t (B, C), and c_g, c_t (B,)."""
        g = self.anchor_path(x, anchors)
        t = self.attentive_path(x, anchors)
        c_g = 1.0 - normalized_entropy(g)
        c_t = 1.0 - normalized_entropy(t)
        weight_sum = (c_g + c_t).clamp_min(1e-6).unsqueeze(-1)
        r = (c_g.unsqueeze(-1) * g + c_t.unsqueeze(-1) * t) / weight_sum
        # Both confidences can be ~0 at once (two uniform paths); then r falls back to their plain average.
        r = torch.where(weight_sum > 1e-6, r, 0.5 * (g + t))
        return r, g, t, c_g, c_t


def distribution_agreement(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """1 − Jensen-Shannon divergence / log 2 between two distributions over the last axis, in [0, 1]."""
    mean = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (a.clamp_min(_LOG_EPS).log() - b.clamp_min(_LOG_EPS).log())).sum(dim=-1)

    js = 0.5 * (kl(p, mean) + kl(q, mean))
    return (1.0 - js / torch.log(torch.tensor(2.0, device=p.device))).clamp(0.0, 1.0)


class GReFELPrimaryConfidence(nn.Module):
    """Confidence c in the primary distribution: how much of q comes from p rather than from r.

    Basic variant: c = 1 − H(p)/log C. Enhanced variant (seed "enhanced reliability"): an MLP over entropy,
    max-probability and agreement measures of p and r, and the agreement of Monte Carlo dropout samples of p.
    """

    num_measures = 6

    def __init__(self, config):
        super().__init__()
        self.enhanced = config.reliability_variant == "enhanced"
        if self.enhanced:
            layers: list[nn.Module] = []
            in_dim = self.num_measures
            for hidden in config.reliability_hidden_sizes:
                layers += [nn.Linear(in_dim, hidden), nn.GELU()]
                in_dim = hidden
            layers.append(nn.Linear(in_dim, 1))
            self.mlp = nn.Sequential(*layers)

    def forward(self, p: torch.Tensor, r: torch.Tensor, mc_probs: torch.Tensor | None) -> torch.Tensor:
        """p, r (B, C); mc_probs (S, B, C) for the enhanced variant → c (B,)."""
        if not self.enhanced:
            return 1.0 - normalized_entropy(p)
        mc_agreement = distribution_agreement(mc_probs, mc_probs.mean(dim=0, keepdim=True)).mean(dim=0)
        measures = torch.stack(
            [1.0 - normalized_entropy(p), p.max(dim=-1).values, 1.0 - normalized_entropy(r), r.max(dim=-1).values,
             distribution_agreement(p, r), mc_agreement],
            dim=-1,
        )
        return torch.sigmoid(self.mlp(measures)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------------
# PreTrainedModels
# ---------------------------------------------------------------------------------------------------------------


def load_naming_the_weights(load, pretrained_model_name_or_path, *args, **kwargs):
    """Call `load(pretrained_model_name_or_path, ...)`; a truncated or corrupt safetensors file becomes an `OSError`
    naming it."""
    try:
        return load(pretrained_model_name_or_path, *args, **kwargs)
    except SafetensorError as err:
        where = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(where):
            where = os.path.join(where, kwargs.get("subfolder") or "", "model.safetensors")
        raise OSError(f"{where}: the weights file is truncated or corrupt ({err}); save or download it again") from err


class GReFELPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the shared class attributes of the GReFEL models."""

    config_class = GReFELConfig
    base_model_prefix = "grefel"
    main_input_name = "pixel_values"
    input_modalities = "image"
    supports_gradient_checkpointing = True
    _no_split_modules = []
    # Our forward takes no **kwargs and our loss is a per-batch mean: Trainer must scale it for accumulation.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise GReFEL's own layers; leave timm's backbone weights alone (HF_NOTES §1.3)."""
        if getattr(module, "_grefel_backbone", False):
            # Non-persistent buffers (e.g. Swin's relative position index) are not in checkpoints: rebuild them.
            if hasattr(module, "init_non_persistent_buffers"):
                module.init_non_persistent_buffers()
            return
        std = self.config.initializer_range
        if isinstance(module, GReFELModel):
            init.normal_(module.anchors, std=self.config.anchor_init_std)
            init.normal_(module.level_embeddings, std=std)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with a truncated or corrupt weights file reported as an `OSError` that
        names the file (safetensors' own error names none)."""
        return load_naming_the_weights(super().from_pretrained, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; when registered for remote code, record every GReFEL Auto class in `auto_map`.

        transformers only records the class being saved, so `AutoModel.from_pretrained(..., trust_remote_code=True)`
        would fail on a saved `GReFELForImageClassification` folder without this (HF_NOTES §2.1).
        """
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **GREFEL_AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None,
                                    every_n_layers: int = 1) -> None:
        """Activation checkpointing is delegated to timm's own `set_grad_checkpointing` on the backbone."""
        base = getattr(self, self.base_model_prefix, self)
        base.backbone.set_grad_checkpointing(enable)


class GReFELModel(GReFELPreTrainedModel):
    """The GReFEL feature extractor: timm backbone → multi-scale levels → geometry-aware anchor attention → fusion.

    It also owns the class anchors (num_labels, anchors_per_class, embed_dim), shared by the geometry attention and
    the reliability balancing of [`GReFELForImageClassification`].
    """

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        self.backbone = create_timm_backbone(config)
        for module in self.backbone.modules():
            module._grefel_backbone = True  # a plain attribute, not part of the state dict
        pyramid = self.backbone.feature_info
        self.feature_levels = resolve_feature_levels(config, len(pyramid))
        level_dims = [pyramid[i]["num_chs"] for i in self.feature_levels] + [self.backbone.num_features]
        self.level_projections = nn.ModuleList(
            GReFELLevelProjection(dim, config.embed_dim, config.dropout) for dim in level_dims
        )
        self.level_embeddings = nn.Parameter(torch.empty(len(level_dims), config.embed_dim))
        self.anchors = nn.Parameter(torch.empty(config.num_labels, config.anchors_per_class, config.embed_dim))
        self.geometry = GReFELGeometryAttention(config)
        self.fusion = GReFELFusion(len(level_dims), config.embed_dim)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        expected = self.config.num_channels
        if pixel_values.dim() != 4 or pixel_values.shape[1] != expected or not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be a float tensor of shape (batch, {expected}, height, width); "
                             f"got dtype {pixel_values.dtype} and shape {tuple(pixel_values.shape)}. Use "
                             "GReFELImageProcessor to turn images into pixel_values.")

    def extract_levels(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The backbone's final features before pooling, and the levels: its intermediate maps at `feature_levels`
        plus its final pooled features."""
        if self.feature_levels:
            final, intermediates = self.backbone.forward_intermediates(pixel_values, indices=self.feature_levels)
        else:
            final, intermediates = self.backbone.forward_features(pixel_values), []
        return final, [*intermediates, self.backbone.forward_head(final, pre_logits=True)]

    def forward(self, pixel_values: torch.Tensor | None = None, return_dict: bool | None = None,
                branch_gradient_scale: float = 1.0):
        r"""
        branch_gradient_scale (`float`, *optional*, defaults to 1.0): scale of the gradient the branch (level
            projections, geometry attention, fusion) sends back into the backbone; the forward pass is the same for
            every value (see `GReFELObjective.branch_gradient_scale`).
        """
        self._check_pixel_values(pixel_values)
        feature_map, levels = self.extract_levels(pixel_values)
        branch_levels = [scale_gradient(f, branch_gradient_scale) for f in levels]
        tokens = torch.stack([proj(f) for proj, f in zip(self.level_projections, branch_levels, strict=True)], dim=1)
        tokens = tokens + self.level_embeddings
        tokens, sample_anchors = self.geometry(tokens, self.anchors.flatten(0, 1))
        output = GReFELModelOutput(embeddings=self.fusion(tokens), pooled_features=levels[-1],
                                   level_embeddings=tokens, sample_anchors=sample_anchors, feature_map=feature_map)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


class GReFELForImageClassification(GReFELPreTrainedModel):
    """GReFEL with its primary head and reliability balancing: q = c·p + (1 − c)·r.

    During training the final distribution follows the trust ramp (1 − τ)·p + τ·q; set τ with
    `set_trust_ramp(step / total_steps)` (GReFELTrainer does it every step). τ defaults to 1. At inference the final
    distribution is q, or p when `config.inference_mode == "primary"`.
    """

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        self.grefel = GReFELModel(config)
        primary_dim = config.embed_dim if config.primary_input == "embedding" else self.grefel.backbone.num_features
        self.primary_head = GReFELPrimaryHead(config, primary_dim)
        self.reliability = GReFELReliabilityBalancing(config)
        self.primary_confidence = GReFELPrimaryConfidence(config)
        self.objective = GReFELObjective()
        self.trust = 1.0
        self.post_init()

    def set_objective(self, objective: GReFELObjective) -> None:
        """Train with `objective` (loss weights, smoothing, class weights, gradient routing) from now on.

        Raises:
            ValueError: a setting is impossible, or impossible for this model's config (the message names it).
        """
        objective.check(self.config)
        self.objective = objective

    def parameter_parts(self) -> dict[str, str]:
        """Which part of GReFEL each parameter belongs to, by name: `"backbone"` (the timm backbone),
        `"primary_head"` (the MLP that gives p), `"anchors"` (the class anchors) or `"branch"` (everything else of
        GReFEL's geometry branch: level projections and embeddings, geometry attention, fusion, reliability balancing
        and the primary confidence). The one map that parameter groups, freezing and clipping use."""
        parts = {}
        for name, _ in self.named_parameters():
            if name.startswith("grefel.backbone."):
                parts[name] = "backbone"
            elif name.startswith("primary_head."):
                parts[name] = "primary_head"
            elif name == "grefel.anchors":
                parts[name] = "anchors"
            else:
                parts[name] = "branch"
        return parts

    def get_backbone(self) -> nn.Module:
        """The timm backbone module (its parameters are the `"backbone"` part of `parameter_parts`)."""
        return self.grefel.backbone

    def set_trust_ramp(self, progress: float) -> None:
        """Set τ, the weight of the corrected distribution during training, clamped to [0, 1]."""
        self.trust = float(min(1.0, max(0.0, progress)))

    def _mc_dropout_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Monte Carlo dropout samples of p, shape (S, B, C).

        In training the masks are random per sample. At inference they come from a fixed seed and are shared by the
        whole batch, so a prediction is deterministic and never depends on the other samples in the batch.
        """
        cfg = self.config
        rate = cfg.mc_dropout_rate
        if self.training:
            keep = torch.rand((cfg.mc_dropout_samples, *hidden.shape), device=hidden.device) >= rate
        else:
            keep = self._inference_dropout_masks(hidden)
        dropped = hidden.unsqueeze(0) * keep.to(hidden.dtype) / (1.0 - rate)
        return torch.softmax(self.primary_head.classifier(dropped) / cfg.primary_temperature, dim=-1)

    def _inference_dropout_masks(self, hidden: torch.Tensor) -> torch.Tensor:
        """The inference-time keep masks (S, 1, H), drawn from the fixed seed once per device and setting,
        then reused. Reuse also lets an export by tracing (ONNX) hold them as constants, since a seeded random
        generator has no ONNX form: run the model once before tracing it."""
        cfg = self.config
        width = self.primary_head.classifier.in_features  # a plain int, also while tracing
        key = (width, str(hidden.device), cfg.mc_dropout_samples, cfg.mc_dropout_rate, cfg.mc_dropout_seed)
        masks = self.__dict__.setdefault("_dropout_mask_cache", {})  # a plain attribute: never in the state dict
        if key not in masks:
            generator = torch.Generator(device=hidden.device).manual_seed(cfg.mc_dropout_seed)
            masks[key] = torch.rand((cfg.mc_dropout_samples, 1, width), generator=generator,
                                    device=hidden.device) >= cfg.mc_dropout_rate
        return masks[key]

    def _primary_features(self, base: GReFELModelOutput) -> torch.Tensor:
        """The primary head's input: the embedding x or the backbone's pooled features (`config.primary_input`)."""
        return base.embeddings if self.config.primary_input == "embedding" else base.pooled_features

    def _balance(self, p: torch.Tensor, r: torch.Tensor,
                 hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The primary confidence c and q = c·p + (1 − c)·r, with the p they blend.

        With `objective.blend_trains_primary` off, that p (and the Monte Carlo samples c is measured from) is
        detached: the same values, but the loss on the blend no longer reaches the primary head.
        """
        mc_probs = self._mc_dropout_probs(hidden) if self.primary_confidence.enhanced else None
        if not self.objective.blend_trains_primary:
            p = p.detach()
            mc_probs = None if mc_probs is None else mc_probs.detach()
        c = self.primary_confidence(p, r, mc_probs)
        weight = c.unsqueeze(-1)
        return p, c, weight * p + (1.0 - weight) * r

    def _final_distribution(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.training:
            return (1.0 - self.trust) * p + self.trust * q
        return q if self.config.inference_mode == "corrected" else p

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ):
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
            `(batch_size, num_labels)`, *optional*): hard class ids, or soft label distributions (FER+ votes,
            CutMix/Mixup targets). When given, the GReFEL loss and its named parts are returned.
        """
        base = self.grefel(pixel_values, return_dict=True,
                           branch_gradient_scale=self.objective.branch_gradient_scale)
        x = base.embeddings
        hidden = self.primary_head.hidden(self._primary_features(base))
        p = torch.softmax(self.primary_head.classifier(hidden) / self.config.primary_temperature, dim=-1)
        anchors = base.sample_anchors if base.sample_anchors is not None else self.grefel.anchors.flatten(0, 1)
        r, g, t, c_g, c_t = self.reliability(x, anchors)
        p_blended, c, q = self._balance(p, r, hidden)
        final = self._final_distribution(p_blended, q)
        loss = loss_parts = None
        if labels is not None:
            loss, loss_parts = GReFELLoss(self.objective)(
                labels=labels, final_probs=final, primary_probs=p, confidence=c, embeddings=x,
                anchors=self.grefel.anchors, path_probs=(p, g, t),
            )
        output = GReFELImageClassifierOutput(
            loss=loss,
            logits=final.clamp_min(_LOG_EPS).log(),
            reliability=1.0 - normalized_entropy(final),
            primary_probs=p,
            corrected_probs=q,
            confidences=torch.stack([c, c_g, c_t], dim=-1),
            embeddings=x,
            loss_parts=loss_parts,
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


__all__ = [
    "GREFEL_AUTO_MAP",
    "load_naming_the_weights",
    "GReFELForImageClassification",
    "GReFELImageClassifierOutput",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
]
