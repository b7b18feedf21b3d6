"""Post-hoc calibration (issue 34): the fit, the model applying it, its survival through save/load, the ONNX export,
push_to_hub staging (remote code) and `grefel-hf calibrate`, and the calibration at the end of a training run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_grefel_config
from inference_support import save_tiny_model

from dataset_scripts import load_expression_dataset
from grefel_hf import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor
from grefel_hf.calibration.fitting import (
    CALIBRATION_FILE,
    CalibrationRecord,
    calibrated,
    calibration_scores,
    fit_calibration,
    fit_temperature,
)
from grefel_hf.calibration.folder import write_calibration
from grefel_hf.cli import main as cli_main
from grefel_hf.inference.backends import load_model
from grefel_hf.inference.onnx_export import ProbabilityModel, export_onnx, parity_inputs
from grefel_hf.metrics.classification import calibration_bins, expected_calibration_error
from grefel_hf.pretrained import BUNDLED_MODELS, pretrained_model_path


def sampled_log_probs(temperature: float, count: int = 4000, classes: int = 5, seed: int = 0):
    """Log-probabilities of a model that is miscalibrated by exactly `temperature`: the labels are drawn from
    softmax(log_probs / temperature)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 2.0, (count, classes))
    log_probs = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    true = np.exp(log_probs / temperature)
    true /= true.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in true])
    return log_probs, labels


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_the_temperature_fit_recovers_the_miscalibration_and_keeps_every_label(temperature):
    log_probs, labels = sampled_log_probs(temperature)
    record = fit_calibration(log_probs, labels, "temperature", "made-up", "validation")
    assert record.temperature == pytest.approx(temperature, rel=0.1)
    assert record.ece_after < record.ece_before / 2 and record.nll_after < record.nll_before
    assert record.labels_changed == 0 and record.accuracy_after == record.accuracy_before and record.bias is None
    after = calibrated(log_probs, record.temperature)
    assert np.array_equal(after.argmax(1), log_probs.argmax(1))
    assert record.ece_after == pytest.approx(calibration_scores(after, labels)[0])
    assert fit_temperature(log_probs, labels) == record.temperature


def test_a_bias_fit_finds_a_class_prior_shift_and_counts_the_labels_it_changes():
    log_probs, labels = sampled_log_probs(1.0, classes=4, seed=1)
    shifted = log_probs.copy()
    shifted[:, 0] += 1.5  # a model that favours class 0 too much
    shifted -= np.log(np.exp(shifted).sum(1, keepdims=True))
    record = fit_calibration(shifted, labels, "temperature_bias")
    assert record.bias[0] < -1.0 and sum(record.bias) == pytest.approx(0.0, abs=1e-9)
    after = calibrated(shifted, record.temperature, record.bias)
    assert record.labels_changed == int((after.argmax(1) != shifted.argmax(1)).sum()) > 0
    assert record.accuracy_after > record.accuracy_before and record.nll_after < record.nll_before


def test_a_fit_that_would_raise_the_ece_is_recorded_but_not_applied(tmp_path):
    """Every face gets (0.6, 0.3, 0.1) and 60 % are class 0, 40 % class 1: the top probability is exactly
    calibrated, but the likelihood wants class 2's probability moved to class 1, so it sharpens (T < 1), which
    makes the top probability over-confident."""
    probs, labels = np.tile([0.6, 0.3, 0.1], (100, 1)), np.array([0] * 60 + [1] * 40)
    record = fit_calibration(np.log(probs), labels)
    assert record.temperature < 0.9 and record.nll_after < record.nll_before
    assert record.ece_before == pytest.approx(0.0, abs=1e-9) and record.ece_after > 0.05
    assert not record.applied and "NOT applied" in record.describe()
    assert record.config_values() == {"calibration_temperature": 1.0, "calibration_bias": None}
    folder = save_tiny_model(tmp_path / "model")
    write_calibration(folder, record)
    assert GReFELForImageClassification.from_pretrained(folder).config.calibration_temperature == 1.0
    assert not CalibrationRecord.read(folder).applied


def test_the_record_round_trips_and_bad_records_and_methods_are_refused(tmp_path):
    log_probs, labels = sampled_log_probs(2.0, count=300)
    record = fit_calibration(log_probs, labels, "temperature", "synthetic", "validation")
    record.write(tmp_path)
    assert CalibrationRecord.read(tmp_path) == record and CalibrationRecord.read(tmp_path / "none") is None
    (tmp_path / CALIBRATION_FILE).write_text('{"temperature": 2}')
    with pytest.raises(ValueError, match="is not a calibration record"):
        CalibrationRecord.read(tmp_path)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_calibration(log_probs, labels, "platt")


@pytest.mark.parametrize("values, message", [
    ({"calibration_temperature": 0.0}, "calibration_temperature must be a positive number"),
    ({"calibration_temperature": float("inf")}, "calibration_temperature must be a positive number"),
    ({"calibration_bias": [0.0, 1.0]}, "calibration_bias must be None or 7 finite numbers"),
    ({"calibration_bias": [float("nan")] * 7}, "calibration_bias must be None or 7 finite numbers"),
])
def test_impossible_calibrations_are_refused_naming_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        GReFELConfig(**values)


def test_the_model_applies_its_calibration_to_the_final_distribution_only(tmp_path):
    torch.manual_seed(0)
    model = GReFELForImageClassification(tiny_grefel_config()).eval()
    pixels = torch.randn(6, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = model(pixel_values=pixels)
        model.config.calibration_temperature, model.config.calibration_bias = 0.5, None
        sharp = model(pixel_values=pixels)
        model.config.calibration_temperature, model.config.calibration_bias = 1.0, [0.3, 0, 0, 0, 0, 0, -0.3]
        biased = model(pixel_values=pixels)
    # identity by default: the final distribution itself; temperature 0.5 squares and renormalises it
    torch.testing.assert_close(raw.logits.exp(), raw.corrected_probs.clamp_min(1e-12))
    expected = torch.log_softmax(raw.logits / 0.5, dim=-1)
    torch.testing.assert_close(sharp.logits, expected)
    assert torch.equal(sharp.logits.argmax(-1), raw.logits.argmax(-1))
    assert (sharp.logits.exp().max(-1).values > raw.logits.exp().max(-1).values).all()
    torch.testing.assert_close(biased.logits, torch.log_softmax(raw.logits + torch.tensor([0.3, 0, 0, 0, 0, 0, -0.3]),
                                                               dim=-1))
    for name in ("primary_probs", "corrected_probs", "confidences"):  # the parts stay uncalibrated
        assert torch.equal(getattr(sharp, name), getattr(raw, name))
    # reliability: the attentive path's probability of the predicted class
    torch.testing.assert_close(raw.reliability, raw.attentive_probs.gather(-1, raw.logits.argmax(-1, keepdim=True))[:, 0])


@pytest.fixture(scope="module")
def calibrated_folder(tmp_path_factory):
    """A tiny saved model with a calibration written by `write_calibration` (temperature 0.4 and a bias)."""
    folder = save_tiny_model(tmp_path_factory.mktemp("calibrated") / "model")
    record = CalibrationRecord("temperature_bias", 0.4, [0.2, -0.1, 0.0, 0.1, -0.2, 0.0, 0.0], "synthetic",
                               "validation", 64, 0.2, 0.05, 1.9, 1.8, 0.2, 0.2, 3)
    write_calibration(folder, record)
    return folder


def test_the_calibration_survives_save_and_load_and_the_config_keeps_everything_else(calibrated_folder, tmp_path):
    config = json.loads((calibrated_folder / "config.json").read_text())
    assert config["calibration_temperature"] == 0.4 and config["calibration_bias"][0] == 0.2
    loaded = GReFELForImageClassification.from_pretrained(calibrated_folder)
    assert loaded.config.calibration_temperature == 0.4 and loaded.config.calibration_bias[1] == -0.1
    loaded.save_pretrained(tmp_path / "again")
    again = GReFELForImageClassification.from_pretrained(tmp_path / "again")
    assert again.config.calibration_bias == loaded.config.calibration_bias
    assert json.loads((calibrated_folder / CALIBRATION_FILE).read_text())["labels_changed"] == 3


def test_the_onnx_export_computes_the_calibrated_probabilities(calibrated_folder, tmp_path):
    report = export_onnx(calibrated_folder, tmp_path / "model.onnx")
    assert report.max_abs_diff < 1e-4
    model = GReFELForImageClassification.from_pretrained(calibrated_folder).eval()
    inputs = parity_inputs(load_model(tmp_path / "model.onnx").processor, model.config)["random batch"]
    onnx_model = load_model(tmp_path / "model.onnx").model
    with torch.no_grad():
        expected = model(pixel_values=inputs)
        uncalibrated = ProbabilityModel(GReFELForImageClassification.from_pretrained(
            calibrated_folder, calibration_temperature=1.0, calibration_bias=None).eval())(inputs)[0]
    actual = onnx_model(pixel_values=inputs)
    torch.testing.assert_close(actual.logits.exp(), expected.logits.exp(), atol=1e-4, rtol=0)
    assert (actual.logits.exp() - uncalibrated).abs().max() > 1e-2  # the export did calibrate


@pytest.mark.slow
def test_a_folders_onnx_file_runs_only_while_it_has_the_configs_calibration(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    export_onnx(folder, folder / "model.onnx")
    assert load_model(folder).backend == "onnx"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "calibration_temperature": 0.7}))
    assert load_model(folder).backend == "torch"  # the file computes the old calibration: not used
    record = CalibrationRecord("temperature", 0.7, None, "synthetic", "validation", 8, 0.1, 0.1, 1, 1, 0.5, 0.5, 0)
    write_calibration(folder, record)  # exports model.onnx again
    loaded = load_model(folder)
    assert loaded.backend == "onnx"
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = GReFELForImageClassification.from_pretrained(folder).eval()(pixel_values=pixels).logits.exp()
    torch.testing.assert_close(loaded.model(pixel_values=pixels).logits.exp(), expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_push_to_hub_staging_keeps_the_calibration_in_the_remote_code(calibrated_folder, tmp_path):
    """The staged folder is loaded in a fresh process without grefel_hf: its logits are the calibrated ones, and
    the same weights without the calibration are told apart."""
    from grefel_hf.publish import PushArguments, stage_folder, validate_staged_folder

    stage = tmp_path / "stage"
    model, processor, _ = stage_folder(PushArguments(model_dir=str(calibrated_folder), repo_id="someone/tiny"),
                                       calibrated_folder, stage)
    assert json.loads((stage / "config.json").read_text())["calibration_temperature"] == 0.4
    assert CalibrationRecord.read(stage) == CalibrationRecord.read(calibrated_folder)  # uploaded beside the weights
    assert "a temperature of 0.4000 and a per-class bias" in (stage / "README.md").read_text()
    validate_staged_folder(stage, model, processor)
    uncalibrated = GReFELForImageClassification.from_pretrained(calibrated_folder, calibration_temperature=1.0,
                                                                calibration_bias=None).eval()
    with pytest.raises(RuntimeError, match="logits differ"):
        validate_staged_folder(stage, uncalibrated, processor)


def test_the_calibrate_command_fits_writes_and_refuses_test_splits(tmp_path, caplog):
    folder = save_tiny_model(tmp_path / "model")
    assert cli_main(["calibrate", "--model", str(folder), "--dataset", "synthetic", "--split", "test"]) == 2
    assert "looks like a test split" in caplog.text
    assert cli_main(["calibrate", "--model", str(folder), "--dataset", "synthetic", "--max_samples", "48",
                     "--batch_size", "16", "--no_progress"]) == 0
    record = CalibrationRecord.read(folder)
    assert record.dataset == "synthetic" and record.split == "validation" and record.num_images == 48
    assert record.labels_changed == 0 and record.nll_after <= record.nll_before
    assert json.loads((folder / "config.json").read_text())["calibration_temperature"] == record.temperature
    assert GReFELForImageClassification.from_pretrained(folder).config.calibration_temperature == record.temperature


@pytest.mark.slow
def test_a_tiny_training_run_ends_calibrated_with_a_lower_validation_ece_and_the_same_labels(tmp_path):
    """An over-fitted tiny run is over-confident on validation; its calibration lowers the ECE there without
    changing a predicted label, and the saved model predicts with it."""
    from test_training_run import _args

    from grefel_hf.training.run import run_training

    out = tmp_path / "run"
    summary = run_training(*_args(out, max_steps=40, learning_rate=1e-2, use_ema=False, augment=False, mix_prob=0.0,
                                  per_device_train_batch_size=16,
                                  data={"max_eval_samples": 64, "max_train_samples": 32},
                                  model={"backbone": "test_resnet", "image_size": 32, "dropout": 0.0}))
    record = CalibrationRecord.read(out)
    assert summary.calibration == record and "ECE" in summary.describe()
    assert record.ece_after < record.ece_before and record.labels_changed == 0
    assert record.split == "validation" and record.num_images == 64
    model = GReFELForImageClassification.from_pretrained(out).eval()
    assert model.config.calibration_temperature == record.temperature != 1.0
    split = load_expression_dataset("synthetic")["validation"].select(range(64))
    pixels = GReFELImageProcessor.from_pretrained(out)([e["image"] for e in split], return_tensors="pt")
    labels = np.array(split["label"])
    with torch.no_grad():
        after = model(**pixels).logits.numpy()
        model.config.calibration_temperature = 1.0
        before = model(**pixels).logits.numpy()
    assert np.array_equal(after.argmax(1), before.argmax(1))
    ece = expected_calibration_error(calibration_bins(np.exp(after).max(1), after.argmax(1) == labels))
    assert ece == pytest.approx(record.ece_after, abs=1e-4)


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_each_bundle_records_its_calibration_and_its_onnx_file_computes_it(name):
    folder = pretrained_model_path(name)
    record = CalibrationRecord.read(folder)
    assert record.split == "validation" and record.method == "prior_adjustment" and record.applied
    assert record.balanced_accuracy_after > record.balanced_accuracy_before  # the rule a shipped change meets
    assert record.accuracy_after >= record.accuracy_before - 0.005
    config = json.loads((Path(folder) / "config.json").read_text())
    assert {key: config[key] for key in record.config_values()} == record.config_values()
    assert load_model(folder).backend == "onnx"  # model.onnx matches the weights and this calibration
