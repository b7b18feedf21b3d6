"""GReFEL's building blocks, in data-flow order: backbone helper → multi-scale level projections → geometry-aware
anchor attention → fusion → primary head → reliability balancing (anchor path, attentive path, confidences) →
post-hoc calibration of the final distribution.

`modeling_grefel.py` assembles them into the PreTrainedModels. This file is saved next to checkpoints as remote code:
it imports only torch, timm, transformers and its flat siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from .configuration_grefel import check_backbone_kwargs
from .losses import normalized_entropy, rms_distance

_LOG_EPS = 1e-12


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


def prepare_pixel_values(pixel_values: torch.Tensor | None, num_channels: int, dtype: torch.dtype) -> torch.Tensor:
    """`pixel_values` checked to be a float (batch, `num_channels`, height, width) tensor, and cast to `dtype` (the
    weights' dtype) when it has another float dtype, as transformers' ViT does.

    Raises:
        ValueError: `pixel_values` is missing, not a float tensor, or of another shape (the message says what it got).
    """
    if (pixel_values is None or pixel_values.dim() != 4 or pixel_values.shape[1] != num_channels
            or not pixel_values.is_floating_point()):
        got = "None" if pixel_values is None else f"{pixel_values.dtype} of shape {tuple(pixel_values.shape)}"
        raise ValueError(f"pixel_values must be a float tensor of shape (batch, {num_channels}, height, width), got "
                         f"{got}; use GReFELImageProcessor to turn images into pixel_values")
    return pixel_values if pixel_values.dtype == dtype else pixel_values.to(dtype)


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


def backbone_features(backbone: nn.Module, pixel_values: torch.Tensor, indices: list[int],
                      output_hidden_states: bool = False):
    """The timm `backbone`'s final features before pooling, its intermediate maps at `indices` (timm's
    `feature_info` index space), and with `output_hidden_states` every map of its feature pyramid as a tuple (else
    None)."""
    if output_hidden_states:
        final, maps = backbone.forward_intermediates(pixel_values)
        return final, [maps[i] for i in indices], tuple(maps)
    if indices:
        final, maps = backbone.forward_intermediates(pixel_values, indices=indices)
        return final, maps, None
    return backbone.forward_features(pixel_values), [], None


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
# Post-hoc calibration
# ---------------------------------------------------------------------------------------------------------------


def calibrate_log_probs(log_probs: torch.Tensor, temperature: float = 1.0,
                        bias: list[float] | None = None) -> torch.Tensor:
    """The calibrated log-probabilities log_softmax(log_probs / temperature + bias) over the last axis (see
    `GReFELConfig.calibration_temperature`). The identity calibration (temperature 1, no bias) returns `log_probs`
    itself, so uncalibrated models compute exactly what they did before calibration existed."""
    if temperature == 1.0 and bias is None:
        return log_probs
    scaled = log_probs / temperature
    if bias is not None:
        scaled = scaled + torch.tensor(bias, dtype=scaled.dtype, device=scaled.device)
    return torch.log_softmax(scaled, dim=-1)


__all__ = [
    "GReFELAttention",
    "GReFELFusion",
    "GReFELGeometryAttention",
    "GReFELLevelProjection",
    "GReFELPrimaryConfidence",
    "GReFELPrimaryHead",
    "GReFELReliabilityBalancing",
    "backbone_features",
    "calibrate_log_probs",
    "create_timm_backbone",
    "distribution_agreement",
    "prepare_pixel_values",
    "resolve_feature_levels",
    "scale_gradient",
]
