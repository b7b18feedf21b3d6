"""push_to_hub.py / grefel_hf.publish: staging, validation without grefel_hf, card, upload guards (all offline)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_grefel_config
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants
from huggingface_hub.utils import filter_repo_objects

import grefel_hf.publish as publish_module
from grefel_hf import GReFELForImageClassification, build_image_processor, save_grefel_folder
from grefel_hf.evaluation.plots import plot_confusion_matrix
from grefel_hf.hub import REQUIRED_FILES
from grefel_hf.metrics.classification import compute_classification_metrics, write_metrics_json
from grefel_hf.publish import PushArguments, publish, select_metrics, stage_folder, validate_staged_folder

REPO_ID = "someone/grefel-tiny"
TRAINING_ARGS = {"learning_rate": 0.0007, "num_train_epochs": 3, "per_device_train_batch_size": 16, "seed": 7,
                 "output_dir": "/private/path/of/the/trainer"}


def hand_made_metrics(names, correct_rows):
    """metrics.json for 10 images: image i has true class i % C and is right when i is in correct_rows."""
    labels = np.arange(10) % len(names)
    predicted = np.where(np.isin(np.arange(10), correct_rows), labels, (labels + 1) % len(names))
    probs = np.full((10, len(names)), 0.3 / (len(names) - 1))
    probs[np.arange(10), predicted] = 0.7
    return compute_classification_metrics(labels, probs, reliability=np.linspace(0.1, 0.9, 10), label_names=names)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained-like model folder with an evaluation folder (metrics.json + confusion matrix) beside it."""
    torch.manual_seed(0)
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet")).eval()
    root = tmp_path_factory.mktemp("trained")
    model_dir = save_grefel_folder(model, build_image_processor(model.config), root / "run")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    metrics = hand_made_metrics(names, correct_rows=[0, 1, 2, 3, 5, 8])
    metrics_path = write_metrics_json(metrics, root / "eval" / "metrics.json")
    plot_confusion_matrix(metrics["confusion_matrix"], names, root / "eval" / "confusion_matrix.png")
    run_config = {"model_args": {"backbone": "test_resnet"}, "data_args": {"dataset": "fer2013"},
                  "training_args": TRAINING_ARGS}
    (model_dir / "training_config.json").write_text(json.dumps(run_config))
    (model_dir / "all_results.json").write_text(json.dumps({"epoch": 3.0, "train_loss": 1.25, "eval_accuracy": 0.5}))
    return {"model_dir": model_dir, "metrics_path": metrics_path, "metrics": metrics, "names": names}


@pytest.fixture
def recorder(monkeypatch):
    """Replace the Hub calls of grefel_hf.publish by fakes that record (name, args, kwargs, staged files)."""
    calls = []

    def fake(name):
        def call(*args, **kwargs):
            folder = kwargs.get("folder_path")
            files = sorted(os.listdir(folder)) if folder else None
            calls.append((name, args, kwargs, files))
            return None
        return call

    monkeypatch.setattr(publish_module, "create_repo", fake("create_repo"))
    monkeypatch.setattr(publish_module, "upload_folder", fake("upload_folder"))
    return calls


@pytest.fixture
def online_with_token(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(publish_module, "get_token", lambda: "hf_not_a_real_token")


def run_cli(*arguments, tmp_path):
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "cli-modules")}
    return subprocess.run([sys.executable, "push_to_hub.py", *map(str, arguments)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_cli_local_dir_stages_a_validated_folder_and_card(trained, tmp_path):
    stage = tmp_path / "stage"
    run = run_cli("--model_dir", trained["model_dir"], "--repo_id", REPO_ID, "--local_dir", stage,
                  "--metrics", trained["metrics_path"], "--dataset_name", "FER2013", "--dataset_id", "someone/fer2013",
                  "--license", "mit", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # the remote-code validation (fresh process, grefel_hf blocked, same logits, pipeline, card) ran and passed
    assert "validated" in run.stderr and "nothing was uploaded" in run.stderr
    for name in (*REQUIRED_FILES, "README.md", "confusion_matrix.png", "metrics.json", "all_results.json"):
        assert (stage / name).is_file(), name
    assert not (stage / "training_config.json").exists()  # it holds local paths; the card shows the values
    config = json.loads((stage / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    processor_map = json.loads((stage / "preprocessor_config.json").read_text())["auto_map"]
    assert isinstance(processor_map["AutoImageProcessor"], dict)

    card = ModelCard.load(stage / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-classification"
    assert data["license"] == "mit" and "base_model" not in data  # the recorded run started from random weights
    assert {"grefel", "custom_code", "facial-expression-recognition"} <= set(data["tags"])
    index_metrics = {(m["type"], (m.get("args") or {}).get("average")): m["value"]
                     for m in data["model-index"][0]["results"][0]["metrics"]}
    written = json.loads(trained["metrics_path"].read_text())
    assert index_metrics[("accuracy", None)] == written["accuracy"] == pytest.approx(0.6)
    assert index_metrics[("f1", "macro")] == written["macro_f1"]
    assert data["model-index"][0]["results"][0]["dataset"]["type"] == "someone/fer2013"
    text = card.text
    assert 'pipeline("image-classification", model="someone/grefel-tiny", trust_remote_code=True)' in text
    assert "AutoModelForImageClassification.from_pretrained(\"someone/grefel-tiny\", trust_remote_code=True)" in text
    for name in trained["names"]:  # a per-class row for every class
        assert f"| {name} |" in text
    assert "Input must be a face crop" in text
    assert "](confusion_matrix.png)" in text and "reliability_diagram.png" not in text
    assert "| `learning_rate` | 0.0007 |" in text and "| `train_loss` | 1.2500 |" in text
    assert "| `epoch` | 3 epochs |" in text and "Trained from random initialisation" in text
    assert "Training data: `fer2013`" in text and "| `image_size` | 48 |" in text


def test_validation_catches_missing_code_and_wrong_logits(trained, tmp_path):
    stage = tmp_path / "stage"
    model, processor, _ = stage_folder(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID),
                                       trained["model_dir"], stage)
    # weights that differ from the staged ones must be noticed through their logits
    torch.manual_seed(1)
    other = GReFELForImageClassification(tiny_grefel_config("test_resnet")).eval()
    with pytest.raises(RuntimeError, match="logits differ"):
        validate_staged_folder(stage, other, processor)
    (stage / "losses.py").unlink()  # modeling_grefel.py imports it relatively
    with pytest.raises(RuntimeError, match=r"does not load without grefel_hf(.|\n)*losses\.py"):
        validate_staged_folder(stage, model, processor)


def test_card_without_metrics_says_not_evaluated(trained, tmp_path):
    stage = tmp_path / "stage"
    _, _, metrics = stage_folder(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID),
                                 trained["model_dir"], stage)
    assert metrics is None
    card = ModelCard.load(stage / "README.md")
    assert "model-index" not in card.data.to_dict()
    assert "not been evaluated" in card.text
    assert not (stage / "confusion_matrix.png").exists()
    publish_module.check_model_index(card.data.to_dict(), None)
    with pytest.raises(RuntimeError, match="differs from the metrics"):
        publish_module.check_model_index(card.data.to_dict(), trained["metrics"])


def test_offline_push_fails_clearly_before_anything_remote(trained, recorder):
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest for the whole session
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE") as error:
        publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID))
    assert "--local_dir" in str(error.value)
    assert recorder == []


def test_cli_offline_push_exits_with_message_not_traceback(trained, tmp_path):
    run = run_cli("--model_dir", trained["model_dir"], "--repo_id", REPO_ID, tmp_path=tmp_path)
    assert run.returncode != 0
    assert "needs network access but HF_HUB_OFFLINE is set" in run.stderr
    assert "Traceback" not in run.stderr


def test_push_without_token_fails_clearly(trained, recorder, online_with_token, monkeypatch):
    monkeypatch.setattr(publish_module, "get_token", lambda: None)
    with pytest.raises(RuntimeError, match="hf auth login.*HF_TOKEN"):
        publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID))
    assert recorder == []


def test_upload_path_validates_then_creates_repo_then_uploads(trained, recorder, online_with_token, monkeypatch):
    validated = []
    real_validate = publish_module.validate_staged_folder

    def recording_validate(stage, *args, **kwargs):
        validated.append(len(recorder))  # how many Hub calls had happened before validation
        return real_validate(stage, *args, **kwargs)

    monkeypatch.setattr(publish_module, "validate_staged_folder", recording_validate)
    result = publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID, private=True,
                                   metrics=str(trained["metrics_path"]), commit_message="first version"))
    assert validated == [0]
    assert [call[0] for call in recorder] == ["create_repo", "upload_folder"]
    _, args, kwargs, _ = recorder[0]
    assert args == (REPO_ID,) and kwargs == {"private": True, "exist_ok": True}
    _, _, kwargs, files = recorder[1]
    assert kwargs["repo_id"] == REPO_ID and kwargs["commit_message"] == "first version"
    assert {*REQUIRED_FILES, "README.md", "confusion_matrix.png", "metrics.json"} <= set(files)
    assert result.uploaded and result.staged_dir is None
    assert not os.path.exists(kwargs["folder_path"])  # the temporary stage is cleaned up
    candidates = ["model.safetensors", "__pycache__/modeling_grefel.cpython-312.pyc", "losses.pyc",
                  "checkpoint-500/model.safetensors", "README.md"]
    kept = list(filter_repo_objects(candidates, ignore_patterns=kwargs["ignore_patterns"]))
    assert kept == ["model.safetensors", "README.md"]


def test_bad_model_folders_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found: .*missing"):
        publish(PushArguments(model_dir=str(tmp_path / "missing"), repo_id=REPO_ID, local_dir=str(tmp_path / "s1")))
    other = tmp_path / "vit"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        publish(PushArguments(model_dir=str(other), repo_id=REPO_ID, local_dir=str(tmp_path / "s2")))
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"vit.*config.json has model_type 'vit', expected 'grefel'"):
        publish(PushArguments(model_dir=str(other), repo_id=REPO_ID, local_dir=str(tmp_path / "s3")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        publish(PushArguments(model_dir=str(empty), repo_id=REPO_ID, local_dir=str(tmp_path / "s4")))
    assert not any((tmp_path / f"s{i}").exists() for i in range(1, 5))


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "me/", "/name", "me/bad name", "me/-x", "me/a..b"])
def test_bad_repo_ids_are_rejected(repo_id):
    with pytest.raises(ValueError, match="namespace/name"):
        PushArguments(model_dir="anything", repo_id=repo_id)


def test_metrics_must_fit_the_model(trained, tmp_path):
    wrong = hand_made_metrics([f"class_{i}" for i in range(len(trained["names"]))], correct_rows=[0, 1])
    path = write_metrics_json(wrong, tmp_path / "other" / "metrics.json")
    with pytest.raises(ValueError, match="do not match the model's labels"):
        publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID, metrics=str(path),
                              local_dir=str(tmp_path / "stage")))
    assert not (tmp_path / "stage" / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="metrics file not found"):
        publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID, local_dir=str(tmp_path / "s"),
                              metrics=str(tmp_path / "nope.json")))


def test_local_dir_must_be_new_or_empty(trained, tmp_path):
    (tmp_path / "stale.txt").write_text("old")
    with pytest.raises(ValueError, match="not an empty folder"):
        publish(PushArguments(model_dir=str(trained["model_dir"]), repo_id=REPO_ID, local_dir=str(tmp_path)))


def test_metric_variants_follow_the_selected_weights(trained, tmp_path):
    names = trained["names"]
    raw, ema = hand_made_metrics(names, [0, 1]), hand_made_metrics(names, [0, 1, 2, 3, 4])
    path = write_metrics_json({"raw": raw, "ema": ema}, tmp_path / "metrics.json")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert select_metrics(path, model_dir, names)["accuracy"] == raw["accuracy"]  # no selection file: raw
    (model_dir / "weights_selection.json").write_text(json.dumps({"selected": "ema", "metric": "eval_accuracy"}))
    assert select_metrics(path, model_dir, names)["accuracy"] == ema["accuracy"] == pytest.approx(0.5)
    only_raw = write_metrics_json({"raw": raw, "other": raw}, tmp_path / "raw_only.json")
    with pytest.raises(ValueError, match="pushed weights are 'ema'"):
        select_metrics(only_raw, model_dir, names)


def test_figures_are_published_only_with_metrics(trained, tmp_path):
    """Figures next to the model are only published with the metrics they illustrate."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained["model_dir"], model_dir)
    shutil.copy2(trained["metrics_path"].parent / "confusion_matrix.png", model_dir / "confusion_matrix.png")
    stage = tmp_path / "stage"
    stage_folder(PushArguments(model_dir=str(model_dir), repo_id=REPO_ID), model_dir, stage)
    assert not (stage / "confusion_matrix.png").exists()
    metrics_copy = tmp_path / "elsewhere" / "metrics.json"
    write_metrics_json(trained["metrics"], metrics_copy)
    stage2 = tmp_path / "stage2"
    stage_folder(PushArguments(model_dir=str(model_dir), repo_id=REPO_ID, metrics=str(metrics_copy)), model_dir,
                 stage2)
    assert (stage2 / "confusion_matrix.png").is_file()  # found in the model folder as a fallback
    assert "](confusion_matrix.png)" in (stage2 / "README.md").read_text()
