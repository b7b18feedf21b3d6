"""The facial-expression-recognition pipeline, and image-classification on GReFEL models, in process and through
remote code where grefel_hf cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from inference_support import ASTRONAUT_FACE, astronaut, chelsea, save_tiny_model, write_odd_format_files
from PIL import Image
from transformers import AutoConfig, ViTConfig, ViTForImageClassification, ViTImageProcessor, pipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.image_classification import ImageClassificationPipeline

from grefel_hf import GReFELForImageClassification, GReFELImageProcessor, pipeline_grefel
from grefel_hf.face_detection_grefel import FaceBox, box_iou, face_crop_box
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
    left, top, right, bottom = face_crop_box(box, 512, 512)  # the default margin, the pipeline's
    probs = _expected_probs(folder, photo[top:bottom, left:right])
    best = int(probs.argmax())
    assert entry["label"] == fer.model.config.id2label[best]
    assert entry["score"] == pytest.approx(float(probs[best]), abs=1e-5)
    assert [e["label"] for e in entry["top_k"]] == [fer.model.config.id2label[int(i)] for i in np.argsort(-probs)[:3]]
    assert 0.0 <= entry["reliability"] <= 1.0
    assert fer(chelsea()) == []


def test_batches_span_images_and_give_the_same_results(fer):
    images = [astronaut(), chelsea(), astronaut()[::-1, ::-1], astronaut()]  # a flipped view, as it comes
    one_by_one = [fer(image, top_k=None) for image in images]
    batched = fer(images, top_k=None, batch_size=2)
    assert [len(r) for r in batched] == [1, 0, 1, 1]  # YuNet finds her upside down too; the cat has no face
    for single, many in zip(one_by_one, batched, strict=True):
        assert [e["box"] for e in single] == [e["box"] for e in many]
        for a, b in zip(single, many, strict=True):
            assert [x["score"] for x in a["top_k"]] == pytest.approx([x["score"] for x in b["top_k"]], abs=1e-5)


def test_without_a_model_the_pipeline_uses_the_bundled_one(tmp_path, monkeypatch):
    import grefel_hf.pretrained as pretrained

    (face,) = pipeline(TASK)(astronaut())
    assert face["label"] in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert box_iou(FaceBox(*face["box"].values()), ASTRONAUT_FACE) >= 0.5
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="bundled model 'grefel-ferplus' is missing"):
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


def test_import_leaves_image_classification_to_transformers_for_other_models(vit_folder, folder):
    import grefel_hf  # noqa: F401  (importing registers GReFEL, and must change nothing for other models)

    other = pipeline("image-classification", model=str(vit_folder))
    assert type(other) is ImageClassificationPipeline
    assert type(pipeline("image-classification", model=str(folder))) is ImageClassificationPipeline
    ours = pipeline("image-classification", model=str(folder), pipeline_class=GReFELImageClassificationPipeline)
    assert isinstance(ours, GReFELImageClassificationPipeline)
    photo = Image.fromarray(astronaut()).resize((48, 48))
    assert ours(photo, top_k=2) == pipeline("image-classification", model=str(folder))(photo, top_k=2)


def test_the_grefel_image_classification_class_changes_nothing_for_other_models(vit_folder, tmp_path):
    paths = write_odd_format_files(tmp_path)[:4]  # PNG modes transformers' own loader reads
    ours = pipeline("image-classification", model=str(vit_folder), pipeline_class=GReFELImageClassificationPipeline)
    plain = ImageClassificationPipeline(model=ours.model, image_processor=ours.image_processor)
    inputs = [str(p) for p in paths] + [Image.fromarray(astronaut())]
    assert ours(inputs, top_k=None) == plain(inputs, top_k=None)
    with pytest.raises(Exception) as raised_plain:
        plain([])
    with pytest.raises(type(raised_plain.value)):
        ours([])


def test_it_is_a_chunk_pipeline_whose_workers_and_batches_give_the_same_answers(fer):
    assert isinstance(fer, ChunkPipeline)
    canvas = np.concatenate([astronaut(), astronaut()[:, ::-1]], axis=1)  # two faces
    images = [astronaut(), chelsea(), canvas, "examples/astronaut.jpg", astronaut()]
    reference = [fer(image, top_k=None) for image in images]
    seen = []
    forward = fer._forward

    def spy(model_inputs, **kwargs):
        seen.append(len(model_inputs["is_last"]))
        return forward(model_inputs, **kwargs)

    fer._forward = spy
    try:
        batched = fer(images, top_k=None, batch_size=3)
    finally:
        del fer._forward
    assert [len(r) for r in batched] == [1, 0, 2, 1, 1]
    assert seen == [3, 3]  # six chunks: five faces and the cat's face-less one, three per forward pass
    with_workers = fer(images, top_k=None, batch_size=2, num_workers=2)
    for expected in (batched, with_workers):
        for ref, got in zip(reference, expected, strict=True):
            assert [e["box"] for e in ref] == [e["box"] for e in got]
            assert [e["score"] for e in ref] == pytest.approx([e["score"] for e in got], abs=1e-5)


def test_a_generator_of_images_streams_its_results_in_order(fer):
    pulled = []

    def images():
        for i in range(12):
            pulled.append(i)
            yield astronaut() if i % 3 else chelsea()

    stream = fer(images(), batch_size=2)
    first = next(stream)
    assert first == [] and len(pulled) < 12  # the first result came before the generator ran out
    rest = list(stream)
    assert [len(r) for r in [first, *rest]] == [0 if i % 3 == 0 else 1 for i in range(12)]


def test_without_workers_images_are_prepared_in_threads_each_with_its_own_detector(fer):
    threads, detectors = set(), set()
    prepare = fer.prepare_image

    def spy(item, **params):
        threads.add(threading.current_thread().name)
        return prepare(item, **params)

    real_build = pipeline_grefel.build_face_detector

    def counting_build(*args, **kwargs):
        detector = real_build(*args, **kwargs)
        detectors.add(id(detector))
        return detector

    fer.__dict__.pop("_detector_cache", None)  # start without idle detectors
    fer.prepare_image, pipeline_grefel.build_face_detector = spy, counting_build
    try:
        images = [astronaut() if i % 4 else chelsea() for i in range(16)]
        results = fer(images, batch_size=4)
        again = fer(images, batch_size=4)
    finally:
        del fer.prepare_image
        pipeline_grefel.build_face_detector = real_build
    assert all(name.startswith("grefel-prepare") for name in threads) and len(threads) > 1
    assert [len(r) for r in results] == [0 if i % 4 == 0 else 1 for i in range(16)]  # input order kept
    assert results == again
    assert 1 <= len(detectors) <= pipeline_grefel.PREPARE_THREADS  # lent, never shared, kept for the next call


def test_threads_keep_order_and_raise_an_error_at_its_item():
    def prepare(item):
        time.sleep(0.02 if item % 2 else 0.0)  # odd items finish after the next even one
        if item == 5:
            raise ValueError("image 5 is broken")
        return item * 10

    stream = pipeline_grefel.prepared_in_threads(iter(range(9)), prepare, threads=3)
    assert [next(stream) for _ in range(5)] == [0, 10, 20, 30, 40]
    with pytest.raises(ValueError, match="image 5"):
        next(stream)


def test_a_callable_detector_is_never_called_from_two_threads(fer):
    calls = []

    def detector(image):
        calls.append(threading.current_thread().name)
        return [(10, 10, 60, 60)]

    results = fer([astronaut()] * 6, face_detector=detector, batch_size=4)
    assert [len(r) for r in results] == [1] * 6
    assert set(calls) == {threading.current_thread().name}  # a user's callable may not be thread-safe


@pytest.mark.parametrize("call", [{"batch_size": 0}, {"num_workers": -1}, {"batch_size": "4"}])
def test_batch_size_and_num_workers_are_checked(fer, call):
    with pytest.raises(ValueError, match="batch_size|num_workers"):
        fer([astronaut()], **call)


def test_landmarks_and_detection_scores_come_with_each_face(fer):
    (face,) = fer(astronaut(), max_faces=1, detection_size=320)
    assert len(face["landmarks"]) == 5 and 0.6 <= face["detection_score"] <= 1
    assert box_iou(FaceBox(**face["box"]), ASTRONAUT_FACE) >= 0.5
    (haar,) = fer(astronaut(), face_detector="haar")
    assert haar["landmarks"] is None and haar["detection_score"] is None
    with pytest.raises(ValueError, match="max_faces"):
        fer(astronaut(), max_faces=0)
    with pytest.raises(ValueError, match="unknown argument"):
        fer(astronaut(), face_detecter="haar")


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


def test_torch_threads_hold_while_the_pipeline_runs_and_are_given_back_between_results(folder):
    seen = []
    fer = pipeline(TASK, model=str(folder), torch_threads=1)
    forward = fer._forward

    def spy(model_inputs, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(model_inputs, **kwargs)

    fer._forward = spy
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stream = fer((astronaut() for _ in range(3)), batch_size=1)
        next(stream)
        assert torch.get_num_threads() == 2  # the caller's setting between results
        list(stream)
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}
    with pytest.raises(ValueError, match="torch_threads"):
        pipeline(TASK, model=str(folder), torch_threads=0)
