"""The baseline GReFEL is compared with: the same timm backbone, global pooling, one linear layer, cross-entropy.

It returns log-probabilities as `logits` (so `pipeline` and GReFEL's metrics treat both models alike) and the same
entropy-based `reliability` score, and accepts hard or soft labels like GReFEL.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from grefel_hf.losses import normalized_entropy, target_distribution


@dataclass
class PlainHeadOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reliability: torch.FloatTensor | None = None


class PlainHeadConfig(PretrainedConfig):
    model_type = "plain_timm_head"

    def __init__(self, backbone="resnet18", image_size=112, label_smoothing=0.11, **kwargs):
        super().__init__(**kwargs)
        self.backbone, self.image_size, self.label_smoothing = backbone, image_size, label_smoothing


class PlainHeadClassifier(PreTrainedModel):
    """timm backbone (pretrained=False) + linear head + cross-entropy with label smoothing."""

    config_class = PlainHeadConfig
    main_input_name = "pixel_values"
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        cfg = timm.models.get_pretrained_cfg(config.backbone)
        extra = {"img_size": config.image_size} if cfg is not None and cfg.fixed_input_size else {}
        self.backbone = timm.create_model(config.backbone, pretrained=False, num_classes=0, **extra)
        self.classifier = nn.Linear(self.backbone.num_features, config.num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def _init_weights(self, module):
        pass  # timm initialises the backbone and __init__ the classifier

    def forward(self, pixel_values, labels=None):
        log_probs = F.log_softmax(self.classifier(self.backbone(pixel_values)), dim=-1)
        loss = None
        if labels is not None:
            targets = target_distribution(labels, log_probs.shape[-1], self.config.label_smoothing)
            loss = -(targets * log_probs).sum(-1).mean()
        # the reliability score is for evaluation only, so the timed training step stays a bare linear head
        reliability = None if self.training else 1.0 - normalized_entropy(log_probs.exp())
        return PlainHeadOutput(loss=loss, logits=log_probs, reliability=reliability)
