"""The bad-input corpus of the inference paths (a sibling of tests/test_bad_inputs.py): decompression bombs,
dangling and looping symbolic links, broken model folders and ONNX files, and a batch size of 0, handled the same
way by `grefel-hf predict` (skipped, counted, with the reason), `grefel-hf explain` (one line, exit status 2) and
the pipeline (a ValueError naming the image and the problem). Every file is generated here."""

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import torch
from inference_support import astronaut, save_tiny_model, write_decompression_bomb
from PIL import Image
from transformers import pipeline

from grefel_hf import GReFELForImageClassification
from grefel_hf.cli import main as cli_main
from grefel_hf.inference.backends import OnnxModelForImageClassification, load_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("bad-inference") / "tiny")


@pytest.fixture(scope="module")
def fer(model_dir):
    return pipeline("facial-expression-recognition", model=str(model_dir))


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ----------------------------------------------------------------------------------------------------------------
# Files that cannot be read: the same message from the pipeline, explain and predict
# ----------------------------------------------------------------------------------------------------------------

BAD_FILES = {
    "decompression-bomb": (lambda folder: write_decompression_bomb(folder / "bomb.png"),
                           r"bomb\.png is refused as a possible decompression bomb: Image size \(900000000 pixels\)"),
    "dangling-link": (lambda folder: _link(folder / "gone.png", folder / "dangling.png"),
                      r"dangling\.png is a symbolic link to .*gone\.png, which does not exist"),
    "link-loop": (lambda folder: _link(folder / "loop.png", folder / "loop.png"),
                  r"loop\.png is a symbolic link loop"),
}


def _link(target, link):
    os.symlink(target, link)
    return link


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_the_pipeline_names_the_image_and_the_problem(case, fer, tmp_path):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=r"image 0: .*" + message):
        fer(str(path))
    (result,) = fer.image_faces([str(path)], skip_unreadable=True)
    assert re.search(message, result.error) and result.faces == []


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_explain_says_it_in_one_line_and_exits_2(case, model_dir, tmp_path, caplog):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    code = cli_main(["explain", str(path), "--model", str(model_dir), "--output_dir", str(tmp_path / "out")])
    errors = _errors(caplog)
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors
    assert "Traceback" not in caplog.text and not (tmp_path / "out").exists()


def test_predict_skips_each_counts_it_and_says_why(model_dir, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(astronaut()).save(photos / "good.png")
    for make, _ in BAD_FILES.values():
        make(photos)
    os.symlink(photos, photos / "sub" / "up")  # a folder link back to an ancestor
    os.mkfifo(photos / "pipe.png")  # reading it would block forever
    out = tmp_path / "rows.csv"
    code = cli_main(["predict", str(photos), str(photos / "dangling.png"), "--model", str(model_dir), "--output",
                     str(out), "--no_progress"])
    assert code == 0
    summary = json.loads((tmp_path / "rows.summary.json").read_text())
    reasons = {os.path.basename(entry["file"]): entry["reason"] for entry in summary["unreadable"]}
    assert sorted(reasons) == ["bomb.png", "dangling.png", "loop.png", "pipe.png", "up"]
    for name, (_, message) in zip(("bomb.png", "dangling.png", "loop.png"), BAD_FILES.values(), strict=True):
        assert re.search(message.split(r"\.png ")[1], reasons[name]), reasons[name]
    assert reasons["up"].startswith("is a symbolic link loop: it leads back to")
    assert reasons["pipe.png"] == "is not a regular file (a pipe, socket or device)"
    assert summary["images"] == 1 and summary["missing"] == []
    assert out.read_text().count("good.png") == 1


# ----------------------------------------------------------------------------------------------------------------
# Model folders and ONNX files: one line naming the file and the problem, from Python and from the command line
# ----------------------------------------------------------------------------------------------------------------

def _pickle_only(folder):
    (folder / "model.safetensors").unlink()
    (folder / "model.pkl").write_bytes(b"\x80\x04N.")  # a pickle of None: its content does not matter


def _pickle_with_code(folder):
    state = GReFELForImageClassification.from_pretrained(folder).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save({**state, "on_load": print}, folder / "pytorch_model.bin")  # a global that weights_only refuses


def _more_labels_than_weights(folder):
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"class{i}" for i in range(8)}
    config["label2id"] = {f"class{i}": i for i in range(8)}
    (folder / "config.json").write_text(json.dumps(config))


MODEL_FOLDER_CASES = {
    "pickle-only": (_pickle_only, r"broken holds no model\.safetensors, only the pickle file\(s\) \['model\.pkl'\]"),
    "pickle-with-code": (_pickle_with_code,
                         r"broken/pytorch_model\.bin: a pickle that holds more than weights is not loaded"),
    "labels-disagree-with-weights": (_more_labels_than_weights,
                                     r"broken/model\.safetensors: config\.json names 8 classes \(id2label\) but these "
                                     r"weights were trained for 7 \(grefel\.anchors has shape \[7, 2, 32\]\)"),
}


@pytest.mark.parametrize("case", list(MODEL_FOLDER_CASES))
def test_a_broken_model_folder_is_one_line_naming_the_file_from_python_and_the_cli(case, model_dir, tmp_path,
                                                                                   caplog):
    breakage, message = MODEL_FOLDER_CASES[case]
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    breakage(folder)
    with pytest.raises(OSError, match=message):
        GReFELForImageClassification.from_pretrained(folder)
    with pytest.raises(OSError, match=message):
        load_model(folder, backend="torch", device="cpu")
    with pytest.raises(ValueError, match=message):  # transformers' pipeline() quotes the error it got
        pipeline("facial-expression-recognition", model=str(folder))
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    caplog.clear()
    code = cli_main(["predict", str(tmp_path / "a.png"), "--model", str(folder), "--output", str(tmp_path / "r.csv"),
                     "--no_progress"])
    errors = _errors(caplog)
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]) and "\n" not in errors[0], errors
    assert not (tmp_path / "r.csv").exists()


def _onnx_graph(path, labels: int, width, outputs=("probabilities", "reliability")):
    """A small hand-built classifier graph (pixel_values (batch, 3, 48, 48) -> `width` probabilities, declared with
    the width given, a number or a name) whose metadata names `labels` classes."""
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, (3, 7), np.linspace(0, 1, 21, dtype=np.float32))
    nodes = [helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
             helper.make_node("ReduceMax", ["probabilities"], ["reliability"], axes=[1], keepdims=0)]
    declared = {"probabilities": helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", width]),
                "reliability": helper.make_tensor_value_info("reliability", TensorProto.FLOAT, ["batch"])}
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                                                            ["batch", 3, 48, 48])],
                              [declared[name] for name in outputs], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "grefel_id2label", json.dumps({str(i): f"c{i}" for i in range(labels)})
    onnx.save(model, str(path))
    return path


ONNX_CASES = {
    "metadata-names-more-classes": ({"labels": 8, "width": 7},
                                    r"x\.onnx: its metadata names 8 classes but its graph gives 7 probabilities"),
    "width-only-known-by-running": ({"labels": 8, "width": "classes"},
                                    r"x\.onnx: its metadata names 8 classes but its graph gives 7 probabilities"),
    "an-output-missing": ({"labels": 7, "width": 7, "outputs": ("probabilities",)},
                          r"x\.onnx: expected an export with input pixel_values and outputs \(probabilities, "
                          r"reliability\), got inputs \['pixel_values'\] and outputs \['probabilities'\]"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_an_onnx_file_whose_graph_breaks_its_metadata_is_refused_naming_it(case, tmp_path, caplog):
    settings, message = ONNX_CASES[case]
    path = _onnx_graph(tmp_path / "x.onnx", **settings)
    with pytest.raises(ValueError, match=message):
        OnnxModelForImageClassification.from_onnx(path)
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    code = cli_main(["predict", str(tmp_path / "a.png"), "--model", str(path), "--output", str(tmp_path / "r.csv"),
                     "--no_progress"])
    errors = _errors(caplog)
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors


def test_a_matching_hand_built_graph_loads(tmp_path):
    """The graph of the cases above is sound when its metadata agrees with it, so each case fails for its reason."""
    model = OnnxModelForImageClassification.from_onnx(_onnx_graph(tmp_path / "ok.onnx", labels=7, width="classes"))
    out = model(pixel_values=torch.rand(2, 3, 48, 48))
    assert out.logits.shape == (2, 7) and out.reliability.shape == (2,)


# ----------------------------------------------------------------------------------------------------------------
# A batch size of 0 is refused everywhere
# ----------------------------------------------------------------------------------------------------------------

def test_batch_size_0_is_refused_by_the_pipeline_its_call_and_image_faces(model_dir, fer):
    photo = astronaut()
    message = "batch_size must be a positive number of faces per forward pass, got 0"
    with pytest.raises(ValueError, match=message):
        pipeline("facial-expression-recognition", model=str(model_dir), batch_size=0)
    with pytest.raises(ValueError, match=message):
        fer(photo, batch_size=0)
    with pytest.raises(ValueError, match=message):
        fer([photo, photo], batch_size=0)
    with pytest.raises(ValueError, match=message):
        fer.image_faces([photo], batch_size=0)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_batch_size_0_is_one_line_and_exit_2_from_the_commands(command, model_dir, tmp_path, caplog):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    argv = {"predict": ["predict", str(tmp_path / "a.png"), "--model", str(model_dir), "--output",
                        str(tmp_path / "r.csv"), "--no_progress"],
            "evaluate": ["evaluate", "--model_dir", str(model_dir), "--dataset", "synthetic", "--output_dir",
                         str(tmp_path / "eval"), "--no_progress"]}[command]
    assert cli_main([*argv, "--batch_size", "0"]) == 2
    errors = _errors(caplog)
    assert len(errors) == 1 and "--batch_size must be >= 1, got 0" in errors[0], errors
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "eval").exists()
