"""The model that ships with the package: used by default, offline, with a card whose checksum and figures are the
bundle's own, and present in a non-editable install."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from huggingface_hub import ModelCard
from PIL import Image

import grefel_hf.pretrained as pretrained
from grefel_hf.bundling import METRICS_FILE, PROVENANCE_FILE, WEIGHTS_FILE
from grefel_hf.cli import main as cli_main
from grefel_hf.face_detection_grefel import file_sha256
from grefel_hf.pretrained import pretrained_model_path, resolve_model_path

FERPLUS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
FER2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
LABELS = {"grefel-ferplus": FERPLUS, "grefel-fer2013": FER2013}
"""The classes of every model the package may bundle."""

BUNDLES = sorted(pretrained.BUNDLED_MODELS)


def test_every_bundled_model_is_known_here_and_the_default_is_one_of_them():
    assert set(BUNDLES) <= set(LABELS) and pretrained.DEFAULT_MODEL == "grefel-ferplus" in BUNDLES


def _names_no_code(folder: Path) -> bool:
    """Whether a saved folder carries no modeling code and its configs name none."""
    config = json.loads((folder / "config.json").read_text())
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    return not list(folder.glob("*.py")) and not {"auto_map", "custom_pipelines"} & set(config) \
        and "auto_map" not in processor


@pytest.mark.parametrize("name", BUNDLES)
def test_a_bundle_names_no_code_it_does_not_carry(name):
    assert _names_no_code(Path(pretrained_model_path(name)))


def test_bundling_drops_the_remote_code_and_the_entries_naming_it(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from grefel_hf import GReFELConfig, GReFELForImageClassification, build_image_processor
    from grefel_hf.bundling import write_bundle_weights

    model = GReFELForImageClassification(GReFELConfig(backbone="test_resnet", image_size=32)).eval()
    folder = write_bundle_weights(model, build_image_processor(model.config), tmp_path / "bundle")
    assert _names_no_code(folder)
    reloaded = AutoModelForImageClassification.from_pretrained(folder)  # the package's own classes load it
    assert type(reloaded) is GReFELForImageClassification
    assert type(AutoImageProcessor.from_pretrained(folder)).__module__ == "grefel_hf.image_processing_grefel"


@pytest.mark.parametrize("name", BUNDLES)
def test_the_card_records_the_weights_checksum_and_the_validation_figures(name):
    bundle = pretrained_model_path(name)
    card = ModelCard.load(os.path.join(bundle, "README.md"))
    checksum = file_sha256(os.path.join(bundle, WEIGHTS_FILE))
    assert f"SHA-256 of `{WEIGHTS_FILE}` (float16): `{checksum}`" in card.text
    with open(os.path.join(bundle, PROVENANCE_FILE)) as handle:
        assert json.load(handle)["weights_sha256"] == checksum
    with open(os.path.join(bundle, METRICS_FILE)) as handle:
        metrics = json.load(handle)
    assert metrics["split"] == "validation" and metrics["labels"] == LABELS[name]
    (result,) = card.data.to_dict()["model-index"][0]["results"]
    assert result["dataset"]["split"] == "validation"
    index = {(m["type"], (m.get("args") or {}).get("average")): m["value"] for m in result["metrics"]}
    assert index == {("accuracy", None): metrics["accuracy"], ("recall", "macro"): metrics["balanced_accuracy"],
                     ("f1", "macro"): metrics["macro_f1"], ("f1", "weighted"): metrics["weighted_f1"]}
    assert f"{100 * metrics['accuracy']:.2f}" in card.text  # the results table shows the same number
    is_default = name == pretrained.DEFAULT_MODEL  # the card says how to use it: by default, or by its name
    assert ("it is the package's default model" in card.text) == is_default
    assert (f"grefel-hf predict photo.jpg --model {name} " in card.text) == (not is_default)


@pytest.mark.parametrize("name", BUNDLES)
def test_the_weights_are_float16_and_small_but_load_as_float32(name):
    from safetensors import safe_open
    from transformers import AutoModelForImageClassification

    bundle = pretrained_model_path(name)
    assert os.path.getsize(os.path.join(bundle, WEIGHTS_FILE)) < 20 * 2**20
    with safe_open(os.path.join(bundle, WEIGHTS_FILE), "pt") as weights:
        names = weights.keys()  # noqa: SIM118 (a safetensors handle, not a dict: it has no __iter__)
        dtypes = {str(weights.get_slice(name).get_dtype()) for name in names}
    assert dtypes <= {"F16", "I64"} and "F16" in dtypes
    model = AutoModelForImageClassification.from_pretrained(bundle)
    assert {str(p.dtype) for p in model.parameters()} == {"torch.float32"}
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == LABELS[name]


def test_a_missing_bundle_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"bundled model 'grefel-ferplus' is missing .*reinstall grefel_hf"):
        pretrained_model_path()
    with pytest.raises(ValueError, match=r"no bundled model named 'nope'; the bundled models are "
                                         r"\['grefel-fer2013', 'grefel-ferplus'\]"):
        pretrained_model_path("nope")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    assert cli_main(["predict", str(tmp_path / "a.png"), "--output", str(tmp_path / "r.csv"), "--no_progress"]) == 2


@pytest.mark.parametrize("name", BUNDLES)
def test_a_bundled_model_is_named_by_its_name_unless_a_path_of_that_name_exists(name, tmp_path, monkeypatch):
    skimage_data = pytest.importorskip("skimage.data")
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.jpg")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(name) == Path(pretrained_model_path(name))
    assert cli_main(["predict", "astronaut.jpg", "--model", name, "--output", "named.jsonl", "--no_progress"]) == 0
    row = json.loads((tmp_path / "named.jsonl").read_text())
    assert row["label"] in LABELS[name] and [key[5:] for key in row if key.startswith("prob_")] == LABELS[name]
    (tmp_path / name).mkdir()  # a folder of that name is what the user means
    assert resolve_model_path(name) == Path(name)


@pytest.mark.slow
def test_a_non_editable_install_carries_the_weights(tmp_path):
    """What `pip install .` installs is the wheel built here: it must hold the bundle, weights included."""
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", REPO_ROOT, "--no-deps", "--no-build-isolation",
                          "--quiet", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = tmp_path.glob("grefel_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        weights = {bundle: archive.read(f"grefel_hf/pretrained/{bundle}/{WEIGHTS_FILE}") for bundle in BUNDLES}
    for bundle in BUNDLES:
        for name in ("config.json", "preprocessor_config.json", "README.md", METRICS_FILE, PROVENANCE_FILE):
            assert f"grefel_hf/pretrained/{bundle}/{name}" in names, (bundle, name)
        with open(os.path.join(pretrained_model_path(bundle), WEIGHTS_FILE), "rb") as handle:
            assert weights[bundle] == handle.read(), bundle
