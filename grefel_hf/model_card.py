"""Model card (README.md with YAML metadata) for a GReFEL checkpoint pushed to the Hugging Face Hub.

``build_model_card`` turns a ``metrics.json`` dict (schema in ``grefel_hf.metrics.classification``), the training
arguments and a few names into a ``huggingface_hub.ModelCard``. The card reports only numbers found in
``metrics`` and ``training_args``; without metrics it says the model was not evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from grefel_hf.evaluation.report import overall_table, per_class_table, render_markdown
from grefel_hf.metrics.classification import check_metrics_dict

logger = logging.getLogger(__name__)

TAGS = ["facial-expression-recognition", "grefel", "custom_code", "image-classification"]
TASK_NAME = "Facial Expression Recognition"
# (key in metrics.json, metric_type, metric_name, metric_args) for the model-index.
MODEL_INDEX_METRICS: list[tuple[str, str, str, dict[str, str] | None]] = [
    ("accuracy", "accuracy", "Accuracy", None),
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
    """One ``EvalResult`` per model-index metric (accuracy, macro-F1, weighted-F1) found in ``metrics``."""
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
        rows.append(f"| `{key}` | {value} |")
    if not rows:
        return f"{header}\n\nNone of the recorded training arguments are among the reported keys."
    return "\n".join([header, "", "| Hyper-parameter | Value |", "|:---|:---|", *rows])


def _limitations_section(datasets: Sequence[str], dataset_name: str) -> str:
    """Intended use and limitations: face-crop input, reliability caveats and the datasets' known biases."""
    text = """## Intended use and limitations

- **Input must be a face crop.** The model does no face detection or alignment: it labels the whole image as
  one face. Crop a single, roughly frontal face first (e.g. with a face detector). A full photo, several faces
  or an image without a face still gets an expression label, possibly with a high score.
- It recognises *facial expressions* as labelled by annotators, not a person's inner emotional state.
  Do not use it for decisions about people (hiring, policing, surveillance, health, credit, education).
- The reliability score is the model's own estimate. Check it against held-out data from your setting
  before using it to accept or reject predictions.
- **Dataset biases (FER2013 / FER+).** The FER2013 faces were web-scraped with image-search queries: a mix
  of posed and spontaneous expressions, stored as 48x48 grayscale images, so colour and fine detail are lost
  and other image sources are out of distribution. The age, gender and skin-tone composition was never
  documented and is skewed; this card reports no accuracy per demographic group.
  The classes are heavily imbalanced: happy is about a quarter of FER2013's training images while disgust
  is about 1.5 % (436 of 28,709), and contempt is the rarest FER+ class; expect lower accuracy on rare
  classes (see the per-class table). Labels are noisy: human accuracy on FER2013 is only about 65 %, and
  FER+ relabelled the same faces with 10 annotators who still often disagree."""
    if any("raf" in name.lower() for name in [*datasets, dataset_name]):
        text += """
- **RAF-DB.** Web images of faces annotated by crowd workers; also imbalanced (fear and disgust are rare)
  and demographically skewed."""
    return text


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
        base_model=_hub_base_model(base_model), metrics=["accuracy", "f1"], eval_results=eval_results,
    )


def build_model_card(
    metrics: Mapping[str, Any] | None, *, repo_id: str, model_name: str, label_names: Sequence[str],
    base_model: str | None, datasets: Sequence[str], dataset_name: str, dataset_split: str,
    license: str = "apache-2.0", training_args: Mapping[str, Any] | None = None,
    confusion_matrix_image: str | None = None, reliability_diagram_image: str | None = None,
    training_curves_image: str | None = None, dataset_config: str | None = None, extra_tags: Sequence[str] = (),
    extra_sections: Mapping[str, str] | None = None,
) -> ModelCard:
    """Build the Hub model card of a GReFEL checkpoint.

    Args:
        metrics: one metrics.json dict (not a dict of raw/EMA variants: the card describes the pushed
            weights only), or None when the model was not evaluated.
        repo_id: Hub repository id used in the usage snippets.
        model_name: title of the card and name in the model-index.
        label_names: class names, index i = class id i; must match ``metrics["labels"]``.
        base_model: timm backbone name (``vit_base_patch16_224.augreg_in21k`` -> ``timm/...``), or None.
        datasets: Hub dataset ids (the first one is the model-index dataset), possibly empty.
        dataset_name, dataset_split, dataset_config: the evaluation data shown in the card and model-index.
        license: Hub license identifier.
        training_args: Trainer's training arguments and/or all_results.json as a dict.
        confusion_matrix_image, reliability_diagram_image, training_curves_image: relative paths or URLs
            of figures in the repository.
        extra_tags: tags added to the default ones.
        extra_sections: more Markdown sections, heading -> body, placed before the citation.
    """
    if metrics is not None:
        if "accuracy" not in metrics and all(isinstance(v, Mapping) for v in metrics.values()):
            raise ValueError(f"metrics holds variants {list(metrics)}; pass the metrics of the pushed weights only")
        check_metrics_dict(dict(metrics))
        if list(metrics["labels"]) != list(label_names):
            raise ValueError(f"metrics labels {metrics['labels']} differ from label_names {list(label_names)}")
    data = build_card_data(metrics, model_name=model_name, base_model=base_model, datasets=datasets,
                           dataset_name=dataset_name, dataset_split=dataset_split, license=license,
                           dataset_config=dataset_config, extra_tags=extra_tags)
    images = {"Confusion matrix": confusion_matrix_image, "Reliability diagram": reliability_diagram_image,
              "Training curves": training_curves_image}
    body = [_intro(model_name, label_names, base_model), _usage_section(repo_id, len(label_names)),
            _results_section(metrics, dataset_name, dataset_split, images), _training_section(training_args),
            _limitations_section(datasets, dataset_name)]
    body += [f"## {heading}\n\n{text.strip()}" for heading, text in (extra_sections or {}).items()]
    body.append(f"## Citation\n\n{_CITATION}")
    # Assembled directly instead of through a Jinja template: code snippets then need no escaping, and
    # the `{{ model_name }}` pitfall of ModelCard.from_template cannot occur.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(body) + "\n")


def _intro(model_name: str, label_names: Sequence[str], base_model: str | None) -> str:
    """Title and one-paragraph description of the model."""
    backbone = f" on a `{base_model}` backbone (timm)" if base_model else ""
    classes = ", ".join(f"`{name}`" for name in label_names)
    return (f"# {model_name}\n\nA GReFEL (Geometry-aware Reliable Facial Expression Learning) classifier{backbone}. "
            "Besides the expression it returns a **reliability score** for every prediction, from anchor-based "
            f"geometry and attention corrections of its class distribution.\n\nClasses: {classes}.")
