"""Tests for grefel_hf.model_card: metadata, model-index, body content and no invented numbers."""

import numpy as np
import pytest
from huggingface_hub import ModelCard

from grefel_hf.metrics.classification import compute_classification_metrics
from grefel_hf.model_card import TrainingRecord, build_model_card

NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
CARD_KWARGS = dict(repo_id="someone/grefel-resnet18-fer2013", model_name="grefel-resnet18-fer2013",
                   label_names=NAMES, base_model="resnet18.a1_in1k", datasets=["someone/fer2013"],
                   dataset_name="FER2013", dataset_split="test")


@pytest.fixture(scope="module")
def metrics():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, len(NAMES), 300)
    logits = rng.normal(size=(300, len(NAMES)))
    logits[np.arange(300), labels] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return compute_classification_metrics(labels, probs, reliability=rng.random(300), label_names=NAMES)


def save_and_load(card, tmp_path):
    path = tmp_path / "README.md"
    card.save(path)
    return ModelCard.load(path)


def test_metadata_and_model_index_round_trip(tmp_path, metrics):
    training_args = {"learning_rate": 3e-4, "num_train_epochs": 40, "per_device_train_batch_size": 64,
                     "seed": 1234, "max_steps": -1, "logging_dir": "/somewhere"}
    record = TrainingRecord(dataset="fer2013", backbone_weights="resnet18-imagenet.safetensors")
    card = save_and_load(build_model_card(metrics, training_args=training_args, record=record,
                                          confusion_matrix_image="confusion_matrix.png", **CARD_KWARGS), tmp_path)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-classification"
    assert {"facial-expression-recognition", "grefel", "custom_code", "image-classification"} <= set(data["tags"])
    assert data["license"] == "apache-2.0"
    assert data["datasets"] == ["someone/fer2013"]
    assert data["base_model"] == "timm/resnet18.a1_in1k"
    (entry,) = data["model-index"]
    assert entry["name"] == "grefel-resnet18-fer2013"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"name": "FER2013", "type": "someone/fer2013", "split": "test"}
    values = {(m["name"], m["type"]): m["value"] for m in result["metrics"]}
    assert values == {("Accuracy", "accuracy"): metrics["accuracy"], ("Macro F1", "f1"): metrics["macro_f1"],
                      ("Balanced accuracy", "recall"): metrics["balanced_accuracy"],
                      ("Weighted F1", "f1"): metrics["weighted_f1"]}

    text = card.text
    assert "![Confusion matrix](confusion_matrix.png)" in text
    assert "| `learning_rate` | 0.0003 |" in text and "| `seed` | 1234 |" in text
    assert "max_steps" not in text and "logging_dir" not in text
    for name in NAMES:  # per-class table: one row per class with its accuracy in %
        accuracy = metrics["per_class"][name]["accuracy"]
        assert f"| {name} | {metrics['per_class'][name]['support']} |" in text
        assert f"{100 * accuracy:.2f}" in text


def test_usage_snippets_and_limitations(tmp_path, metrics):
    text = save_and_load(build_model_card(metrics, **CARD_KWARGS), tmp_path).text
    assert 'pipeline("image-classification", model="someone/grefel-resnet18-fer2013", trust_remote_code=True)' in text
    assert "AutoModelForImageClassification.from_pretrained(" in text
    assert "AutoImageProcessor.from_pretrained(" in text
    assert "outputs.reliability" in text and "outputs.logits.exp()" in text
    assert "top_k=7" in text
    lowered = text.lower()
    assert "input must be a face crop" in lowered and "no face detection" in lowered
    for bias in ("web-scraped", "posed and spontaneous", "48x48 grayscale", "imbalanced", "disgust", "contempt",
                 "noisy", "65 %", "skin-tone"):
        assert bias in lowered, bias
    assert "raf-db" not in lowered  # only mentioned when a RAF-DB dataset is used


def test_card_without_metrics_says_not_evaluated(tmp_path):
    card = save_and_load(build_model_card(None, **CARD_KWARGS), tmp_path)
    assert "model-index" not in card.data.to_dict()
    assert "not been evaluated" in card.text
    assert "Accuracy (%)" not in card.text and "Training hyper-parameters were not recorded" in card.text


def test_rafdb_bias_and_extra_sections(tmp_path, metrics):
    kwargs = {**CARD_KWARGS, "datasets": ["someone/raf-db"], "dataset_name": "RAF-DB basic"}
    card = save_and_load(build_model_card(metrics, extra_sections={"Notes": "Trained twice."},
                                          extra_tags=["vit"], **kwargs), tmp_path)
    assert "**RAF-DB.**" in card.text
    assert "## Notes\n\nTrained twice." in card.text
    assert "vit" in card.data.to_dict()["tags"]


def test_bad_metrics_are_rejected(metrics):
    with pytest.raises(ValueError, match="variants"):
        build_model_card({"raw": metrics, "ema": metrics}, **CARD_KWARGS)
    with pytest.raises(ValueError, match="differ from label_names"):
        build_model_card(metrics, **{**CARD_KWARGS, "label_names": NAMES[::-1]})
    with pytest.raises(ValueError, match="missing metrics.json key"):
        build_model_card({"accuracy": 0.5}, **CARD_KWARGS)


def test_a_card_states_the_training_data_and_start_and_drops_what_does_not_apply(tmp_path, metrics):
    config = {"backbone": "resnet18", "image_size": 64, "embed_dim": 128, "primary_input": "backbone",
              "bogus": 1}
    synthetic = TrainingRecord(dataset="synthetic")
    text = save_and_load(build_model_card(metrics, record=synthetic, model_config=config,
                                          training_args={"train_runtime": 183.4, "warmup_steps": 0.05},
                                          **CARD_KWARGS), tmp_path).text
    assert "**Not for real faces.**" in text and "web-scraped" not in text  # no FER2013 note for generated faces
    assert "trained on `synthetic`" in text and "reads 64x64 pixel" in text and "random initialisation" in text
    assert "| `primary_input` | backbone |" in text and "bogus" not in text
    assert "| `train_runtime` | 183 s |" in text and "| `warmup_steps` | 0.05 (fraction of the training steps) |" in text
    data = save_and_load(build_model_card(metrics, record=synthetic, **CARD_KWARGS), tmp_path).data.to_dict()
    assert "base_model" not in data  # random initialisation: nothing to name
    tuned = TrainingRecord(dataset="ferplus", fine_tuned_from="someone/grefel-base")
    data = save_and_load(build_model_card(metrics, record=tuned, **CARD_KWARGS), tmp_path).data.to_dict()
    assert data["base_model"] == "someone/grefel-base"
    unrecorded = save_and_load(build_model_card(metrics, **CARD_KWARGS), tmp_path)
    assert "base_model" not in unrecorded.data.to_dict() and "was not recorded" in unrecorded.text


def test_the_card_states_the_calibration_and_which_ranking_answers_best(tmp_path, metrics):
    from grefel_hf.calibration.fitting import CalibrationRecord

    record = CalibrationRecord("temperature", 0.6543, None, "ferplus", "validation", 300, 0.1129, 0.0165, 0.4144,
                               0.338, 0.8856, 0.8856, 0)
    text = save_and_load(build_model_card(metrics, calibration=record, **CARD_KWARGS), tmp_path).text
    assert "a temperature of 0.6543, fitted by negative log-likelihood on the `validation` split of ferplus" in text
    assert "from 11.29 % to 1.65 %" in text and "(0 predicted labels changed)" in text
    selective = metrics["selective"]
    best = {"top_probability": "top probability", "reliability": "reliability",
            "product": "top probability × reliability"}[selective["best_ranking"]]
    assert f"Ranked by **{best}**, the answers have the lowest area under the risk-coverage curve" in text
    top_80 = selective["rankings"]["top_probability"]["accuracy_at"]["0.8"]
    assert f"answered first: top probability {100 * top_80:.2f} %" in text
    kept = selective["rankings"]["top_probability"]["at_threshold"]["0.6"]
    assert f"| 0.6 | {100 * kept['coverage']:.2f} | {100 * kept['accuracy']:.2f} |" in text
    uncalibrated = save_and_load(build_model_card(metrics, **CARD_KWARGS), tmp_path).text
    assert "No calibration was fitted to this model" in uncalibrated
    declined = CalibrationRecord("temperature", 0.9508, None, "fer2013", "validation", 3589, 0.0404, 0.0498, 0.9019,
                                 0.9005, 0.6815, 0.6815, 0, applied=False)
    text = save_and_load(build_model_card(metrics, calibration=declined, **CARD_KWARGS), tmp_path).text
    assert "would have raised the expected calibration error there from 4.04 % to 4.98 %" in text
    assert "so it is not applied" in text
