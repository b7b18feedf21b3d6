"""The CPU-budget benchmark (benchmarks/fer_cpu_budget.py): a recipe and its overrides give both setups (GReFEL, and
the baseline's plain head with the same backbone and training), the protocol owns its own settings, a run trains and
reports both, and the validation figures of the primary head and of each other distribution."""

import dataclasses
import json
import os
import re
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_backbone_weights
from test_benchmark_time_budget import _budget_trainer

from grefel_hf.training.arguments import DataArguments
from grefel_hf.training.data import load_dataset_dict, prepare_training_data

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from fer_cpu_budget import (  # noqa: E402
    parse_arguments,
    path_validation_metrics,
    primary_validation_metrics,
    run_setup,
    setup_arguments,
)

RECIPE = os.path.join(REPO_ROOT, "recipes", "grefel_cpu_fer2013.yaml")


def test_the_recipe_and_its_overrides_give_both_setups_and_the_protocol_its_own_settings(tmp_path):
    args = parse_arguments([RECIPE, "--aug_rotation", "3", "--seed", "7", "--budget_minutes", "2", "--work_dir",
                            str(tmp_path)])
    assert args.budget_minutes == 2.0 and args.setups == ["grefel", "plain"]
    grefel_model, grefel = setup_arguments("grefel", args)
    plain_model, plain = setup_arguments("plain", args)
    for training in (grefel, plain):  # the recipe's values, the override, and the protocol's own settings
        assert (training.learning_rate, training.backbone_frozen_groups, training.path_loss_weight) == (1e-3, 3, 3.0)
        assert (training.aug_rotation, training.aug_perspective, training.seed) == (3.0, 0.0, 7)
        assert (training.eval_strategy, training.save_strategy, training.use_cpu) == ("no", "no", True)
    assert grefel.output_dir == str(tmp_path / "fer2013-grefel") and plain.output_dir == str(tmp_path / "fer2013-plain")
    assert grefel_model.model_type == "grefel" and grefel_model.config_overrides()["embed_dim"] == 256
    assert plain_model.model_type == "baseline" and plain_model.backbone_weights == "efficientnet-lite0"
    assert plain_model.config_overrides() == {"backbone": "tf_efficientnet_lite0", "image_size": 80}


@pytest.mark.parametrize("argv, message", [
    (["--seed", "1"], "give a recipe file first"),
    ([RECIPE, "--max_steps", "5"], r"\['--max_steps'\] are the benchmark's to set: use --budget_minutes"),
    ([RECIPE, "--output_dir", "x"], r"are the benchmark's to set: use --work_dir"),
    ([os.path.join(REPO_ROOT, "recipes", "emotionnet_fer2013.yaml")], "the grefel setup needs a GReFEL recipe"),
    ([RECIPE, "--dataset", "rafdb"], r"reads the shared \['fer2013', 'ferplus'\] data"),
    ([RECIPE, "--one_cycle", "true", "--warmup_steps", "0"], "schedule runs on the wall clock"),
    ([RECIPE, "--lerning_rate", "1"], r"\['--lerning_rate', '1'\]"),
])
def test_what_the_protocol_cannot_run_is_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_arguments(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fer_cpu_budget.py: error: ")
    assert re.search(message, err), err


def test_a_run_trains_both_setups_for_the_budget_and_reports_them(tmp_path):
    data_args = DataArguments(max_train_samples=256, max_eval_samples=16)
    weights = tiny_backbone_weights(tmp_path, "test_efficientnet", 32)
    args = parse_arguments([RECIPE, "--backbone", "test_efficientnet", "--backbone_weights", weights,
                            "--image_size", "32", "--per_device_train_batch_size", "8", "--embed_dim", "32",
                            "--budget_minutes", "0.02", "--work_dir", str(tmp_path),
                            "--data_args", json.dumps(dataclasses.asdict(data_args))])
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    results = {setup: run_setup(setup, args, data) for setup in ("grefel", "plain")}
    for setup, result in results.items():
        assert result["steps"] >= 1 and 0.0 <= result["validation_selected_accuracy"] <= 1.0, setup
        assert result["validation_images"] == 16 and result["training_arguments"]["backbone_frozen_groups"] == 3
    assert results["plain"]["model_arguments"]["model_type"] == "baseline"
    assert "embed_dim" not in results["plain"]["model_arguments"]
    assert {"p", "q", "p_r_agreement"} <= set(results["grefel"]["validation_paths"])
    assert results["grefel"]["final_inference_mode"] in ("primary", "corrected")


def test_primary_head_figures_are_those_of_p_and_leave_the_inference_mode_alone(tmp_path):
    trainer = _budget_trainer(tmp_path, 8.0, clock=lambda: 0.0)
    model = trainer.model.eval()
    labels, predictions = [], []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            predictions.append(model(pixel_values=batch["pixel_values"]).primary_probs.argmax(dim=1))
            labels.append(batch["labels"])
    expected = (torch.cat(predictions) == torch.cat(labels)).float().mean().item()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    figures = primary_validation_metrics(trainer, "raw", names)
    assert figures["accuracy"] == pytest.approx(expected)
    assert figures["weights"] == "raw" and set(figures["per_class_accuracy"]) == set(names)
    assert np.isfinite(figures["macro_f1"])
    assert model.config.inference_mode == "corrected"  # restored after the primary-only pass


def test_path_figures_match_each_distribution_and_remove_their_hook(tmp_path):
    trainer = _budget_trainer(tmp_path, 8.0, clock=lambda: 0.0)
    model = trainer.model.eval()
    predicted, labels = {name: [] for name in "pgtrq"}, []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            output = model(pixel_values=batch["pixel_values"])
            # the basic geometry variant: every sample uses the shared anchors
            r, g, t, _, _ = model.reliability(output.embeddings, model.grefel.anchors.flatten(0, 1))
            for name, probs in zip("pgtrq", (output.primary_probs, g, t, r, output.corrected_probs), strict=True):
                predicted[name].append(probs.argmax(dim=1))
            labels.append(batch["labels"])
    labels = torch.cat(labels)
    predicted = {name: torch.cat(values) for name, values in predicted.items()}
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    figures = path_validation_metrics(trainer, "raw", names)
    for name in "pgtrq":
        assert figures[name]["accuracy"] == pytest.approx((predicted[name] == labels).float().mean().item()), name
        assert np.isfinite(figures[name]["macro_f1"])
    assert figures["p_r_agreement"] == pytest.approx((predicted["p"] == predicted["r"]).float().mean().item())
    assert not model.reliability._forward_hooks  # the benchmark's hook is gone
