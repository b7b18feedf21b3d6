"""The facial-expression-recognition pipeline, and image-classification on GReFEL models, in process and through
remote code where grefel_hf cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from inference_support import ASTRONAUT_FACE, astronaut, chelsea, save_tiny_model
from PIL import Image
from transformers import AutoConfig, ViTConfig, ViTForImageClassification, ViTImageProcessor, pipeline
from transformers.pipelines.image_classification import ImageClassificationPipeline

from grefel_hf import GReFELForImageClassification, GReFELImageProcessor
from grefel_hf.face_detection_grefel import FaceBox, box_iou, face_crop_box
from grefel_hf.image_processing_grefel import read_image
from grefel_hf.pipeline_grefel import FacialExpressionRecognitionPipeline, GReFELImageClassificationPipeline

TASK = "facial-expression-recognition"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("fer") / "model")


@pytest.fixture(scope="module")
def fer(folder):
    return pipeline(TASK, model=str(folder))


def _expected_probs(folder, image):
    """Probabilities computed without the pipeline: the saved processor and model on `image`."""
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    processor = GReFELImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        return model(**processor(image, return_tensors="pt")).logits.exp()[0].numpy()


def test_pipeline_finds_her_face_and_matches_the_model_on_the_crop(fer, folder):
    assert isinstance(fer, FacialExpressionRecognitionPipeline)
    photo = astronaut()
    result = fer(photo, top_k=3)
    assert len(result) == 1
    entry = result[0]
    box = FaceBox(**entry["box"])
    assert box_iou(box, ASTRONAUT_FACE) >= 0.5
    left, top, right, bottom = face_crop_box(box, 512, 512, margin=0.2)
    probs = _expected_probs(folder, photo[top:bottom, left:right])
    best = int(probs.argmax())
    assert entry["label"] == fer.model.config.id2label[best]
    assert entry["score"] == pytest.approx(float(probs[best]), abs=1e-5)
    assert [e["label"] for e in entry["top_k"]] == [fer.model.config.id2label[int(i)] for i in np.argsort(-probs)[:3]]
    assert 0.0 <= entry["reliability"] <= 1.0
    assert fer(chelsea()) == []


def test_batches_span_images_and_give_the_same_results(fer):
    images = [astronaut(), chelsea(), astronaut()[::-1, ::-1].copy(), astronaut()]
    one_by_one = [fer(image, top_k=None) for image in images]
    batched = fer(images, top_k=None, batch_size=2)
    assert [len(r) for r in batched] == [1, 0, 0, 1]
    for single, many in zip(one_by_one, batched, strict=True):
        assert [e["box"] for e in single] == [e["box"] for e in many]
        for a, b in zip(single, many, strict=True):
            assert [x["score"] for x in a["top_k"]] == pytest.approx([x["score"] for x in b["top_k"]], abs=1e-5)


def _odd_format_files(tmp_path):
    """Face-crop files in the modes photos come in; each is read whole (no detection) by the pipeline."""
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    images = {
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "rgba.png": Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (40, 40), dtype=np.uint8)]), "RGBA"),
        "la.png": Image.fromarray(np.dstack([gray, rng.integers(0, 256, (40, 40), dtype=np.uint8)]), "LA"),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "int32.tif": Image.fromarray((gray.astype(np.int32) * 200), "I"),
        "float.tif": Image.fromarray(gray.astype(np.float32) / 255.0, "F"),
    }
    paths = []
    for name, image in images.items():
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_odd_formats_give_what_the_processor_gives_for_the_same_file(fer, folder, tmp_path):
    paths = _odd_format_files(tmp_path)
    results = fer([str(p) for p in paths], face_detector="none", top_k=None)
    classifier = pipeline("image-classification", model=str(folder))
    for path, result in zip(paths, results, strict=True):
        expected = _expected_probs(folder, read_image(path))
        scores = {e["label"]: e["score"] for e in result[0]["top_k"]}
        got = np.array([scores[fer.model.config.id2label[i]] for i in range(len(expected))])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=path.name)
        ranked = classifier(str(path), top_k=fer.model.config.num_labels)
        got = np.array([{e["label"]: e["score"] for e in ranked}[fer.model.config.id2label[i]]
                        for i in range(len(expected))])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"image-classification {path.name}")


def test_bad_inputs_are_clear_errors(fer, tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(astronaut()).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"image 1.*truncated\.jpg.*truncated or corrupt"):
        fer([str(good), str(truncated)])
    with pytest.raises(ValueError, match="empty list"):
        fer([])
    for top_k in (-1, 0, 2.5):
        with pytest.raises(ValueError, match="top_k must be a positive integer"):
            fer(str(good), top_k=top_k)
    url = "http://127.0.0.1:9/face.jpg"
    with pytest.raises(ValueError, match=r"image 0: could not read the image at http://127\.0\.0\.1:9/face\.jpg"):
        fer(url, timeout=5)
    with pytest.raises(ValueError, match="min_face_size"):
        fer(str(good), min_face_size=2)


def test_image_classification_on_grefel_names_bad_inputs(folder, tmp_path):
    classifier = pipeline("image-classification", model=str(folder))
    good = tmp_path / "good.png"
    Image.fromarray(astronaut()).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"image 1.*cut\.png"):
        classifier([str(good), str(truncated)])
    with pytest.raises(ValueError, match="empty list"):
        classifier([])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        classifier(str(good), top_k=0)


def test_no_model_is_a_clear_error_until_one_is_bundled():
    with pytest.raises(FileNotFoundError, match="no model is bundled"):
        pipeline(TASK)


def test_saved_config_names_the_pipelines_but_the_package_config_drops_them(folder, caplog):
    saved = json.loads((folder / "config.json").read_text())
    assert saved["custom_pipelines"][TASK]["impl"] == "pipeline_grefel.FacialExpressionRecognitionPipeline"
    assert saved["custom_pipelines"]["image-classification"]["impl"] == \
        "pipeline_grefel.GReFELImageClassificationPipeline"
    config = AutoConfig.from_pretrained(folder)
    assert not hasattr(config, "custom_pipelines")
    assert "unknown fields" not in caplog.text


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny non-GReFEL image classifier (transformers' ViT) with its own processor."""
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                       label2id={"a": 0, "b": 1, "c": 2})
    folder = tmp_path_factory.mktemp("vit")
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_image_classification_is_unchanged_for_other_models(vit_folder, tmp_path):
    paths = _odd_format_files(tmp_path)[:4]  # PNG modes transformers' own loader reads
    registered = pipeline("image-classification", model=str(vit_folder))
    assert isinstance(registered, GReFELImageClassificationPipeline)
    plain = ImageClassificationPipeline(model=registered.model, image_processor=registered.image_processor)
    inputs = [str(p) for p in paths] + [Image.fromarray(astronaut())]
    assert registered(inputs, top_k=None) == plain(inputs, top_k=None)
    with pytest.raises(Exception) as raised_plain:
        plain([])
    with pytest.raises(type(raised_plain.value)):
        registered([])


_REMOTE = textwrap.dedent("""
    import json, sys
    sys.modules["grefel_hf"] = None  # grefel_hf cannot be imported in this process
    import numpy as np
    from transformers import pipeline
    folder, image, out = sys.argv[1:4]
    fer = pipeline("facial-expression-recognition", model=folder, trust_remote_code=True)
    info = {"pipeline_module": type(fer).__module__, "model_module": type(fer.model).__module__,
            "faces": fer(image, top_k=None), "whole": fer(image, face_detector="none", top_k=2)}
    with open(out, "w") as f:
        json.dump(info, f)
""")


def test_pipeline_loads_through_remote_code_without_grefel_hf(fer, folder, tmp_path):
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(image)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", _REMOTE, str(folder), str(image), str(tmp_path / "out.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((tmp_path / "out.json").read_text())
    assert info["pipeline_module"].startswith("transformers_modules.")
    assert info["pipeline_module"].endswith(".pipeline_grefel")
    assert info["model_module"].startswith("transformers_modules.")
    local = fer(str(image), top_k=None)
    assert [e["box"] for e in info["faces"]] == [e["box"] for e in local] and len(local) == 1
    assert [e["score"] for e in info["faces"][0]["top_k"]] == \
        pytest.approx([e["score"] for e in local[0]["top_k"]], abs=1e-5)
    assert info["whole"][0]["box"] == {"x": 0, "y": 0, "w": 512, "h": 512}
