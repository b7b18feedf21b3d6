"""The head-cost benchmark (benchmarks/head_cost.py): each variant's model is built with its fields on top of the
benchmark's GReFEL settings, and the report times every model."""

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from torch import nn

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from head_cost import BASE_SETTINGS, build_models, parse_variant  # noqa: E402
from model_overhead import time_train_steps  # noqa: E402

from grefel_hf import BaselineForImageClassification  # noqa: E402


def test_each_variant_overrides_the_base_settings_and_the_plain_head_is_the_reference():
    models, objectives = build_models([{}, {"embed_dim": 128, "feature_levels": [], "branch_gradient_scale": 0.0}])
    variant_name = '{"branch_gradient_scale": 0.0, "embed_dim": 128, "feature_levels": []}'
    assert list(models) == list(objectives) == ["plain", "{}", variant_name]
    base, variant = models["{}"], models[variant_name]
    assert base.config.embed_dim == BASE_SETTINGS["embed_dim"] and base.config.primary_input == "backbone"
    # objective fields reach the loss the step is timed with
    assert objectives["{}"].path_loss_weight == BASE_SETTINGS["path_loss_weight"] and objectives["plain"] is None
    assert variant.config.embed_dim == 128 and variant.config.feature_levels == []
    assert objectives[variant_name].branch_gradient_scale == 0.0 and objectives[variant_name].path_loss_weight == 3.0
    assert len(variant.grefel.level_projections) == 1
    plain = models["plain"]
    assert isinstance(plain, BaselineForImageClassification) and len(plain.classifier) == 1  # one linear layer
    conv = next(m for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_variant_is_a_json_object_of_config_or_objective_fields():
    assert parse_variant('{"path_loss_weight": 3.0, "primary_hidden_sizes": []}') == {
        "path_loss_weight": 3.0, "primary_hidden_sizes": []}
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown GReFELConfig or objective fields \['detach_conf"):
        parse_variant('{"detach_confidences": true}')  # retired: it measured to change nothing
    for text in ("[1, 2]", "{path_loss_weight: 3}"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object of GReFELConfig or objective"):
            parse_variant(text)


def test_the_report_gives_a_ratio_per_variant(tmp_path):
    output = tmp_path / "head_cost.json"
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "head_cost.py"), "--steps", "1",
                    "--threads", "1", "--optimizer", "adamw", "--variants", '{"embed_dim": 64}', "--output",
                    str(output)],
                   check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    report = json.loads(output.read_text())
    (result,) = report["results"]
    assert result["variant"] == {"embed_dim": 64}
    assert result["over_plain"] == result["median_step_seconds"] / report["plain_median_step_seconds"] > 0
    assert report["base_settings"] == BASE_SETTINGS and report["optimizer"] == "adamw"


def test_an_unknown_optimizer_is_refused_by_name():
    with pytest.raises(ValueError, match="optimizer must be one of \\['adamw', 'sgd'\\], got 'adam'"):
        time_train_steps({"plain": nn.Linear(2, 2)}, 8, 1, batch=2, optimizer="adam")
