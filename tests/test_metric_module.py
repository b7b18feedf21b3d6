"""Tests for the offline ``fer_accuracy`` evaluate module and Trainer's ``compute_metrics`` factory."""

import numpy as np
import pytest
from transformers import EvalPrediction

from grefel_hf.training.metrics import FER_ACCURACY_DIR, build_compute_metrics, load_fer_accuracy_metric

NAMES = ["angry", "happy", "sad"]
# Confusion rows (true): angry [2, 1, 1], happy [1, 2, 0], sad [0, 1, 2].
REFS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
# Worked by hand: F1 = 2TP / (support + predicted) -> angry 4/7, happy 4/7, sad 4/6.
MACRO_F1 = (4 / 7 + 4 / 7 + 4 / 6) / 3


@pytest.fixture(scope="module")
def metric():
    return load_fer_accuracy_metric()


def test_module_loads_offline_by_path(metric):
    import evaluate

    assert (FER_ACCURACY_DIR / "fer_accuracy.py").is_file()
    assert type(metric).__name__ == "FerAccuracy"
    assert isinstance(metric, evaluate.EvaluationModule)
    assert len(metric) == 0 and not metric  # an empty module is falsy (it has __len__): callers test `is not None`


def test_compute_with_label_names(metric):
    result = metric.compute(predictions=PREDS, references=REFS, label_names=NAMES)
    assert set(result) == {"accuracy", "balanced_accuracy", "macro_f1", "accuracy_angry", "accuracy_happy",
                           "accuracy_sad"}
    assert result["accuracy"] == pytest.approx(6 / 10)
    assert result["balanced_accuracy"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    assert result["macro_f1"] == pytest.approx(MACRO_F1)
    assert result["accuracy_angry"] == pytest.approx(2 / 4)
    assert result["accuracy_happy"] == pytest.approx(2 / 3)
    assert result["accuracy_sad"] == pytest.approx(2 / 3)


def test_batches_and_default_class_keys(metric):
    metric.add_batch(predictions=np.array(PREDS[:4]), references=np.array(REFS[:4]))
    metric.add_batch(predictions=PREDS[4:], references=REFS[4:])
    result = metric.compute()
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["macro_f1"] == pytest.approx(MACRO_F1)
    assert result["accuracy_class_0"] == pytest.approx(0.5)
    # num_classes adds a class with no images: its accuracy is undefined, and it is left out of macro-F1.
    result = metric.compute(predictions=PREDS, references=REFS, num_classes=4)
    assert result["accuracy_class_3"] is None
    assert result["macro_f1"] == pytest.approx(MACRO_F1)


def test_compute_rejects_ids_outside_label_names(metric):
    with pytest.raises(ValueError, match="outside the label set"):
        metric.compute(predictions=[0, 5], references=[0, 1], label_names=NAMES)


def log_probs_for(preds, confidence):
    """Log of a distribution with ``confidence`` on each predicted class."""
    probs = np.full((len(preds), 3), (1 - confidence) / 2, dtype=np.float32)
    probs[np.arange(len(preds)), preds] = confidence
    return np.log(probs)


def test_compute_metrics_reads_named_predictions_with_soft_labels():
    compute_metrics = build_compute_metrics(NAMES)
    soft = np.full((10, 3), 0.1, dtype=np.float32)
    soft[np.arange(10), REFS] = 0.8
    reliability = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.6, 0.3, 0.5, 0.5, 0.4], dtype=np.float32)
    named = {"reliability": reliability, "logits": log_probs_for(PREDS, 0.9)}  # by name, in any order
    result = compute_metrics(EvalPrediction(predictions=named, label_ids=soft))
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["macro_f1"] == pytest.approx(MACRO_F1)
    assert result["accuracy_angry"] == pytest.approx(0.5)
    assert result["accuracy_sad"] == pytest.approx(2 / 3)
    assert result["ece"] == pytest.approx(0.9 - 0.6, abs=1e-6)  # one bin: confidence 0.9, accuracy 0.6
    correct = np.array(PREDS) == np.array(REFS)
    assert result["mean_reliability_correct"] == pytest.approx(reliability[correct].mean())
    assert result["mean_reliability_wrong"] == pytest.approx(reliability[~correct].mean())
    assert all(isinstance(v, float) for v in result.values())


def test_compute_metrics_with_plain_logits_and_int_labels():
    compute_metrics = build_compute_metrics(NAMES)
    # No "sad" images and no "sad" predictions: its accuracy is undefined and not logged.
    result = compute_metrics(EvalPrediction(predictions=log_probs_for([0, 1, 1], 0.6), label_ids=np.array([0, 1, 0])))
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["ece"] == pytest.approx(abs(2 / 3 - 0.6), abs=1e-6)
    assert "accuracy_sad" not in result
    assert "mean_reliability_correct" not in result
    assert result["accuracy_angry"] == pytest.approx(0.5)


def test_compute_metrics_rejects_raw_logits_and_bad_shapes():
    compute_metrics = build_compute_metrics(NAMES)
    raw_logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    with pytest.raises(ValueError, match="sum to 1"):
        compute_metrics(EvalPrediction(predictions=raw_logits, label_ids=np.array([0, 1])))
    with pytest.raises(ValueError, match=r"soft label_ids must have shape \(N, 3\)"):
        compute_metrics(EvalPrediction(predictions=log_probs_for([0, 1], 0.8), label_ids=np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"predictions has no 'logits', only \['probabilities'\]"):
        compute_metrics(EvalPrediction(predictions={"probabilities": log_probs_for([0, 1], 0.8)},
                                       label_ids=np.array([0, 1])))
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_compute_metrics(["only"])
