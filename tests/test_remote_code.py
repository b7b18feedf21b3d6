"""A saved GReFEL folder loads through the Auto classes and `pipeline`, with and without `grefel_hf`."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import tiny_grefel_config
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, pipeline

from grefel_hf import GReFELForImageClassification, build_image_processor, save_grefel_folder
from grefel_hf.hub import REMOTE_CODE_FILES

# The subprocess makes `import grefel_hf` fail before anything else is imported, loads the folder only through
# remote code, and writes what it computed to a safetensors file for the parent test to compare.
_REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["grefel_hf"] = None  # grefel_hf cannot be imported in this process
    import json
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                              pipeline)

    folder, out_dir = sys.argv[1], sys.argv[2]
    face = Image.open(f"{out_dir}/face.png")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    processor_pil = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True, backend="pil")
    classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    pixels = processor(face, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = classifier(pixels).logits
        embeddings = base(pixels).embeddings
    pipe = pipeline("image-classification", model=folder, trust_remote_code=True)
    result = pipe(face, top_k=config.num_labels)
    save_file({"pixels": pixels, "pixels_pil": processor_pil(face, return_tensors="pt")["pixel_values"],
               "logits": logits, "embeddings": embeddings}, f"{out_dir}/remote.safetensors")
    info = {
        "config_class": type(config).__name__, "config_module": type(config).__module__,
        "model_module": type(classifier).__module__, "processor_class": type(processor).__name__,
        "processor_pil_class": type(processor_pil).__name__, "pipeline": result,
        "pipeline_default": pipe(face), "grefel_hf_loaded": sys.modules["grefel_hf"] is not None,
    }
    with open(f"{out_dir}/remote.json", "w") as f:
        json.dump(info, f)
    """
)


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_grefel_config("test_resnet")
    model = GReFELForImageClassification(config).eval()
    folder = save_grefel_folder(model, build_image_processor(config), tmp_path_factory.mktemp("grefel") / "model")
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8), "L")
    return folder, model, face


def test_saved_folder_is_self_contained(saved_folder):
    folder, _, _ = saved_folder
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_grefel.GReFELConfig",
        "AutoModel": "modeling_grefel.GReFELModel",
        "AutoModelForImageClassification": "modeling_grefel.GReFELForImageClassification",
    }
    assert config["label2id"]["happy"] == 3 and config["id2label"]["3"] == "happy"
    processor_map = json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]
    assert processor_map["AutoImageProcessor"]["pil"] == "image_processing_grefel.GReFELImageProcessorPil"
    # remote code imports its siblings only relatively, never the package
    for name in REMOTE_CODE_FILES:
        source = (folder / name).read_text()
        assert not re.search(r"^\s*(from|import)\s+grefel_hf", source, re.MULTILINE), name


def test_folder_loads_without_grefel_hf_through_remote_code(saved_folder, tmp_path):
    folder, model, face = saved_folder
    face.save(tmp_path / "face.png")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", _REMOTE_SCRIPT, str(folder), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((tmp_path / "remote.json").read_text())
    remote = load_file(tmp_path / "remote.safetensors")
    assert not info["grefel_hf_loaded"]
    assert info["config_module"].startswith("transformers_modules.") and info["config_class"] == "GReFELConfig"
    assert info["model_module"].startswith("transformers_modules.")
    assert info["processor_class"] == "GReFELImageProcessor"
    assert info["processor_pil_class"] == "GReFELImageProcessorPil"

    processor = build_image_processor(model.config)
    pixels = processor(face, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(remote["pixels"], pixels)
    assert (remote["pixels_pil"] - pixels).abs().max() < 0.05
    with torch.no_grad():
        expected = model(pixels)
    torch.testing.assert_close(remote["logits"], expected.logits)
    torch.testing.assert_close(remote["embeddings"], expected.embeddings)

    scores = {entry["label"]: entry["score"] for entry in info["pipeline"]}
    assert set(scores) == set(model.config.id2label.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    probs = expected.logits.exp()[0]
    for idx, name in model.config.id2label.items():
        assert scores[name] == pytest.approx(probs[idx].item(), abs=1e-5)
    # transformers' own default is the 5 best labels
    assert [e["label"] for e in info["pipeline_default"]] == [e["label"] for e in info["pipeline"][:5]]


def test_pipeline_works_in_process_without_trust_remote_code(saved_folder):
    folder, model, face = saved_folder
    pipe = pipeline("image-classification", model=str(folder))
    assert type(pipe.model).__module__ == "grefel_hf.modeling_grefel"
    result = pipe(face, top_k=model.config.num_labels)
    assert {e["label"] for e in result} == set(model.config.id2label.values())
    assert sum(e["score"] for e in result) == pytest.approx(1.0, abs=1e-5)
    loaded = AutoModelForImageClassification.from_pretrained(folder)
    assert isinstance(loaded, GReFELForImageClassification)
    batch = pipe([face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], top_k=1)
    assert len(batch) == 2 and all(len(entry) == 1 for entry in batch)


def test_remote_code_script_refuses_without_trust(saved_folder, tmp_path):
    """Without the package and without trust_remote_code, loading must fail, not silently misload."""
    folder, _, _ = saved_folder
    script = ("import sys; sys.modules['grefel_hf'] = None\n"
              "from transformers import AutoConfig\n"
              f"AutoConfig.from_pretrained({str(folder)!r})\n")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode != 0 and "trust_remote_code" in run.stderr

