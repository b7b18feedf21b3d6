"""The head-cost benchmark (benchmarks/head_cost.py): each variant's model is built with its fields on top of the
benchmark's GReFEL settings, and the report times every model."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from torch import nn

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from head_cost import BASE_SETTINGS, build_models  # noqa: E402
from model_overhead import time_train_steps  # noqa: E402


def test_each_variant_overrides_the_base_settings_and_the_plain_head_is_the_reference():
    models = build_models([{}, {"embed_dim": 128, "feature_levels": []}])
    assert list(models) == ["plain", "{}", '{"embed_dim": 128, "feature_levels": []}']
    base, variant = models["{}"].config, models['{"embed_dim": 128, "feature_levels": []}'].config
    assert base.embed_dim == BASE_SETTINGS["embed_dim"] and base.primary_input == "backbone"
    assert variant.embed_dim == 128 and variant.feature_levels == [] and variant.primary_input == "backbone"
    assert len(models['{"embed_dim": 128, "feature_levels": []}'].grefel.level_projections) == 1
    conv = next(m for m in models["plain"].modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


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
