"""GReFEL: geometry-aware anchors plus reliability balancing on a timm backbone.

The outputs, then the PreTrainedModels: `GReFELModel` (backbone → multi-scale levels → geometry-aware anchor
attention → fusion) and `GReFELForImageClassification` (primary head and reliability balancing). The building blocks,
in data-flow order, are in `layers_grefel.py`.

This file is saved next to checkpoints as remote code: it imports only torch, timm, transformers and its flat
siblings (`from .x import y`), never the `grefel_hf` package.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_grefel import GReFELConfig
from .layers_grefel import (
    GReFELFusion,
    GReFELGeometryAttention,
    GReFELLevelProjection,
    GReFELPrimaryConfidence,
    GReFELPrimaryHead,
    GReFELReliabilityBalancing,
    backbone_features,
    calibrate_log_probs,
    create_timm_backbone,
    prepare_pixel_values,
    resolve_feature_levels,
    scale_gradient,
)
from .losses import GReFELObjective

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
    Output of [`GReFELModel`]: the backbone's features under the names transformers' vision models use, then GReFEL's
    own.

    Args:
        last_hidden_state (`torch.FloatTensor`):
            The backbone's final features before pooling: `(batch_size, backbone_num_features, height, width)` for
            CNNs, the backbone's own token layout for others.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, backbone_num_features)`):
            The backbone's final pooled features, before GReFEL's projections.
        hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            The backbone's feature maps, one per level of its feature pyramid (timm's `feature_info`, the index space
            of `config.feature_levels`).
        embeddings (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            The fused multi-scale embedding x of each image.
        level_embeddings (`torch.FloatTensor` of shape `(batch_size, num_levels, embed_dim)`):
            The per-level embeddings after geometry-aware anchor attention, before fusion.
        sample_anchors (`torch.FloatTensor` of shape `(batch_size, num_labels * anchors_per_class, embed_dim)`):
            Per-sample refined anchors. Only returned by the enhanced geometry variant.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    embeddings: torch.FloatTensor | None = None
    level_embeddings: torch.FloatTensor | None = None
    sample_anchors: torch.FloatTensor | None = None


@dataclass
class GReFELImageClassifierOutput(ModelOutput):
    """
    Output of [`GReFELForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            The default GReFEL loss, `GReFELObjective()` with every setting at its default, on the final
            distribution (see `grefel_hf.losses`). A trainer with other settings computes its own from these outputs.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Log of the final distribution, calibrated: `softmax(logits) == exp(logits)`. The final distribution is
            the corrected q, or the primary p when `config.inference_mode == "primary"`, after the post-hoc
            calibration the config stores (`calibration_temperature`, `calibration_bias`; none by default).
            `primary_probs` and `corrected_probs` are never calibrated.
        reliability (`torch.FloatTensor` of shape `(batch_size,)`):
            Per-sample reliability score in [0, 1]: the probability GReFEL's attentive path t (reliability
            balancing's self-attention over the sample's per-class tokens) gives the predicted class, i.e. how
            strongly that path backs the answer. Of the scores measured on the bundled models' validation splits
            (`benchmarks/RESULTS.md`, selective prediction), it best put the answers most likely to be right first:
            better than the top probability among the most confident answers (a lower area under the risk-coverage
            curve), alike once half of the faces are answered. One minus the normalised entropy of the final
            distribution, the reliability of earlier versions, ranked worse than the top probability.
        primary_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The primary head's distribution p.
        corrected_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The reliability-balanced distribution q = c·p + (1 − c)·r.
        anchor_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The anchor path's distribution g.
        attentive_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            The attentive path's distribution t.
        confidences (`torch.FloatTensor` of shape `(batch_size, 3)`):
            The confidences (c, c_g, c_t) of the primary head, the anchor path and the attentive path, in [0, 1].
        embeddings (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            The fused embedding x.
        hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            The backbone's feature maps, one per level of its feature pyramid (see [`GReFELModelOutput`]).
        loss_parts (`dict[str, torch.FloatTensor]`, returned when `labels` is given):
            The unweighted value of every active term of `loss`, for logging.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None
    primary_probs: torch.FloatTensor | None = None
    corrected_probs: torch.FloatTensor | None = None
    anchor_probs: torch.FloatTensor | None = None
    attentive_probs: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    loss_parts: dict[str, torch.FloatTensor] | None = None


# ---------------------------------------------------------------------------------------------------------------
# PreTrainedModels
# ---------------------------------------------------------------------------------------------------------------


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
"""The weights files transformers reads from a model folder (`pytorch_model.bin` only as plain tensors)."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _saved_label_count(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None  # transformers' own loading reports a missing or broken config
    labels = config.get("id2label") if isinstance(config, dict) else None
    return len(labels) if isinstance(labels, dict) else None


def _anchor_classes(weights: str) -> tuple[str, list[int]] | None:
    """The class anchors' name and shape in a safetensors file ((num_labels, anchors_per_class, dim)), read from
    its header only; None when it has none or cannot be read (loading then reports it)."""
    try:
        with safe_open(weights, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if name.split(".")[-1] == "anchors":
                    return name, list(handle.get_slice(name).get_shape())
    except (SafetensorError, OSError):
        return None
    return None


def check_local_weights(folder: str) -> None:
    """Refuse, before transformers reads them, the weights of a local model folder that cannot be loaded as its
    config says: no weights file but a pickle (which could run code when loaded), or class anchors for another
    number of classes than config.json names. Each is an `OSError` naming the file and the problem."""
    present = set(os.listdir(folder))
    if not present & set(WEIGHT_FILES):
        pickles = sorted(name for name in present if name.lower().endswith(PICKLE_SUFFIXES))
        if pickles:
            raise OSError(f"{folder} holds no model.safetensors, only the pickle file(s) {pickles}: pickles can run "
                          "code when loaded and are not read; load it where you trust it and save it with "
                          "save_pretrained (model.safetensors)")
        return
    weights, count = os.path.join(folder, "model.safetensors"), _saved_label_count(folder)
    anchors = _anchor_classes(weights) if count is not None and "model.safetensors" in present else None
    if anchors is not None and anchors[1] and anchors[1][0] != count:
        raise OSError(f"{weights}: config.json names {count} classes (id2label) but these weights were trained "
                      f"for {anchors[1][0]} ({anchors[0]} has shape {anchors[1]}); give the config.json that was "
                      "saved with them")


def load_naming_the_weights(load, pretrained_model_name_or_path, *args, **kwargs):
    """Call `load(pretrained_model_name_or_path, ...)`; for a local folder, weights that cannot fit its config are
    refused first (`check_local_weights`), and a truncated or corrupt safetensors file or a pickle that holds more
    than tensors becomes an `OSError` naming the file."""
    where = os.fspath(pretrained_model_name_or_path)
    subfolder = kwargs.get("subfolder")
    folder = (os.path.join(where, subfolder) if subfolder else where) if os.path.isdir(where) else None
    if folder is not None:
        check_local_weights(folder)
    try:
        return load(pretrained_model_name_or_path, *args, **kwargs)
    except SafetensorError as err:
        where = os.path.join(folder, "model.safetensors") if folder is not None else where
        raise OSError(f"{where}: the weights file is truncated or corrupt ({err}); save or download it again") from err
    except pickle.UnpicklingError as err:
        where = os.path.join(folder, "pytorch_model.bin") if folder is not None else where
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("WeightsUnpickler")), lines[0] if lines else "")
        raise OSError(f"{where}: a pickle that holds more than weights is not loaded ({reason}); load it where you "
                      "trust it and save it with save_pretrained (model.safetensors)") from err


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
        """Initialise GReFEL's own layers; leave timm's backbone with timm's own initialisation (or its loaded
        weights), as transformers' `TimmWrapperModel` does. transformers calls this per leaf module, so the raw
        parameters of `GReFELModel` (anchors, level embeddings) are initialised when the model itself comes by."""
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
        would fail on a saved `GReFELForImageClassification` folder without this.
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

    def extract_levels(self, pixel_values: torch.Tensor, output_hidden_states: bool = False):
        """The backbone's final features before pooling; the levels (its intermediate maps at `feature_levels`, then
        its final pooled features); and, with `output_hidden_states`, every map of its feature pyramid (else None)."""
        final, maps, hidden_states = backbone_features(self.backbone, pixel_values, self.feature_levels,
                                                       output_hidden_states)
        return final, [*maps, self.backbone.forward_head(final, pre_logits=True)], hidden_states

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        branch_gradient_scale: float = 1.0,
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): the images, from
            `GReFELImageProcessor`; any float dtype, cast to the weights' dtype.
        output_hidden_states (`bool`, *optional*): also return every map of the backbone's feature pyramid
            (defaults to `config.output_hidden_states`).
        branch_gradient_scale (`float`, *optional*, defaults to 1.0): scale of the gradient the branch (level
            projections, geometry attention, fusion) sends back into the backbone; the forward pass is the same for
            every value (see `GReFELObjective.branch_gradient_scale`).
        """
        pixel_values = prepare_pixel_values(pixel_values, self.config.num_channels, self.dtype)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        feature_map, levels, hidden_states = self.extract_levels(pixel_values, output_hidden_states)
        branch_levels = [scale_gradient(f, branch_gradient_scale) for f in levels]
        tokens = torch.stack([proj(f) for proj, f in zip(self.level_projections, branch_levels, strict=True)], dim=1)
        tokens = tokens + self.level_embeddings
        tokens, sample_anchors = self.geometry(tokens, self.anchors.flatten(0, 1))
        output = GReFELModelOutput(last_hidden_state=feature_map, pooler_output=levels[-1], hidden_states=hidden_states,
                                   embeddings=self.fusion(tokens), level_embeddings=tokens,
                                   sample_anchors=sample_anchors)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


class GReFELForImageClassification(GReFELPreTrainedModel):
    """GReFEL with its primary head and reliability balancing: q = c·p + (1 − c)·r.

    The final distribution is q, or p when `config.inference_mode == "primary"`. Given `labels`, the forward pass
    returns the default loss (`GReFELObjective()`); `GReFELTrainer` trains with the objective its arguments set, and
    the trust ramp (1 − τ)·p + τ·q, from these outputs instead.
    """

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        self.grefel = GReFELModel(config)
        primary_dim = config.embed_dim if config.primary_input == "embedding" else self.grefel.backbone.num_features
        self.primary_head = GReFELPrimaryHead(config, primary_dim)
        self.reliability = GReFELReliabilityBalancing(config)
        self.primary_confidence = GReFELPrimaryConfidence(config)
        self.post_init()

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

    def class_indexed_parameters(self) -> tuple[str, ...]:
        """The state-dict names of the tensors whose first dimension indexes the classes (the primary classifier's
        rows and the class anchors): what fine-tuning on another label set maps class by class."""
        return ("primary_head.classifier.weight", "primary_head.classifier.bias", "grefel.anchors")

    def get_backbone(self) -> nn.Module:
        """The timm backbone module (its parameters are the `"backbone"` part of `parameter_parts`)."""
        return self.grefel.backbone

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
        return base.embeddings if self.config.primary_input == "embedding" else base.pooler_output

    def _balance(self, p: torch.Tensor, r: torch.Tensor, hidden: torch.Tensor,
                 blend_trains_primary: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The primary confidence c and q = c·p + (1 − c)·r.

        Without `blend_trains_primary`, the p that q blends (and the Monte Carlo samples c is measured from) is
        detached: the same values, but a loss on q no longer reaches the primary head.
        """
        mc_probs = self._mc_dropout_probs(hidden) if self.primary_confidence.enhanced else None
        if not blend_trains_primary:
            p = p.detach()
            mc_probs = None if mc_probs is None else mc_probs.detach()
        c = self.primary_confidence(p, r, mc_probs)
        weight = c.unsqueeze(-1)
        return c, weight * p + (1.0 - weight) * r

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        branch_gradient_scale: float = 1.0,
        blend_trains_primary: bool = True,
    ):
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
            `(batch_size, num_labels)`, *optional*): hard class ids, or soft label distributions (FER+ votes,
            CutMix/Mixup targets). When given, the default loss and its named parts are returned.
        branch_gradient_scale (`float`, *optional*, defaults to 1.0), blend_trains_primary (`bool`, *optional*,
            defaults to `True`): how the gradients are routed in training (the `GReFELObjective` settings of the same
            names, which the trainer passes); the outputs are the same for every value.
        """
        base = self.grefel(pixel_values, output_hidden_states=output_hidden_states, return_dict=True,
                           branch_gradient_scale=branch_gradient_scale)
        x = base.embeddings
        hidden = self.primary_head.hidden(self._primary_features(base))
        p = torch.softmax(self.primary_head.classifier(hidden) / self.config.primary_temperature, dim=-1)
        anchors = base.sample_anchors if base.sample_anchors is not None else self.grefel.anchors.flatten(0, 1)
        r, g, t, c_g, c_t = self.reliability(x, anchors)
        c, q = self._balance(p, r, hidden, blend_trains_primary)
        final = q if self.config.inference_mode == "corrected" else p
        logits = calibrate_log_probs(final.clamp_min(_LOG_EPS).log(), self.config.calibration_temperature,
                                     self.config.calibration_bias)
        reliability = t.gather(-1, logits.argmax(dim=-1, keepdim=True)).squeeze(-1)  # t at the predicted class
        output = GReFELImageClassifierOutput(
            logits=logits, reliability=reliability, primary_probs=p,
            corrected_probs=q, anchor_probs=g, attentive_probs=t, confidences=torch.stack([c, c_g, c_t], dim=-1),
            embeddings=x, hidden_states=base.hidden_states,
        )
        if labels is not None:
            loss, loss_parts = GReFELObjective().loss(self, output, labels)
            output = GReFELImageClassifierOutput(loss=loss, loss_parts=loss_parts, **output)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()


__all__ = [
    "GREFEL_AUTO_MAP",
    "check_local_weights",
    "load_naming_the_weights",
    "GReFELForImageClassification",
    "GReFELImageClassifierOutput",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
]
