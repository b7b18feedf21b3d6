"""The recipe files: each says what it reproduces, parses, keeps its values under overrides, runs two steps on the
generated set with a tiny backbone of the same family, and saves a model that reloads through the Auto classes and
scores what the run reported."""

import itertools
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, tiny_backbone_weights
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from grefel_hf.data.augmentation import build_eval_transform
from grefel_hf.data.collators import GReFELEvalCollator
from grefel_hf.training.argument_parser import parse_training_arguments, read_recipe
from grefel_hf.training.data import load_dataset_dict, prepare_training_data
from grefel_hf.training.run import run_training
from grefel_hf.tta_grefel import predict_probabilities

sys.path.insert(0, REPO_ROOT)
import train_hf  # noqa: E402

RECIPES = sorted(Path(REPO_ROOT, "recipes").glob("*.yaml"))
SYSTEMS = {  # the seeds' systems and the CPU-best GReFEL; the folder may hold more recipes
    "grefel_seeds_ferplus", "grefel_seeds_fer2013", "grefel_seeds_rafdb", "grefel_seeds_pixel_csv",
    "grefel_cpu_fer2013", "grefel_cpu_ferplus", "emotionnet_fer2013", "cnn_transfer_fer2013",
}
TINY_BACKBONE = {"tf_efficientnet_lite0": "test_efficientnet", "resnet50": "test_resnet", "resnet10t": "test_resnet",
                 "vit_base_patch16_224": "test_vit"}
"""The tiny timm model of each recipe backbone's family: the same stage names, so every recipe setting applies."""


_REPO_FILE = re.compile(r"[\w.-]+(?:/[\w.-]+)+\.(?:py|md|yaml|json)")


def test_every_recipe_begins_with_a_comment_whose_command_runs_it_and_whose_files_exist():
    """One recipe per system and dataset; its comment block gives the command that trains it, which parses, and every
    repository file it cites (where its settings come from) exists."""
    assert {path.stem for path in RECIPES} >= SYSTEMS
    for path in RECIPES:
        comment = [line[1:].strip() for line in itertools.takewhile(lambda line: line.startswith("#"),
                                                                      path.read_text().splitlines())]
        assert len(comment) >= 2, path.name
        (command,) = [line for line in comment if line.startswith(f"accelerate launch train_hf.py recipes/{path.name}")]
        model_args, _, _ = parse_training_arguments([str(path), *command.split("#")[0].split()[4:]])
        assert model_args.model_type == read_recipe(path)["model_type"]
        for named in _REPO_FILE.findall(" ".join(comment)):
            assert Path(REPO_ROOT, named).is_file(), (path.name, named)


def _tiny_argv(recipe: Path, tmp_path: Path) -> list[str]:
    values = read_recipe(recipe)
    tiny = TINY_BACKBONE[values["backbone"]]
    image_size = min(values.get("image_size", 224), 48)
    argv = [str(recipe), "--dataset", "synthetic", "--backbone", tiny, "--image_size", str(image_size),
            "--backbone_weights", tiny_backbone_weights(tmp_path, tiny, image_size), "--max_steps", "2",
            "--max_train_samples", "16", "--max_eval_samples", "16", "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "16", "--output_dir", str(tmp_path / "run"), "--use_cpu", "true",
            "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--report_to", "none"]
    if values["model_type"] == "grefel":
        argv += ["--embed_dim", "32"]
    return argv


def _reloaded_accuracy(folder: Path, data_args, views: int) -> float:
    """Accuracy on the evaluation split of the folder's model, loaded through the Auto classes."""
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    evaluation = prepare_training_data(load_dataset_dict(data_args), data_args).eval
    loader = DataLoader(evaluation.with_transform(build_eval_transform(processor)), batch_size=16,
                        collate_fn=GReFELEvalCollator())
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            probs, _ = predict_probabilities(model, batch["pixel_values"], views)
            correct += (probs.argmax(-1) == batch["labels"]).sum().item()
            total += len(batch["labels"])
    return correct / total


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[path.stem for path in RECIPES])
def test_every_recipe_runs_two_steps_on_the_generated_set_and_its_model_reloads(recipe, tmp_path):
    argv = _tiny_argv(recipe, tmp_path)
    model_args, data_args, training_args = parse_training_arguments(argv)
    arguments = {**vars(model_args), **vars(data_args), **vars(training_args)}
    overridden = {token[2:] for token in argv if token.startswith("--")}
    for name, value in read_recipe(recipe).items():
        if name not in overridden:  # the recipe's own values survive, whatever it does not override
            assert arguments[name] == value, name
    summary = run_training(model_args, data_args, training_args)
    folder = tmp_path / "run"
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == {"grefel": "grefel", "baseline": "grefel_baseline"}[model_args.model_type]
    assert config.backbone == model_args.backbone
    for name, value in model_args.config_overrides().items():
        assert getattr(config, name) == value, name
    accuracy = _reloaded_accuracy(folder, data_args, training_args.eval_tta_views)
    assert accuracy == pytest.approx(summary.validation_accuracy, abs=1 / 16 + 1e-9)  # at most one face apart


@pytest.mark.parametrize("name", ["grefel_seeds_ferplus", "cnn_transfer_fer2013"])
def test_a_recipe_whose_weights_only_the_user_has_stops_with_one_line_without_them(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_hf.py", os.path.join(REPO_ROOT, "recipes", f"{name}.yaml")])
    assert train_hf.main() == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("train_hf.py: error: --require_backbone_weights"), err
    assert "pass --backbone_weights FILE" in err
