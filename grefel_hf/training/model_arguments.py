"""Which model `train_hf.py` trains, and the one way to set a model config field from a recipe or the command line.

Every field of the model config classes (`GReFELConfig`, and the baseline's) is an argument of its own name
(`--embed_dim 256`, or `embed_dim: 256` in a recipe file). Those arguments mirror the config classes, so they are
generated from them by `config_field_arguments`: the config's docstring is the argument's help, and nothing is written
twice. Lists and mappings are JSON on the command line (`--primary_hidden_sizes '[]'`) and plain YAML/JSON values in a
recipe. An argument left unset keeps the config's default (for GReFEL: the bundled model's architecture).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..configuration_baseline import BaselineConfig
from ..configuration_grefel import GReFELConfig
from .field_docs import docstring_field_docs, with_fields

MODEL_CONFIGS: dict[str, type] = {"grefel": GReFELConfig, "baseline": BaselineConfig}
"""`--model_type` → the config class whose fields the architecture arguments set."""

_STRUCTURED = (list, dict)


def architecture_fields(config_class: type) -> dict[str, Any]:
    """The config's own fields (not those of transformers' base class) with their annotations."""
    return {name: annotation for name, annotation in config_class.__annotations__.items() if not name.startswith("_")}


def _is_structured(annotation: Any) -> bool:
    """Whether a field holds a list or a mapping (given as JSON on the command line)."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return any(typing.get_origin(member) in _STRUCTURED or member in _STRUCTURED for member in members)


def _cli_type(annotation: Any) -> type:
    """The command-line type of a config field: JSON text for lists and mappings, else its scalar type."""
    if _is_structured(annotation):
        return str
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    members = [member for member in members if member is not type(None)]
    if float in members:
        return float
    return members[0]


def _field_types() -> dict[str, Any]:
    """`{field name: annotation}` over every model config (the first config that has a field defines it)."""
    types_by_name: dict[str, Any] = {}
    for config_class in MODEL_CONFIGS.values():
        for name, annotation in architecture_fields(config_class).items():
            types_by_name.setdefault(name, annotation)
    return types_by_name


ARCHITECTURE_FIELD_TYPES = _field_types()
"""Every model config field, by name, with its annotation: the architecture arguments."""


def config_field_arguments() -> list[tuple[str, Any, dataclasses.Field]]:
    """One optional argument per field of every model config, unset by default and documented by the config's own
    docstring (prefixed with the model types whose config has the field)."""
    docs: dict[str, str] = {}
    for config_class in MODEL_CONFIGS.values():
        docs = {**docstring_field_docs(config_class), **docs}
    specs = []
    for name, annotation in ARCHITECTURE_FIELD_TYPES.items():
        owners = [model_type for model_type, config in MODEL_CONFIGS.items() if name in architecture_fields(config)]
        help_text = f"[{', '.join(owners)} config] {docs.get(name, '')}"
        if _is_structured(annotation):
            help_text += " JSON on the command line, e.g. '[]'."
        specs.append((name, _cli_type(annotation) | None, field(default=None, metadata={"help": help_text})))
    return specs


@dataclass
@with_fields(config_field_arguments())
class ModelArguments:
    """Which model to train: a fresh model over a timm backbone, or a saved folder to fine-tune. Besides the fields
    below, every model config field is an argument of its own name (see `config_field_arguments`)."""

    model_type: str = field(
        default="grefel",
        metadata={"help": f"The model to build: one of {sorted(MODEL_CONFIGS)}. Its config fields are the "
                          "architecture arguments below."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved model folder, hub id or bundled model's name (grefel-ferplus, grefel-fer2013) to "
                          "fine-tune. When unset, a fresh model is built."},
    )
    backbone_weights: str | None = field(
        default=None,
        metadata={"help": "Offline pretrained backbone weights for a fresh model: a .safetensors / torch state-dict "
                          "file, or a known source such as 'efficientnet-lite0' (needs --backbone "
                          "tf_efficientnet_lite0). timm's downloader is never used."},
    )
    require_backbone_weights: bool = field(
        default=False,
        metadata={"help": "Refuse to build a fresh model without --backbone_weights. Recipes whose backbone must start "
                          "from pretrained weights that only the user has, as a local file, set it (ViT-Base/16, "
                          "ResNet-50): without the file such a run would train from random weights."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "When the saved folder's weights do not fit the architecture arguments given (say "
                          "--anchors_per_class), start those weights fresh instead of failing. A different label set "
                          "needs no flag: each class head starts from the saved head of the same emotion (matched by "
                          "name, 'angry' = 'anger'), and a class with none starts fresh."},
    )

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_CONFIGS:
            raise ValueError(f"--model_type must be one of {sorted(MODEL_CONFIGS)}, got {self.model_type!r}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"--image_size must be at least 16 pixels, got {self.image_size}")
        if self.require_backbone_weights and not (self.backbone_weights or self.model_name_or_path):
            backbone = self.backbone or MODEL_CONFIGS[self.model_type]().backbone
            raise ValueError(f"--require_backbone_weights: this run needs pretrained weights for its {backbone} "
                             "backbone: pass --backbone_weights FILE, a local .safetensors or torch state-dict file "
                             "with timm's parameter names (nothing is downloaded)")
        self.config_overrides()  # bad JSON or a field of another model type: refused before any work

    def config_overrides(self) -> dict[str, Any]:
        """The architecture arguments that are set, as config keyword arguments (JSON text parsed).

        Raises:
            ValueError: invalid JSON, or a field that `--model_type`'s config does not have (the message names it).
        """
        fields_of_type = architecture_fields(MODEL_CONFIGS[self.model_type])
        overrides = {}
        for name, annotation in ARCHITECTURE_FIELD_TYPES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name not in fields_of_type:
                raise ValueError(f"--{name} is not a field of the {self.model_type} model config")
            if _is_structured(annotation) and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as err:
                    raise ValueError(f"--{name} must be JSON (for example '[]' or '[256]'), got {value!r}") from err
            overrides[name] = value
        return overrides


def is_architecture_argument(name: str) -> bool:
    """Whether `name` is a generated architecture argument (a model config field)."""
    return name in ARCHITECTURE_FIELD_TYPES


__all__ = ["ARCHITECTURE_FIELD_TYPES", "MODEL_CONFIGS", "ModelArguments", "architecture_fields",
           "config_field_arguments", "is_architecture_argument"]
