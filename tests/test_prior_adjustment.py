"""Post-hoc logit adjustment by the class priors (issue 36): the rule that chooses τ, the priors of a training split,
the fit composed with the temperature, its record and card, and a tiny model calibrated with it from its folder
(`grefel-hf calibrate --method prior_adjustment`), which stays loadable and exports to ONNX."""

import json

import datasets
import numpy as np
import pytest
import torch
from inference_support import save_tiny_model

from grefel_hf import GReFELForImageClassification
from grefel_hf.calibration.fitting import (
    CALIBRATION_FILE,
    CalibrationRecord,
    calibrated,
    fit_calibration,
    top_probability_ece,
)
from grefel_hf.calibration.folder import CalibrationOptions
from grefel_hf.calibration.priors import (
    MAX_ACCURACY_DROP,
    TauScore,
    adjusted_log_probs,
    choose_tau,
    class_priors,
    tau_curve,
)
from grefel_hf.cli import main as cli_main
from grefel_hf.metrics.classification import balanced_accuracy

PRIORS = np.array([0.7, 0.2, 0.07, 0.03])


def skewed_log_probs(count: int = 6000, seed: int = 0):
    """Labels drawn with the skewed `PRIORS`, and the log-probabilities of a model that learnt those priors: the
    posterior of noisy evidence for the true class (log-likelihood + log prior, normalised)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(PRIORS.size, count, p=PRIORS)
    evidence = rng.normal(0.0, 1.0, (count, PRIORS.size))
    evidence[np.arange(count), labels] += 1.5
    scores = evidence + np.log(PRIORS)
    return scores - np.log(np.exp(scores).sum(1, keepdims=True)), labels


def test_the_rule_keeps_the_best_balanced_accuracy_within_half_a_point_of_accuracy():
    curve = [TauScore(0.0, 0.900, 0.50), TauScore(0.05, 0.897, 0.58), TauScore(0.1, 0.896, 0.58),
             TauScore(0.15, 0.880, 0.70)]
    assert choose_tau(curve).tau == 0.05  # 0.15 costs 2 points; 0.05 and 0.1 tie, the smaller wins
    assert choose_tau([TauScore(0.0, 0.9, 0.5), TauScore(0.05, 0.89, 0.6)]).tau == 0.0  # 1 point: too much
    assert choose_tau([TauScore(0.0, 0.9, 0.5), TauScore(0.05, 0.9, 0.5)]).tau == 0.0  # no gain: no change
    with pytest.raises(ValueError, match="must start at 0"):
        tau_curve(np.zeros((2, 2)), np.array([0, 1]), np.zeros(2), (0.5,))


def test_the_priors_of_a_training_split_are_its_label_shares_or_its_mean_soft_label():
    label = datasets.ClassLabel(names=["a", "b", "c"])
    hard = datasets.Dataset.from_dict({"label": [0, 0, 0, 1]}, features=datasets.Features({"label": label}))
    with pytest.raises(ValueError, match=r"no images of \['c'\]"):
        class_priors(hard)
    hard = datasets.Dataset.from_dict({"label": [0, 0, 1, 2]}, features=datasets.Features({"label": label}))
    np.testing.assert_allclose(class_priors(hard), [0.5, 0.25, 0.25])
    soft = datasets.Dataset.from_dict({"label": [0, 1], "soft_label": [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]},
                                      features=datasets.Features({"label": label,
                                                                  "soft_label": datasets.List(datasets.Value(
                                                                      "float32"), length=3)}))
    np.testing.assert_allclose(class_priors(soft), [0.25, 0.5, 0.25])


def test_the_adjustment_raises_balanced_accuracy_within_the_rule_and_the_temperature_keeps_its_decisions(tmp_path):
    log_probs, labels = skewed_log_probs()
    record = fit_calibration(log_probs, labels, "prior_adjustment", "made-up", "validation", PRIORS, "made-up train")
    assert record.prior_tau > 0 and record.applied and record.labels_changed > 0
    assert record.balanced_accuracy_after > record.balanced_accuracy_before + 0.02
    assert record.accuracy_after >= record.accuracy_before - MAX_ACCURACY_DROP
    assert record.recall_after[3] > record.recall_before[3]  # the rarest class gains
    log_priors = np.log(PRIORS)
    expected_bias = -(record.prior_tau / record.temperature) * (log_priors - log_priors.mean())
    np.testing.assert_allclose(record.bias, expected_bias)
    after = calibrated(log_probs, record.temperature, record.bias)
    shifted = adjusted_log_probs(log_probs, log_priors, record.prior_tau)
    assert np.array_equal(after.argmax(1), shifted.argmax(1))  # the temperature changes no adjusted decision
    assert balanced_accuracy(labels, after.argmax(1), 4) == pytest.approx(record.balanced_accuracy_after)
    unscaled = calibrated(log_probs, 1.0, list(-record.prior_tau * (log_priors - log_priors.mean())))
    assert record.ece_after <= top_probability_ece(unscaled, labels) + 1e-12
    assert [(e["fit_half"], e["score_half"]) for e in record.held_out] == [("even", "odd"), ("odd", "even")]
    assert all(e["num_images"] == 3000 and e["after"]["tau"] == e["tau"] for e in record.held_out)
    record.write(tmp_path)
    assert CalibrationRecord.read(tmp_path) == record
    assert "prior adjustment tau" in record.describe() and "balanced accuracy" in record.describe()
    with pytest.raises(ValueError, match="needs the training split's class priors"):
        fit_calibration(log_probs, labels, "prior_adjustment")


def test_records_written_before_the_adjustment_still_read(tmp_path):
    old = {"method": "temperature", "temperature": 0.65, "bias": None, "dataset": "ferplus", "split": "validation",
           "num_images": 10, "ece_before": 0.1, "ece_after": 0.02, "nll_before": 0.4, "nll_after": 0.3,
           "accuracy_before": 0.9, "accuracy_after": 0.9, "labels_changed": 0, "applied": True}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(old))
    record = CalibrationRecord.read(tmp_path)
    assert record.prior_tau is None and record.balanced_accuracy_before is None and record.temperature == 0.65


def test_a_test_split_never_gives_the_priors(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    with pytest.raises(ValueError, match="--priors_split 'test' looks like a test split"):
        CalibrationOptions(model_dir=str(folder), dataset="synthetic", method="prior_adjustment", priors_split="test")


def test_the_card_says_how_each_class_fares():
    from test_model_card import CARD_KWARGS

    from grefel_hf.model_card import build_model_card

    names = ["angry", "disgust", "fear"]

    record = CalibrationRecord("prior_adjustment", 0.9, [0.3, -0.1, -0.2], "fer2013", "validation", 300, 0.05, 0.04,
                               0.9, 0.88, 0.70, 0.698, 12, True, 0.60, 0.64, [0.9, 0.5, 0.4], [0.88, 0.55, 0.5],
                               0.25, [0.6, 0.3, 0.1], "the 'train' split of fer2013 (1000 images): its label "
                               "frequencies",
                               [{"fit_half": "even", "score_half": "odd", "tau": 0.3, "num_images": 150,
                                 "before": {"tau": 0.0, "accuracy": 0.7, "balanced_accuracy": 0.6},
                                 "after": {"tau": 0.3, "accuracy": 0.69, "balanced_accuracy": 0.63}}])
    text = build_model_card(None, calibration=record, **{**CARD_KWARGS, "label_names": names}).text
    assert "## Calibration and class balance" in text and "τ = 0.25" in text
    assert "balanced accuracy 60.00 → 64.00 %" in text and "(12 predicted labels changed)" in text
    assert "τ = 0.3 from the even half gives the odd half accuracy 70.00 → 69.00 %" in text
    assert "| fear | 10.00 % | 40.00 → 50.00 % |" in text
    assert "A temperature of 0.9000, fitted by negative log-likelihood after the shift" in text


def skewed_folder_data(model, processor, folder, count: int = 96):
    """A save_to_disk dataset for `model`: validation faces labelled by the model's decisions without its per-class
    offsets (log-probabilities less their mean over the faces), and a training split whose class shares are those
    offsets' (π ∝ exp(mean log-probability)), as if the model had learnt them from it. Returns the labels."""
    from dataset_scripts import load_expression_dataset

    faces = load_expression_dataset("synthetic")["validation"].select(range(count))
    images = [f["image"] for f in faces]
    with torch.no_grad():
        log_probs = model(**processor(images, return_tensors="pt")).logits.double().numpy()
    offsets = log_probs.mean(axis=0)
    labels = (log_probs - offsets).argmax(axis=1)
    shares = np.exp(offsets) / np.exp(offsets).sum()
    train_labels = [c for c, n in enumerate(np.maximum(1, np.round(2000 * shares)).astype(int)) for _ in range(n)]
    label = datasets.ClassLabel(names=[model.config.id2label[i] for i in range(model.config.num_labels)])
    features = datasets.Features({"image": datasets.Image(), "label": label})
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"image": [images[0]] * len(train_labels), "label": train_labels},
                                            features=features),
        "validation": datasets.Dataset.from_dict({"image": images, "label": labels.tolist()}, features=features),
    }).save_to_disk(str(folder))
    return labels, shares


@pytest.mark.slow
def test_a_tiny_model_that_favours_common_classes_is_adjusted_from_its_folder_and_stays_loadable_and_exportable(
        tmp_path):
    """The tiny model's decisions lean on per-class offsets, as a model's lean on the priors of its training split;
    the split saved beside it has those priors. The adjustment, read from the folder and the split, gives the other
    classes their faces back; the folder's model applies it, in ONNX Runtime too."""
    from grefel_hf import GReFELImageProcessor
    from grefel_hf.inference.backends import load_model
    from grefel_hf.inference.onnx_export import export_onnx

    folder = save_tiny_model(tmp_path / "model", inference_mode="primary", dropout=0.0)
    export_onnx(folder, folder / "model.onnx")
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    processor = GReFELImageProcessor.from_pretrained(folder)
    truth, shares = skewed_folder_data(model, processor, tmp_path / "data")
    assert cli_main(["calibrate", "--model", str(folder), "--dataset", str(tmp_path / "data"), "--method",
                     "prior_adjustment", "--batch_size", "32", "--no_progress"]) == 0
    record = CalibrationRecord.read(folder)
    assert record.prior_tau > 0 and record.class_priors == pytest.approx(shares, abs=1e-3)
    assert record.balanced_accuracy_after > record.balanced_accuracy_before + 0.2
    assert record.accuracy_after >= record.accuracy_before - MAX_ACCURACY_DROP
    assert "'train' split" in record.priors_from and "label frequencies" in record.priors_from
    loaded = GReFELForImageClassification.from_pretrained(folder).eval()
    assert loaded.config.calibration_bias == pytest.approx(record.bias)
    split = datasets.load_from_disk(str(tmp_path / "data"))["validation"]
    pixels = processor([f["image"] for f in split], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        adjusted = loaded(pixel_values=pixels).logits
        uncalibrated = model(pixel_values=pixels).logits
    expected = calibrated(uncalibrated.double().numpy(), record.temperature, record.bias)
    np.testing.assert_allclose(adjusted.double().numpy(), expected, atol=1e-5)
    assert balanced_accuracy(truth, adjusted.argmax(1).numpy(), 7) > record.balanced_accuracy_before + 0.2
    onnx = load_model(folder)
    assert onnx.backend == "onnx"  # model.onnx was exported again with the new calibration
    torch.testing.assert_close(onnx.model(pixel_values=pixels).logits.exp(), adjusted.exp(), atol=1e-4, rtol=0)
