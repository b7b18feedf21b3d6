"""The weight soup of runs from one start (benchmarks/weight_soup.py): the average, the folder it saves, its refusals."""

import json
import os
import sys

import pytest
import torch
from conftest import REPO_ROOT, tiny_grefel_config
from safetensors.torch import load_file

from grefel_hf import GReFELConfig, GReFELForImageClassification, build_image_processor

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from weight_soup import average_weights, main  # noqa: E402


def _saved_run(folder, seed: int, **overrides):
    """A tiny GReFEL saved as a training run saves it, with a non-identity calibration in its config."""
    torch.manual_seed(seed)
    config = tiny_grefel_config(calibration_temperature=1.7, **overrides)
    model = GReFELForImageClassification(config)
    model.save_pretrained(folder)
    build_image_processor(config).save_pretrained(folder)
    return folder


def test_the_soup_is_the_weighted_mean_and_a_loadable_model_with_identity_calibration(tmp_path):
    first, second = _saved_run(tmp_path / "a", seed=1), _saved_run(tmp_path / "b", seed=2)
    report = tmp_path / "soup.json"
    assert main(["--runs", str(first), str(second), str(second), "--dataset", "synthetic",
                 "--soup_dir", str(tmp_path / "soup"), "--output", str(report)]) == 0

    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    soup = load_file(tmp_path / "soup" / "model.safetensors")
    floats = [key for key, tensor in a.items() if tensor.is_floating_point()]
    assert floats and any(not torch.equal(a[key], b[key]) for key in floats)
    for key in floats:
        torch.testing.assert_close(soup[key], (a[key] + 2 * b[key]) / 3)
    for key in set(a) - set(floats):
        assert torch.equal(soup[key], a[key])

    config = GReFELConfig.from_pretrained(tmp_path / "soup")
    assert config.calibration_temperature == 1.0 and config.calibration_bias is None
    GReFELForImageClassification.from_pretrained(tmp_path / "soup")

    written = json.loads(report.read_text())
    assert written["ingredients"] == ["a", "b", "b"] and written["split"] == "validation"
    assert written["num_images"] == 500
    assert list(written["recall"]) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    recalls = list(written["recall"].values())
    assert written["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))


def test_runs_of_different_architectures_are_refused(tmp_path):
    first = _saved_run(tmp_path / "a", seed=1)
    other = _saved_run(tmp_path / "b", seed=1, embed_dim=16)
    with pytest.raises(ValueError, match="does not match .*one architecture"):
        average_weights([first, other])
    with pytest.raises(ValueError, match="model.safetensors does not exist"):
        average_weights([first, tmp_path / "missing"])


def test_the_command_refuses_one_run_and_any_split_but_validation(tmp_path, capsys):
    run = str(_saved_run(tmp_path / "a", seed=1))
    for argv in (["--runs", run], ["--runs", run, run, "--split", "test"]):
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--dataset", "synthetic", "--soup_dir", str(tmp_path / "soup")])
        assert stop.value.code == 2
    assert "at least two folders" in capsys.readouterr().err
