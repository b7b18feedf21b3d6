"""The CPU-budget benchmark's helpers (benchmarks/fer_cpu_budget.py): GReFEL config variants from the command line, and
the validation figures of the primary head and of each other distribution."""

import argparse
import os
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from test_benchmark_time_budget import _budget_trainer

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from fer_cpu_budget import (  # noqa: E402
    benchmark_training_arguments,
    parse_training_config,
    parse_variant,
    path_validation_metrics,
    primary_validation_metrics,
)


def test_a_variant_is_a_json_object_of_config_fields():
    assert parse_variant('{"path_loss_weight": 3.0, "primary_hidden_sizes": []}') == {
        "path_loss_weight": 3.0, "primary_hidden_sizes": []}
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown GReFELConfig or objective fields \['detach_conf"):
        parse_variant('{"detach_confidences": true}')  # retired: it measured to change nothing
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object of GReFELConfig or objective"):
        parse_variant("[1, 2]")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object of GReFELConfig or objective"):
        parse_variant("{path_loss_weight: 3}")


def test_a_training_config_sets_training_arguments_but_not_those_the_benchmark_owns(tmp_path):
    settings = parse_training_config('{"aug_perspective": 0, "aug_erasing_prob": 0.0, "weight_decay": 0.01}')
    args = argparse.Namespace(batch_size=16, learning_rate=2e-3, seed=7, training_config=settings)
    training_args = benchmark_training_arguments(str(tmp_path), args, mix_prob=0.0)
    assert training_args.augmentation_kwargs()["perspective"] == 0
    assert training_args.augmentation_kwargs()["erasing_prob"] == 0.0
    assert training_args.augmentation_kwargs()["rotation"] == 8.0  # fields it does not name keep their defaults
    assert training_args.weight_decay == 0.01
    assert (training_args.learning_rate, training_args.per_device_train_batch_size) == (2e-3, 16)
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown GReFELTrainingArguments fields \['aug_typo'\]"):
        parse_training_config('{"aug_typo": 1}')
    with pytest.raises(argparse.ArgumentTypeError, match=r"sets \['learning_rate'\].*use --learning_rate"):
        parse_training_config('{"learning_rate": 0.01}')


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
