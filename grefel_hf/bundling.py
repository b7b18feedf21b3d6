"""Turning a trained model folder into the model that ships inside the package (`grefel_hf/pretrained/<name>/`).

The bundle is a saved GReFEL folder (config, processor config) whose weights are stored in float16 (half the size;
they load back as float32, so predictions use float32 arithmetic). It carries no remote code, since the installed
package's own classes load it, and so its configs name none (no `auto_map`, no `custom_pipelines`). Besides:

- `calibration.json`: the temperature fitted to these weights on the validation split (`grefel-hf calibrate`),
  which the config stores and the model applies, with the calibration error before and after;
- `validation_metrics.json`: the evaluation CLI's metrics of exactly these weights, calibrated, on the validation
  split;
- `provenance.json`: how they were made (recipe, command, seed, commit, training data) and the SHA-256 of
  `model.safetensors`;
- `README.md`: a model card built from them, with the licences of the training data, the intended use and its
  limits. Its model-index figures are those of `validation_metrics.json`; its text records the checksum.

`refresh_bundle` rewrites the metrics, provenance and card of a bundle whose calibration changed (the weights and
their checksum stay as they are).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .calibration.fitting import CalibrationRecord
from .face_detection_grefel import YUNET_FILE, file_sha256
from .hub import save_grefel_folder
from .inference.backends import ONNX_FILE
from .metrics.classification import check_metrics_dict
from .model_card import TrainingRecord, build_model_card
from .pretrained import DEFAULT_MODEL

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "validation_metrics.json"
PROVENANCE_FILE = "provenance.json"


@dataclass
class Provenance:
    """How the bundled weights were made, as the card and `provenance.json` state it.

    Args:
        name: the bundle's name (its folder under `grefel_hf/pretrained/`).
        recipe: the recipe file that reproduces the run.
        command: the exact training command.
        seed: the training seed.
        commit: the commit the run trained at.
        dataset: the training data, in words (for example "FER+ (FER2013Train, majority labels)").
        dataset_id: the builder name (`ferplus`, `fer2013`).
        evaluation_dataset: the validation data, in words (for example "FER+ FER2013Valid, majority labels").
        evaluation_command: the command behind `validation_metrics.json`.
        backbone_weights: the pretrained weights the backbone started from.
        licences: the licences of the training data, in words.
        notes: further Markdown for the card (what was tried, how the run was chosen), or "".
    """

    name: str
    recipe: str
    command: str
    seed: int
    commit: str
    dataset: str
    dataset_id: str
    evaluation_dataset: str
    evaluation_command: str
    backbone_weights: str | None
    licences: str
    notes: str = ""


def store_weights_in_half_precision(folder: Path) -> None:
    """Rewrite `folder/model.safetensors` with its floating-point tensors in float16 (integers stay as they are).

    The config keeps `dtype` float32, so `from_pretrained` loads the weights back as float32.
    """
    path = folder / WEIGHTS_FILE
    tensors = load_file(path)
    half = {name: t.to(torch.float16) if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(half, path, metadata={"format": "pt"})
    path.chmod(0o644)  # readable by everyone once installed as package data


def _provenance_section(provenance: Provenance, checksum: str) -> str:
    """The card's provenance text: recipe, command, seed, commit, evaluation command and checksum."""
    return "\n".join([
        f"Trained with `{provenance.recipe}` at commit `{provenance.commit}` (seed {provenance.seed}):",
        "", "```bash", provenance.command, "```", "",
        "Validation figures (the validation split only; no test split was used to choose anything):",
        "", "```bash", provenance.evaluation_command, "```", "",
        f"SHA-256 of `{WEIGHTS_FILE}` (float16): `{checksum}`",
        *([""] + [provenance.notes] if provenance.notes else []),
    ])


def bundle_usage(name: str) -> str:
    """The card's "How to use" section for the bundled model `name`: used by default when it is
    `grefel_hf.pretrained.DEFAULT_MODEL`, named otherwise."""
    default = name == DEFAULT_MODEL
    how = ("it is the package's default model" if default
           else f"the package's default is `{DEFAULT_MODEL}`, so name this one to use it")
    cli = "" if default else f" --model {name}"
    path_call = "" if default else f'"{name}"'
    model = "" if default else f", model=grefel_hf.pretrained_model_path({path_call})"
    comment = "this model, unless model=... is given" if default else "this model"
    return f"""## How to use

This model ships inside the `grefel_hf` package, so nothing is downloaded; {how}. On a photo or a video (faces are
detected, cropped and classified, one row per face):

```bash
grefel-hf predict photo.jpg{cli} --output results.csv
```

```python
from transformers import pipeline
import grefel_hf  # registers the facial-expression-recognition pipeline

faces = pipeline("facial-expression-recognition"{model})   # {comment}
faces("photo.jpg")  # [{{"box": {{"x", "y", "w", "h"}}, "label", "score", "reliability", "top_k"}}, ...] per face
faces("photo.jpg", min_score=0.6)  # faces whose top probability is below 0.6 are labelled "uncertain"
```

`grefel-hf predict --min_score T` (or `--min_reliability T`) labels the faces below T `uncertain` and still writes
their probabilities; the table under "Selective prediction" below gives, for each T, the share of validation faces
answered and the accuracy on them.

On a face crop, through the Auto classes:
`AutoModelForImageClassification.from_pretrained(grefel_hf.pretrained_model_path({path_call}))`. The model's `logits`
are the **log** of its final class distribution (`logits.exp()` are the probabilities), and every output carries a
`reliability` score in [0, 1]."""


def write_bundle_card(folder: Path, model, metrics: Mapping[str, Any], provenance: Provenance,
                      checksum: str) -> None:
    """README.md of the bundle, from its validation metrics and provenance."""
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    record = TrainingRecord(dataset=provenance.dataset_id, backbone_weights=provenance.backbone_weights)
    card = build_model_card(
        dict(metrics), repo_id=str(folder), model_name=provenance.name, label_names=names,
        base_model=model.config.backbone, datasets=[], dataset_name=provenance.evaluation_dataset,
        dataset_split="validation", license="apache-2.0", record=record, model_config=model.config.to_dict(),
        extra_sections={"Training data and licences": f"Trained on {provenance.dataset}.\n\n{provenance.licences}",
                        "Provenance": _provenance_section(provenance, checksum)},
        usage=bundle_usage(provenance.name), calibration=CalibrationRecord.read(folder),
    )
    card.save(folder / "README.md")


def drop_remote_code(folder: Path) -> None:
    """Remove the remote-code files of a saved folder (with its copy of the face detector) and the config entries
    that name them (`auto_map`, `custom_pipelines`): the package's own classes and detector serve a bundle, and
    copies would only go stale."""
    for code in folder.glob("*.py"):
        code.unlink()
    shutil.rmtree(folder / YUNET_FILE.parts[0], ignore_errors=True)
    for name, keys in (("config.json", ("auto_map", "custom_pipelines")), ("preprocessor_config.json", ("auto_map",))):
        path = folder / name
        values = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in values.items() if k not in keys}, indent=2, sort_keys=True) + "\n")


def write_bundle_weights(model, processor, output_dir: str | Path) -> Path:
    """Save `model` (its selected weights and inference mode) and `processor` into `output_dir`, the weights in
    float16 and without remote code, with the same weights as `model.onnx` for ONNX Runtime (which `grefel-hf
    predict` uses while it matches `model.safetensors`). Evaluate that folder next, then call `finish_bundle`."""
    folder = Path(output_dir)
    save_grefel_folder(model, processor, folder)
    store_weights_in_half_precision(folder)
    drop_remote_code(folder)
    write_bundle_onnx(folder)
    return folder


def write_bundle_onnx(folder: str | Path) -> Path:
    """Export a bundle's weights to `model.onnx` beside them (checked against PyTorch; float16 weights, exactly
    those of `model.safetensors`, whose checksum it records)."""
    from .inference.onnx_export import export_onnx

    report = export_onnx(folder, Path(folder) / ONNX_FILE)
    logger.info("%s", report.describe())
    return report.path


def finish_bundle(folder: str | Path, metrics: Mapping[str, Any], provenance: Provenance) -> str:
    """Write the validation metrics, the provenance (with the weights' checksum) and the card of a bundle whose
    weights `write_bundle_weights` saved. Returns the checksum.

    Args:
        metrics: the evaluation CLI's metrics of the bundle's own (float16) weights on the validation split.

    Raises:
        ValueError: `metrics` is not one evaluation's metrics, comes from another split, or from other labels.
    """
    from .modeling_grefel import GReFELForImageClassification

    folder = Path(folder)
    check_metrics_dict(dict(metrics))
    if metrics.get("split") != "validation":
        raise ValueError(f"the bundle's figures must come from the validation split, got {metrics.get('split')!r}")
    model = GReFELForImageClassification.from_pretrained(folder)
    if list(metrics["labels"]) != [model.config.id2label[i] for i in range(model.config.num_labels)]:
        raise ValueError(f"the metrics' labels {metrics['labels']} are not the bundled model's")
    checksum = file_sha256(folder / WEIGHTS_FILE)
    (folder / METRICS_FILE).write_text(json.dumps(dict(metrics), indent=2, sort_keys=True))
    record = {**asdict(provenance), "weights_sha256": checksum, "weights_dtype": "float16"}
    (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2))
    write_bundle_card(folder, model, metrics, provenance, checksum)
    logger.info("bundled %s into %s (sha256 %s)", provenance.name, folder, checksum)
    return checksum


def read_provenance(folder: str | Path) -> Provenance:
    """The `Provenance` a bundle's `provenance.json` records (without the checksum fields `finish_bundle` adds)."""
    record = json.loads((Path(folder) / PROVENANCE_FILE).read_text())
    return Provenance(**{f.name: record[f.name] for f in fields(Provenance) if f.name in record})


def refresh_bundle(folder: str | Path, metrics: Mapping[str, Any]) -> str:
    """Rewrite the validation metrics, provenance and card of the bundle in `folder` from its own provenance and
    new `metrics` (after its calibration changed); the weights are untouched. Returns their checksum."""
    return finish_bundle(folder, metrics, read_provenance(folder))


__all__ = ["METRICS_FILE", "PROVENANCE_FILE", "Provenance", "WEIGHTS_FILE", "bundle_usage", "drop_remote_code",
           "finish_bundle", "read_provenance", "refresh_bundle", "store_weights_in_half_precision",
           "write_bundle_onnx", "write_bundle_weights"]
