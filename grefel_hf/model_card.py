"""Model card (README.md with YAML metadata) for a GReFEL checkpoint pushed to the Hugging Face Hub.

``build_model_card`` turns a ``metrics.json`` dict (schema in ``grefel_hf.metrics.classification``), the training
arguments and a few names into a ``huggingface_hub.ModelCard``. The card reports only numbers found in
``metrics`` and ``training_args``; without metrics it says the model was not evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from grefel_hf.calibration.fitting import CalibrationRecord
from grefel_hf.evaluation.report import (
    overall_table,
    per_class_table,
    render_markdown,
    selective_table,
    threshold_table,
)
from grefel_hf.metrics.classification import check_metrics_dict
from grefel_hf.metrics.selective import RANKING_NAMES, ordered_rankings

logger = logging.getLogger(__name__)

TAGS = ["facial-expression-recognition", "grefel", "custom_code", "image-classification"]
TASK_NAME = "Facial Expression Recognition"
# (key in metrics.json, metric_type, metric_name, metric_args) for the model-index.
MODEL_INDEX_METRICS: list[tuple[str, str, str, dict[str, str] | None]] = [
    ("accuracy", "accuracy", "Accuracy", None),
    ("balanced_accuracy", "recall", "Balanced accuracy", {"average": "macro"}),
    ("macro_f1", "f1", "Macro F1", {"average": "macro"}),
    ("weighted_f1", "f1", "Weighted F1", {"average": "weighted"}),
]
# Training-argument keys shown in the card, in this order (TrainingArguments and all_results.json names).
TRAINING_DETAIL_KEYS = [
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "optim", "weight_decay", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
    "label_smoothing_factor", "bf16", "fp16", "seed", "epoch", "train_loss", "train_runtime",
    "train_samples_per_second",
]

MODEL_CONFIG_KEYS = (
    "backbone", "image_size", "embed_dim", "anchors_per_class", "feature_levels", "primary_input",
    "primary_hidden_sizes", "geometry_variant", "reliability_variant", "inference_mode", "dropout",
)
"""Config fields the card's model section lists, when the config has them."""

_UNITS = {
    "train_runtime": lambda v: f"{v:.0f} s",
    "train_samples_per_second": lambda v: f"{v:.1f} images/s",
    "train_steps_per_second": lambda v: f"{v:.2f} steps/s",
    "epoch": lambda v: f"{v:g} epochs",
    "num_train_epochs": lambda v: f"{v:g} epochs",
    "max_steps": lambda v: f"{v} steps",
    "warmup_steps": lambda v: f"{v:g} (fraction of the training steps)" if v < 1 else f"{v:g} steps",
    "warmup_ratio": lambda v: f"{v:g} (fraction of the training steps)",
    "train_loss": lambda v: f"{v:.4f}",
}
"""How the training table writes values whose unit would otherwise be left to guess."""


@dataclass
class TrainingRecord:
    """How the weights were made, as the card states it (from the run's `training_config.json`).

    Args:
        dataset: the training dataset (a builder name such as `ferplus`, or a folder name).
        label_mode: the FER+ label mode of the training split, if any.
        backbone_weights: the offline pretrained weights the backbone started from, or None.
        fine_tuned_from: the saved model the run fine-tuned, or None.
    """

    dataset: str | None = None
    label_mode: str | None = None
    backbone_weights: str | None = None
    fine_tuned_from: str | None = None

    @property
    def started_pretrained(self) -> bool:
        """Whether the weights started from pretrained ones (so that the card may name a base model)."""
        return bool(self.backbone_weights or self.fine_tuned_from)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> TrainingRecord:
        """From the `model_args` and `data_args` of a `training_config.json`."""
        model_args, data_args = run_config.get("model_args") or {}, run_config.get("data_args") or {}
        dataset = data_args.get("dataset")
        return cls(dataset=str(dataset).rstrip("/").split("/")[-1] if dataset else None,
                   label_mode=data_args.get("label_mode"), backbone_weights=model_args.get("backbone_weights"),
                   fine_tuned_from=model_args.get("model_name_or_path"))


def dataset_kind(*names: str | None) -> str:
    """"synthetic", "fer" (FER2013 / FER+), "rafdb" or "other", from dataset names or ids."""
    lowered = [name.lower() for name in names if name]
    if any(name == "synthetic" or "synthetic" in name for name in lowered):
        return "synthetic"
    if any("raf" in name for name in lowered):
        return "rafdb"
    if any("fer" in name for name in lowered):
        return "fer"
    return "other"


_CITATION = """```bibtex
@article{wasi2024grefel,
  title   = {GReFEL: Geometry-Aware Reliable Facial Expression Learning under Bias and Imbalanced Data Distribution},
  author  = {Wasi, Azmine Toushik and Rafi, Taki Hasan and Islam, Raima and {\\v{S}}erbetar, Karlo and Chae, Dong-Kyu},
  journal = {arXiv preprint arXiv:2410.15927},
  year    = {2024}
}
```"""


def _hub_base_model(backbone: str | None) -> str | None:
    """Map a timm model name to its Hub id (``timm/<name>``); names that already have an owner stay as they are."""
    if not backbone:
        return None
    return backbone if "/" in backbone else f"timm/{backbone}"


def build_eval_results(
    metrics: Mapping[str, Any], *, dataset_id: str, dataset_name: str, dataset_split: str,
    dataset_config: str | None = None,
) -> list[EvalResult]:
    """One ``EvalResult`` per model-index metric (accuracy, balanced accuracy as the macro-averaged recall, macro-F1,
    weighted-F1) found in ``metrics``."""
    results = []
    for key, metric_type, metric_name, metric_args in MODEL_INDEX_METRICS:
        if metrics.get(key) is None:
            continue
        results.append(EvalResult(
            task_type="image-classification", task_name=TASK_NAME, dataset_type=dataset_id,
            dataset_name=dataset_name, dataset_config=dataset_config, dataset_split=dataset_split,
            metric_type=metric_type, metric_name=metric_name, metric_args=metric_args,
            metric_value=float(metrics[key]),
        ))
    return results


def _usage_section(repo_id: str, num_labels: int) -> str:
    """Markdown with pipeline and Auto-class usage, including how to read the reliability score."""
    return f"""## How to use

The model ships its own code, so loading needs `trust_remote_code=True`. Pass a **cropped face** image.

```python
from transformers import pipeline

classifier = pipeline("image-classification", model="{repo_id}", trust_remote_code=True)
classifier("face.jpg", top_k={num_labels})  # scores of every expression for one face crop
```

The model's `logits` are the **log** of its final (reliability-corrected) class distribution, so the
pipeline's softmax gives back exactly that distribution. The model output also has `reliability`, one score
in [0, 1] per image (higher = more trustworthy prediction):

```python
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

processor = AutoImageProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained("{repo_id}", trust_remote_code=True)

inputs = processor(images=Image.open("face.jpg"), return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
probs = outputs.logits.exp()           # (batch, num_labels) final distribution
label_id = int(probs[0].argmax())
print(model.config.id2label[label_id], float(probs[0, label_id]), float(outputs.reliability[0]))
```"""


def selective_summary(selective: Mapping[str, Any]) -> str:
    """Plain sentences from a `selective` metrics entry: which ranking has the lowest AURC, and each ranking's
    accuracy at the coverages below 100 %."""
    rankings, best = selective["rankings"], selective["best_ranking"]
    top = rankings["top_probability"]["aurc"]
    against = "" if best == "top_probability" else f", against {100 * top:.2f} % for the top probability"
    lines = [f"Ranked by **{RANKING_NAMES.get(best, best)}**, the answers have the lowest area under the "
             f"risk-coverage curve ({100 * rankings[best]['aurc']:.2f} %{against})."]
    for coverage in (c for c in selective["coverages"] if c < 1.0):
        parts = [f"{RANKING_NAMES.get(name, name)} {100 * summary['accuracy_at'][str(coverage)]:.2f} %"
                 for name, summary in ordered_rankings(rankings)]
        lines.append(f"Accuracy on the {100 * coverage:g} % of images answered first: {', '.join(parts)}.")
    return " ".join(lines)


def _selective_section(metrics: Mapping[str, Any]) -> list[str]:
    """The selective-prediction tables and their summary, when `metrics` has them."""
    if not metrics.get("selective"):
        return []
    return [
        "### Selective prediction",
        "The images ranked by a score, most confident first: the accuracy of the first 100, 90, 80 and 50 %, and "
        "the area under the risk-coverage curve (AURC, lower is better). " + selective_summary(metrics["selective"]),
        render_markdown(selective_table(dict(metrics))),
        "With `grefel-hf predict --min_score T` (top probability) or `--min_reliability T`, faces below T are "
        "labelled `uncertain`; on this split each threshold answers for (and is right on) this share of the images:",
        render_markdown(threshold_table(dict(metrics))),
    ]


def _percent_change(before: float | None, after: float | None) -> str:
    """"88.56 → 88.18 %", or a dash for a value that was not recorded."""
    if before is None or after is None:
        return "–"
    return f"{100 * before:.2f} → {100 * after:.2f} %"


def _held_out_text(calibration: CalibrationRecord) -> str:
    """The held-out estimate of the prior adjustment in sentences."""
    parts = []
    for estimate in calibration.held_out or []:
        before, after = estimate["before"], estimate["after"]
        parts.append(f"τ = {estimate['tau']:g} from the {estimate['fit_half']} half gives the {estimate['score_half']} "
                     f"half accuracy {_percent_change(before['accuracy'], after['accuracy'])} and balanced accuracy "
                     f"{_percent_change(before['balanced_accuracy'], after['balanced_accuracy'])}")
    if not parts:
        return ""
    return (" τ was chosen on the same faces, so these figures are optimistic. Held out (τ chosen on one interleaved "
            "half of the split, scored on the other): " + "; ".join(parts) + ".")


def _recall_table(calibration: CalibrationRecord, label_names: Sequence[str]) -> str:
    """Per class: training prior, recall before and after the calibration."""
    rows = ["| Class | Training prior | Recall before → after |", "|:---|---:|---:|"]
    priors = calibration.class_priors or [None] * len(label_names)
    before = calibration.recall_before or [None] * len(label_names)
    after = calibration.recall_after or [None] * len(label_names)
    for name, prior, was, now in zip(label_names, priors, before, after, strict=True):
        shown = "–" if prior is None else f"{100 * prior:.2f} %"
        rows.append(f"| {name} | {shown} | {_percent_change(was, now)} |")
    return "\n".join(rows)


def _prior_adjustment_section(calibration: CalibrationRecord, label_names: Sequence[str]) -> str:
    """The prior adjustment and the temperature after it: what each changed, per class too."""
    where = f"the `{calibration.split}` split of {calibration.dataset} ({calibration.num_images} images)"
    if calibration.prior_tau:
        decisions = (
            "The model's decisions are adjusted for the class imbalance of its training data: its log-probabilities "
            f"are shifted by −τ·log(prior) with τ = {calibration.prior_tau:g}, the priors being those of "
            f"{calibration.priors_from}. τ was chosen on {where} for the highest balanced accuracy (the mean "
            "per-class recall) among the strengths that cost at most 0.5 point of accuracy there: accuracy "
            f"{_percent_change(calibration.accuracy_before, calibration.accuracy_after)}, balanced accuracy "
            f"{_percent_change(calibration.balanced_accuracy_before, calibration.balanced_accuracy_after)} "
            f"({calibration.labels_changed} predicted labels changed)." + _held_out_text(calibration))
    else:
        decisions = (f"A shift of the log-probabilities by the training-set class priors ({calibration.priors_from}) "
                     f"was tried on {where}: no strength raised the balanced accuracy at a cost of at most 0.5 "
                     "point of accuracy, so the model's decisions are its own.")
    if calibration.temperature != 1.0:
        scale = (f"A temperature of {calibration.temperature:.4f}, fitted by negative log-likelihood after the shift, "
                 "calibrates the probabilities")
    else:
        scale = ("No temperature is applied (the one fitted by negative log-likelihood would have raised the "
                 "calibration error)")
    return (f"## Calibration and class balance\n\n{decisions}\n\n{scale}: expected calibration error "
            f"{100 * calibration.ece_before:.2f} % without either, {100 * calibration.ece_after:.2f} % as shipped; "
            f"negative log-likelihood {calibration.nll_before:.4f} and {calibration.nll_after:.4f}. The model applies "
            "both itself (config fields `calibration_temperature` and `calibration_bias`), so every way of running "
            "it gets the same answers. Per class, on the same split:\n\n" + _recall_table(calibration, label_names))


def _calibration_section(calibration: CalibrationRecord | None, label_names: Sequence[str]) -> str:
    """How the probabilities were calibrated (and the decisions adjusted for the class priors), or that they were
    not."""
    if calibration is not None and calibration.prior_tau is not None:
        return _prior_adjustment_section(calibration, label_names)
    if calibration is None:
        return ("## Calibration\n\nNo calibration was fitted to this model: read its probabilities as scores rather "
                "than as calibrated chances, and check them on held-out data (`grefel-hf calibrate` fits one).")
    bias = ("" if calibration.bias is None
            else " and a per-class bias (" + ", ".join(f"{b:+.3f}" for b in calibration.bias) + ")")
    if not calibration.applied:
        return (f"## Calibration\n\nA temperature of {calibration.temperature:.4f}{bias}, fitted by negative "
                f"log-likelihood on the `{calibration.split}` split of {calibration.dataset} "
                f"({calibration.num_images} images), would have raised the expected calibration error there from "
                f"{100 * calibration.ece_before:.2f} % to {100 * calibration.ece_after:.2f} % (log-likelihood "
                f"{calibration.nll_before:.4f} to {calibration.nll_after:.4f}), so it is not applied: the model's "
                "probabilities are its own, and the figures below are of those.")
    return (f"## Calibration\n\nThe model's probabilities are calibrated: a temperature of "
            f"{calibration.temperature:.4f}{bias}, fitted by negative log-likelihood on the `{calibration.split}` "
            f"split of {calibration.dataset} ({calibration.num_images} images) and applied by the model itself "
            "(config fields `calibration_temperature` and `calibration_bias`, so every way of running it gets "
            "calibrated probabilities). On that split the expected calibration error went from "
            f"{100 * calibration.ece_before:.2f} % to {100 * calibration.ece_after:.2f} % and the negative "
            f"log-likelihood from {calibration.nll_before:.4f} to {calibration.nll_after:.4f}; accuracy "
            f"{100 * calibration.accuracy_before:.2f} % before, {100 * calibration.accuracy_after:.2f} % after "
            f"({calibration.labels_changed} predicted labels changed).")


def _results_section(
    metrics: Mapping[str, Any] | None, dataset_name: str, dataset_split: str, images: Mapping[str, str | None]
) -> str:
    """Markdown with the overall and per-class tables and figure links, or a 'not evaluated' note."""
    if metrics is None:
        return "## Evaluation results\n\nThis model has **not been evaluated** yet: no results are reported."
    lines = [
        "## Evaluation results",
        f"On the `{dataset_split}` split of {dataset_name} ({metrics['num_images']} images). Scores in %; "
        "per-class accuracy is the fraction of a class's images classified correctly (its recall).",
        render_markdown(overall_table(dict(metrics))),
        "### Per class",
        render_markdown(per_class_table(dict(metrics))),
        *_selective_section(metrics),
    ]
    for title, image in images.items():
        if image:
            lines.append(f"### {title}\n\n![{title}]({image})")
    return "\n\n".join(lines)


def _training_section(training_args: Mapping[str, Any] | None) -> str:
    """Markdown table of the known training hyper-parameters present in ``training_args``."""
    header = "## Training details"
    if not training_args:
        return f"{header}\n\nTraining hyper-parameters were not recorded with this card."
    rows = []
    for key in TRAINING_DETAIL_KEYS:
        value = training_args.get(key)
        # max_steps=-1 and warmup_steps=0 are Trainer's "not set" defaults, not facts about the run.
        if value is None or (key in ("max_steps", "warmup_steps") and isinstance(value, (int, float)) and value <= 0):
            continue
        shown = _UNITS[key](value) if key in _UNITS and isinstance(value, (int, float)) else value
        rows.append(f"| `{key}` | {shown} |")
    if not rows:
        return f"{header}\n\nNone of the recorded training arguments are among the reported keys."
    return "\n".join([header, "", "| Hyper-parameter | Value |", "|:---|:---|", *rows])


_FER_BIASES = """
- **Dataset biases (FER2013 / FER+).** The FER2013 faces were web-scraped with image-search queries: a mix
  of posed and spontaneous expressions, stored as 48x48 grayscale images, so colour and fine detail are lost
  and other image sources are out of distribution. The age, gender and skin-tone composition was never
  documented and is skewed; this card reports no accuracy per demographic group.
  The classes are heavily imbalanced: happy is about a quarter of FER2013's training images while disgust
  is about 1.5 % (436 of 28,709), and contempt is the rarest FER+ class; expect lower accuracy on rare
  classes (see the per-class table). Labels are noisy: human accuracy on FER2013 is only about 65 %, and
  FER+ relabelled the same faces with 10 annotators who still often disagree."""

_DATASET_NOTES = {
    "fer": _FER_BIASES,
    "rafdb": """
- **RAF-DB.** Web images of faces annotated by crowd workers; also imbalanced (fear and disgust are rare)
  and demographically skewed.""",
    "synthetic": """
- **Not for real faces.** This model was trained only on the project's generated cartoon faces, drawn to test
  the training code. It has never seen a real face: whatever it says about a photograph means nothing.""",
    "other": """
- The training data's origin and composition are not described by this card: check them, and their biases,
  before relying on the model.""",
}


def _face_detection_section() -> str:
    """Which face detector finds the faces the model labels in photos, and its training data's terms."""
    return """## Face detection

On photos, `pipeline("facial-expression-recognition")` and `grefel-hf predict` find the faces with **YuNet**
(YuNet-s, `face_detection_yunet_2023mar.onnx`, run by OpenCV's `cv2.FaceDetectorYN`), which ships with grefel_hf
(a folder saved by grefel_hf also carries a copy in `face_detectors/yunet/`, for its remote code): code and weights
under Apache-2.0 (libfacedetection.train) and MIT (OpenCV Zoo). YuNet was trained on WIDER FACE, whose images come with
research-oriented terms; for commercial use check those terms, or pass `face_detector="haar"` (OpenCV's Haar
cascade) or a detector of your own. Each face is cut out as the detector's box squared by its longer side, the
framing of the FER faces the model learnt from."""


def _limitations_section(kind: str) -> str:
    """Intended use and limitations: face-crop input, reliability caveats, and what the training data implies."""
    text = """## Intended use and limitations

- **Input must be a face crop.** The model itself does no face detection or alignment: it labels the whole
  image as one face. Crop a single, roughly frontal face first (the `grefel_hf` package's
  `facial-expression-recognition` pipeline and `grefel-hf predict` detect and crop faces for you). A full
  photo, several faces or an image without a face still gets an expression label, possibly with a high score.
- It recognises *facial expressions* as labelled by annotators, not a person's inner emotional state.
  Do not use it for decisions about people (hiring, policing, surveillance, health, credit, education).
- The reliability score is the model's own estimate (the probability GReFEL's attentive path gives the
  predicted class). Check it, and the `--min_score` / `--min_reliability` thresholds, against held-out data from
  your setting (`grefel-hf evaluate` reports both rankings) before using them to accept or reject predictions."""
    return text + _DATASET_NOTES[kind]


def _model_section(config: Mapping[str, Any] | None, record: TrainingRecord | None) -> str:
    """The architecture (key config fields) and where the weights started from."""
    lines = ["## Model", ""]
    if record is None:
        lines.append("How the weights were initialised was not recorded with this card.")
    elif record.fine_tuned_from:
        lines.append(f"Fine-tuned from `{record.fine_tuned_from}`.")
    elif record.backbone_weights:
        lines.append(f"The backbone started from the pretrained weights `{record.backbone_weights}`; GReFEL's own "
                     "layers started from random initialisation.")
    else:
        lines.append("Trained from random initialisation (no pretrained weights).")
    if record is not None and record.dataset:
        mode = f", {record.label_mode} labels" if record.label_mode else ""
        lines.append(f"Training data: `{record.dataset}`{mode}.")
    shown = [(key, (config or {}).get(key)) for key in MODEL_CONFIG_KEYS if (config or {}).get(key) is not None]
    if shown:
        lines += ["", "| Config field | Value |", "|:---|:---|", *[f"| `{k}` | {v} |" for k, v in shown]]
    return "\n".join(lines)


def build_card_data(
    metrics: Mapping[str, Any] | None, *, model_name: str, base_model: str | None, datasets: Sequence[str],
    dataset_name: str, dataset_split: str, license: str, dataset_config: str | None = None,
    extra_tags: Sequence[str] = (),
) -> ModelCardData:
    """The card's YAML metadata, with a model-index built from ``metrics`` when given."""
    eval_results = None
    if metrics is not None:
        dataset_id = datasets[0] if datasets else dataset_name
        eval_results = build_eval_results(metrics, dataset_id=dataset_id, dataset_name=dataset_name,
                                          dataset_split=dataset_split, dataset_config=dataset_config) or None
    return ModelCardData(
        model_name=model_name, library_name="transformers", pipeline_tag="image-classification",
        license=license, tags=list(dict.fromkeys([*TAGS, *extra_tags])), datasets=list(datasets) or None,
        base_model=_hub_base_model(base_model), metrics=["accuracy", "recall", "f1"], eval_results=eval_results,
    )


def build_model_card(
    metrics: Mapping[str, Any] | None, *, repo_id: str, model_name: str, label_names: Sequence[str],
    base_model: str | None, datasets: Sequence[str], dataset_name: str, dataset_split: str,
    license: str = "apache-2.0", training_args: Mapping[str, Any] | None = None,
    record: TrainingRecord | None = None, model_config: Mapping[str, Any] | None = None,
    confusion_matrix_image: str | None = None, reliability_diagram_image: str | None = None,
    training_curves_image: str | None = None, dataset_config: str | None = None, extra_tags: Sequence[str] = (),
    extra_sections: Mapping[str, str] | None = None, usage: str | None = None,
    calibration: CalibrationRecord | None = None, risk_coverage_image: str | None = None,
) -> ModelCard:
    """Build the Hub model card of a GReFEL checkpoint.

    Args:
        metrics: one metrics.json dict (not a dict of raw/EMA variants: the card describes the pushed
            weights only), or None when the model was not evaluated.
        repo_id: Hub repository id used in the usage snippets.
        model_name: title of the card and name in the model-index.
        label_names: class names, index i = class id i; must match ``metrics["labels"]``.
        base_model: timm backbone name (``vit_base_patch16_224.augreg_in21k`` -> ``timm/...``), or None. The card
            names it as its `base_model` only when `record` says the backbone started from pretrained weights.
        datasets: Hub dataset ids (the first one is the model-index dataset), possibly empty.
        dataset_name, dataset_split, dataset_config: the evaluation data shown in the card and model-index.
        license: Hub license identifier.
        training_args: Trainer's training arguments and/or all_results.json as a dict.
        record: how the weights were made (training dataset, pretrained start); None when not recorded.
        model_config: the model's config as a dict, for the model section.
        confusion_matrix_image, reliability_diagram_image, training_curves_image, risk_coverage_image: relative
            paths or URLs of figures in the repository.
        extra_tags: tags added to the default ones.
        extra_sections: more Markdown sections, heading -> body, placed before the citation.
        usage: the "How to use" section's Markdown, instead of the Hub snippets built from `repo_id`.
        calibration: the model's calibration record (its `calibration.json`), or None when it was not calibrated;
            the card's calibration section states it.
    """
    _check_card_metrics(metrics, label_names)
    data = build_card_data(metrics, model_name=model_name, base_model=_pretrained_base(base_model, record), datasets=datasets,
                           dataset_name=dataset_name, dataset_split=dataset_split, license=license,
                           dataset_config=dataset_config, extra_tags=extra_tags)
    images = {"Confusion matrix": confusion_matrix_image, "Reliability diagram": reliability_diagram_image,
              "Risk-coverage curves": risk_coverage_image, "Training curves": training_curves_image}
    kind = dataset_kind(record.dataset if record else None, *datasets, dataset_name)
    body = [_intro(model_name, label_names, base_model, model_config, record),
            usage or _usage_section(repo_id, len(label_names)), _face_detection_section(),
            _model_section(model_config, record),
            _calibration_section(calibration, label_names), _results_section(metrics, dataset_name, dataset_split, images),
            _training_section(training_args),
            _limitations_section(kind)]
    body += [f"## {heading}\n\n{text.strip()}" for heading, text in (extra_sections or {}).items()]
    body.append(f"## Citation\n\n{_CITATION}")
    # Assembled directly instead of through a Jinja template: code snippets then need no escaping, and
    # the `{{ model_name }}` pitfall of ModelCard.from_template cannot occur.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(body) + "\n")


def _pretrained_base(backbone: str | None, record: TrainingRecord | None) -> str | None:
    """The card's `base_model`: the model fine-tuned from when it is a Hub id, else the backbone when it started
    from pretrained weights, else None (a randomly initialised or unrecorded start has no base model)."""
    if record is None:
        return None
    source = record.fine_tuned_from
    if source:
        is_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
        return source if is_hub_id else None
    return backbone if record.backbone_weights else None


def _check_card_metrics(metrics: Mapping[str, Any] | None, label_names: Sequence[str]) -> None:
    """Refuse metrics of several variants, metrics with missing keys, or metrics of other labels."""
    if metrics is None:
        return
    if "accuracy" not in metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        raise ValueError(f"metrics holds variants {list(metrics)}; pass the metrics of the pushed weights only")
    check_metrics_dict(dict(metrics))
    if list(metrics["labels"]) != list(label_names):
        raise ValueError(f"metrics labels {metrics['labels']} differ from label_names {list(label_names)}")


def _intro(model_name: str, label_names: Sequence[str], base_model: str | None,
           config: Mapping[str, Any] | None, record: TrainingRecord | None) -> str:
    """Title and one-paragraph description of the model: backbone, training data and input size."""
    backbone = f" on a `{base_model}` backbone (timm)" if base_model else ""
    trained = f", trained on `{record.dataset}`" if record is not None and record.dataset else ""
    size = (config or {}).get("image_size")
    size_text = f" It reads {size}x{size} pixel RGB face crops." if size else ""
    classes = ", ".join(f"`{name}`" for name in label_names)
    return (f"# {model_name}\n\nA GReFEL (Geometry-aware Reliable Facial Expression Learning) classifier{backbone}"
            f"{trained}.{size_text} Besides the expression it returns a **reliability score** for every prediction, "
            "from anchor-based geometry and attention corrections of its class distribution.\n\n"
            f"Classes: {classes}.")
