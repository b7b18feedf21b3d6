"""Soft targets from an ensemble of teachers (benchmarks/distill_targets.py): the mixture, the saved column, the
uncalibrated teachers, the refusals."""

import json
import os
import sys

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_grefel_config

from dataset_scripts.synthetic import load_synthetic
from grefel_hf import GReFELForImageClassification, build_image_processor

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from distill_targets import main, soft_targets, teacher_probabilities  # noqa: E402


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "synthetic"
    data = load_synthetic(train_size=24, validation_size=16, test_size=8)
    datasets.DatasetDict({"train": data["train"], "validation": data["validation"]}).save_to_disk(str(folder))
    return folder


def _teacher(folder, seed: int, **overrides):
    torch.manual_seed(seed)
    config = tiny_grefel_config(**overrides)
    GReFELForImageClassification(config).save_pretrained(folder)
    build_image_processor(config).save_pretrained(folder)
    return str(folder)


def test_soft_targets_mix_the_one_hot_label_and_the_ensemble():
    ensemble = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    targets = soft_targets(np.array([1, 2]), ensemble, hard_weight=0.25)
    np.testing.assert_allclose(targets, [[0.375, 0.475, 0.15], [0.075, 0.075, 0.85]], rtol=1e-6)
    np.testing.assert_allclose(soft_targets(np.array([1, 2]), ensemble, 1.0), [[0, 1, 0], [0, 0, 1]])


def test_the_saved_targets_are_the_mixture_of_the_uncalibrated_teachers(tmp_path, dataset_dir):
    first = _teacher(tmp_path / "a", seed=1, calibration_temperature=3.0, calibration_bias=[0.5] + [0.0] * 6)
    second = _teacher(tmp_path / "b", seed=2)
    report = tmp_path / "teachers.json"
    main(["--teachers", first, second, "--dataset_dir", str(dataset_dir), "--output_dir", str(tmp_path / "out"),
          "--output", str(report), "--hard_weight", "0.4"])

    saved = datasets.load_from_disk(str(tmp_path / "out"))
    train = datasets.load_from_disk(str(dataset_dir))["train"]
    assert list(saved["train"]["label"]) == list(train["label"]) and len(saved["validation"]) == 16
    targets = np.asarray(list(saved["train"]["soft_label"]))
    # The teachers as they would predict with their calibration set aside, computed here from the models directly.
    expected = []
    for folder in (first, second):
        model = GReFELForImageClassification.from_pretrained(folder).eval()
        model.config.calibration_temperature, model.config.calibration_bias = 1.0, None
        pixels = build_image_processor(model.config)(list(train["image"]), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected.append(model(pixel_values=pixels).logits.exp().numpy())
    one_hot = np.eye(7)[list(train["label"])]
    np.testing.assert_allclose(targets, 0.4 * one_hot + 0.6 * np.mean(expected, axis=0), atol=1e-4)

    written = json.loads(report.read_text())
    assert set(written["teachers"]) == {first, second} and written["hard_weight"] == 0.4
    ensemble = written["ensemble"]
    assert list(ensemble["recall"]) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert 0.0 <= ensemble["accuracy"] <= 1.0


def test_teachers_with_other_classes_and_an_existing_output_are_refused(tmp_path, dataset_dir):
    other = _teacher(tmp_path / "c", seed=3, id2label=dict(enumerate("abcdefg")),
                     label2id={name: i for i, name in enumerate("abcdefg")})
    splits = {"train": datasets.load_from_disk(str(dataset_dir))["train"]}
    with pytest.raises(ValueError, match="with none for the dataset's \\['angry'.*every dataset class needs a teacher"):
        teacher_probabilities(other, splits, batch_size=8)
    with pytest.raises(SystemExit) as exit_info:
        main(["--teachers", other, "--dataset_dir", str(dataset_dir), "--output_dir", str(tmp_path),
              "--output", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2


def test_a_dataset_without_a_validation_split_is_refused_in_one_line(tmp_path, dataset_dir, capsys):
    only_train = tmp_path / "only_train"
    datasets.DatasetDict({"train": datasets.load_from_disk(str(dataset_dir))["train"]}).save_to_disk(str(only_train))
    with pytest.raises(SystemExit) as exit_info:
        main(["--teachers", "unused", "--dataset_dir", str(only_train), "--output_dir", str(tmp_path / "out"),
              "--output", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    assert "has no validation split (it has ['train'])" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
