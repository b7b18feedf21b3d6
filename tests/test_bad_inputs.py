"""The bad-input corpus: corrupt and odd images, broken CSV and label files, broken model folders and bad arguments,
tried as a careful user would. Each case asserts the exact kind of outcome: the error type and that its message
names the file, row, index or argument (one line and exit status 2 for a command), or the correct result. Every
file is generated here; nothing is downloaded. The prediction command's own option errors are tested with it, in
tests/test_inference_predict.py."""

import io
import json
import logging
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_grefel_config
from inference_support import astronaut, write_odd_format_files
from PIL import Image
from transformers import pipeline

from dataset_scripts.common import DatasetFormatError
from dataset_scripts.fer2013 import load_fer2013
from dataset_scripts.ferplus import load_ferplus
from dataset_scripts.fixtures import (
    write_fer2013_csv,
    write_fer2013_folders,
    write_ferplus_folders,
    write_rafdb,
)
from dataset_scripts.rafdb import load_rafdb
from grefel_hf import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor, save_grefel_folder
from grefel_hf.cli import main as grefel_cli
from grefel_hf.factory import build_image_processor
from grefel_hf.image_processing_grefel import read_image
from grefel_hf.pipeline_grefel import GReFELImageClassificationPipeline

sys.path.insert(0, REPO_ROOT)
import push_to_hub  # noqa: E402
import train_hf  # noqa: E402

CLEAR = [8, 1, 0, 0, 0, 0, 0, 0, 1, 0]


def _pixels(images):
    return GReFELImageProcessor(size={"height": 16, "width": 16})(images, return_tensors="pt")["pixel_values"]


def _gray(value=100, size=20):
    return np.full((size, size), value, np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Images given to the processor: one rule per input kind, and errors that name the image
# ----------------------------------------------------------------------------------------------------------------

def _saved(tmp_path, name, image, **save_kwargs):
    path = tmp_path / name
    image.save(path, **save_kwargs)
    return str(path)


GOOD_IMAGE_CASES = {
    "float-numpy-in-unit-range": lambda tmp: (np.full((20, 20), 100 / 255, np.float32), _gray()),
    "float-tensor-chw-in-unit-range": lambda tmp: (torch.full((3, 20, 20), 100 / 255), _gray()),
    "pil-F-in-unit-range": lambda tmp: (Image.fromarray(np.full((20, 20), 100 / 255, np.float32), "F"), _gray()),
    "16-bit-png": lambda tmp: (_saved(tmp, "a.png", Image.fromarray(np.full((20, 20), 100 * 257, np.uint16))),
                               _gray()),
    "int32-tiff": lambda tmp: (_saved(tmp, "a.tif", Image.fromarray(np.full((20, 20), 100 * 257, np.int32), "I")),
                               _gray()),
    "float-tiff": lambda tmp: (_saved(tmp, "f.tif", Image.fromarray(np.full((20, 20), 100 / 255, np.float32), "F")),
                               _gray()),
    "rgba-png-opaque": lambda tmp: (_saved(tmp, "a.png", Image.new("RGBA", (20, 20), (100, 100, 100, 255))), _gray()),
    "rgba-png-transparent-is-white": lambda tmp: (_saved(tmp, "t.png", Image.new("RGBA", (20, 20), (0, 0, 0, 0))),
                                                  _gray(255)),
    "la-png": lambda tmp: (_saved(tmp, "la.png", Image.new("LA", (20, 20), (100, 255))), _gray()),
    "palette-png": lambda tmp: (_saved(tmp, "p.png", Image.new("L", (20, 20), 100).convert("P")), _gray()),
    "cmyk-jpeg": lambda tmp: (_saved(tmp, "c.jpg", Image.new("CMYK", (20, 20), (0, 0, 0, 155)), quality=100),
                              np.asarray(Image.new("CMYK", (20, 20), (0, 0, 0, 155)).convert("RGB"))),
    "2d-uint8-array": lambda tmp: (_gray(), Image.fromarray(_gray())),
}


@pytest.mark.parametrize("case", list(GOOD_IMAGE_CASES))
def test_odd_but_valid_images_give_what_their_8_bit_version_gives(case, tmp_path):
    odd, reference = GOOD_IMAGE_CASES[case](tmp_path)
    torch.testing.assert_close(_pixels(odd), _pixels(reference), atol=0.02, rtol=0)


def test_an_exif_rotated_jpeg_is_read_upright(tmp_path):
    array = np.zeros((20, 30), np.uint8)
    array[:, :5] = 255  # a bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _saved(tmp_path, "r.jpg", Image.fromarray(array), exif=exif, quality=100)
    upright = np.asarray(Image.fromarray(array).rotate(-90, expand=True))
    torch.testing.assert_close(_pixels(path), _pixels(upright), atol=0.05, rtol=0)


def _truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:600])
    return str(path)


BAD_IMAGE_CASES = {
    "float-in-0-255": (lambda tmp: np.full((20, 20), 100.0, np.float32), r"image 0 has floating-point pixel values "
                       r"in \[100, 100\]; floating-point images must be in \[0, 1\]"),
    "float-tensor-normalised": (lambda tmp: torch.full((3, 20, 20), -0.5), r"image 0 .* must be in \[0, 1\]"),
    "nan": (lambda tmp: np.full((20, 20), np.nan, np.float32), "image 0 contains NaN"),
    "truncated-jpeg-path": (lambda tmp: _truncated_jpeg(tmp), r"image 0: .*cut\.jpg is truncated or corrupt"),
    "truncated-jpeg-second-in-list": (lambda tmp: [_gray(), Image.open(_truncated_jpeg(tmp))],
                                      r"image 1 \(.*cut\.jpg\) is truncated or corrupt"),
    "one-pixel-second-in-list": (lambda tmp: [_gray(), Image.new("L", (1, 1))], "image 1 is 1x1 pixels"),
    "text-file-named-jpg": (lambda tmp: str(tmp / "x.jpg") if (tmp / "x.jpg").write_text("hello") else None,
                            r"image 0: .*x\.jpg is not an image file"),
    "missing-file": (lambda tmp: str(tmp / "none.png"), r"image 0 is a str that names no image file: .*none\.png"),
    "empty-list": (lambda tmp: [], "empty list"),
    "dict": (lambda tmp: {"pixels": 1}, "image 0 is a dict"),
    "five-channels": (lambda tmp: np.zeros((20, 20, 5), np.uint8), "5 channels"),
    "bool-array": (lambda tmp: np.zeros((20, 20), bool), "dtype bool"),
    "negative-int16": (lambda tmp: np.full((20, 20), -3, np.int16), "integer pixel values in"),
    "5d-array": (lambda tmp: np.zeros((2, 20, 20, 3, 1), np.uint8), "shape"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGE_CASES))
def test_bad_images_are_a_value_error_naming_the_image(case, tmp_path):
    make, message = BAD_IMAGE_CASES[case]
    with pytest.raises(ValueError, match=message):
        _pixels(make(tmp_path))


# ----------------------------------------------------------------------------------------------------------------
# Model folders
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet"))
    save_grefel_folder(model, build_image_processor(model.config), folder)
    return folder


def _edit_json(folder, name, **changes):
    path = folder / name
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


def _broken_copy(model_dir, tmp_path, breakage):
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    breakage(folder)
    return folder


def _cut_weights(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


MODEL_FOLDER_CASES = {
    "id2label-with-a-gap": (lambda f: _edit_json(f, "config.json", id2label={**{str(i): f"c{i}" for i in range(6)},
                                                                             "9": "c9"}),
                            ValueError, r"id2label must have the ids 0..6 without gaps"),
    "duplicate-label-names": (lambda f: _edit_json(f, "config.json", id2label={str(i): "same" for i in range(7)}),
                              ValueError, r"id2label names a class more than once: \['same'\]"),
    "backbone-kwargs-reading-a-file": (lambda f: _edit_json(f, "config.json",
                                                            backbone_kwargs={"checkpoint_path": "/etc/hosts"}),
                                       ValueError, r"backbone_kwargs .* refused \['checkpoint_path'\]"),
    "unknown-backbone": (lambda f: _edit_json(f, "config.json", backbone="no_such_net"),
                         ValueError, "Unknown timm backbone 'no_such_net'"),
    "truncated-weights": (_cut_weights, OSError, r"broken/model\.safetensors: the weights file is truncated or corrupt"),
    "garbage-weights": (lambda f: (f / "model.safetensors").write_bytes(b"x" * 64), OSError,
                        r"model\.safetensors: the weights file is truncated or corrupt"),
    "config-not-json": (lambda f: (f / "config.json").write_text("{nope"), OSError, r"broken/config\.json"),
}


@pytest.mark.parametrize("case", list(MODEL_FOLDER_CASES))
def test_broken_model_folders_are_refused_at_load_naming_the_field_or_file(case, model_dir, tmp_path):
    breakage, error, message = MODEL_FOLDER_CASES[case]
    folder = _broken_copy(model_dir, tmp_path, breakage)
    with pytest.raises(error, match=message):
        GReFELForImageClassification.from_pretrained(folder)


PROCESSOR_CASES = {
    "zero-std": ({"image_std": [0, 0, 0]}, r"image_std must be positive"),
    "mean-of-two": ({"image_mean": [0.5, 0.5]}, r"image_mean must be 3 finite numbers"),
    "zero-size": ({"size": {"height": 0, "width": 48}}, r"size must give a height and width"),
}


@pytest.mark.parametrize("case", list(PROCESSOR_CASES))
def test_broken_processor_configs_are_refused_at_load(case, model_dir, tmp_path):
    changes, message = PROCESSOR_CASES[case]
    folder = _broken_copy(model_dir, tmp_path, lambda f: _edit_json(f, "preprocessor_config.json", **changes))
    with pytest.raises(ValueError, match=message):
        GReFELImageProcessor.from_pretrained(folder)


def test_a_config_with_retired_training_fields_loads_and_says_so(model_dir, tmp_path, caplog):
    folder = _broken_copy(model_dir, tmp_path, lambda f: _edit_json(f, "config.json", label_smoothing=0.2,
                                                                    class_weights=[1.0] * 7, detach_confidences=True))
    with caplog.at_level(logging.WARNING):
        config = GReFELConfig.from_pretrained(folder)
    assert "label_smoothing" in caplog.text and not hasattr(config, "class_weights")


# ----------------------------------------------------------------------------------------------------------------
# Pipelines: the same result as the processor for the same file, and clear errors
# ----------------------------------------------------------------------------------------------------------------

PIPELINES = {"facial-expression-recognition": {"face_detector": "none", "top_k": None},
             "image-classification": {"top_k": 7}}


def _pipeline(task, model_dir):
    """The pipeline of `task` for a GReFEL folder: GReFEL's image-classification class is asked for by name (importing
    grefel_hf leaves transformers' own in place)."""
    if task == "image-classification":
        return pipeline(task, model=str(model_dir), pipeline_class=GReFELImageClassificationPipeline)
    return pipeline(task, model=str(model_dir))


def _scores(task, result):
    entries = result[0]["top_k"] if task == "facial-expression-recognition" else result
    return {entry["label"]: entry["score"] for entry in entries}


@pytest.mark.parametrize("task", list(PIPELINES))
def test_pipelines_read_odd_files_as_the_processor_does(task, model_dir, tmp_path):
    model = GReFELForImageClassification.from_pretrained(model_dir).eval()
    processor = GReFELImageProcessor.from_pretrained(model_dir)
    pipe = _pipeline(task, model_dir)
    for path in write_odd_format_files(tmp_path):
        with torch.no_grad():
            expected = model(**processor(read_image(path), return_tensors="pt")).logits.exp()[0]
        scores = _scores(task, pipe(str(path), **PIPELINES[task]))
        got = torch.tensor([scores[model.config.id2label[i]] for i in range(model.config.num_labels)])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=path.name)


def _bad_pipeline_call(kind, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(astronaut()).save(good)
    if kind == "truncated-second":
        (tmp_path / "cut.png").write_bytes(good.read_bytes()[:2000])
        return [str(good), str(tmp_path / "cut.png")], {}
    if kind == "empty-list":
        return [], {}
    if kind == "unreachable-url":
        return "http://127.0.0.1:9/face.jpg", {"timeout": 5}
    return str(good), {"top_k": {"top-k-minus-one": -1, "top-k-zero": 0, "top-k-float": 2.5}[kind]}


PIPELINE_ERRORS = {
    "truncated-second": r"image 1.*cut\.png",
    "empty-list": "empty list",
    "top-k-minus-one": "top_k must be a positive integer",
    "top-k-zero": "top_k must be a positive integer",
    "top-k-float": "top_k must be a positive integer",
    "unreachable-url": r"http://127\.0\.0\.1:9/face\.jpg",
}


@pytest.mark.parametrize("task", list(PIPELINES))
@pytest.mark.parametrize("kind", list(PIPELINE_ERRORS))
def test_bad_pipeline_calls_are_a_value_error_naming_the_input(kind, task, model_dir, tmp_path):
    images, options = _bad_pipeline_call(kind, tmp_path)
    with pytest.raises(ValueError, match=PIPELINE_ERRORS[kind]):
        _pipeline(task, model_dir)(images, **options)


# ----------------------------------------------------------------------------------------------------------------
# Dataset files: the builders stop before any training and name the file and line
# ----------------------------------------------------------------------------------------------------------------

def _fer2013_csv(tmp_path, edit):
    root = tmp_path / "fer"
    write_fer2013_csv(str(root), {"train": [0, 1, 2], "validation": [3], "test": [4]})
    lines = (root / "fer2013.csv").read_text().splitlines()
    (root / "fer2013.csv").write_text("\n".join(edit(lines)) + "\n")
    return str(root)


def _replace_field(line, index, value):
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


FER2013_CSV_CASES = {
    "bad-header": (lambda lines: ["label,pixels,Usage", *lines[1:]], r"fer2013\.csv line 1"),
    "2303-pixels": (lambda lines: [lines[0], _replace_field(lines[1], 1, " ".join(["1"] * 2303)), *lines[2:]],
                    r"fer2013\.csv line 2"),
    "pixel-256": (lambda lines: [lines[0], _replace_field(lines[1], 1, " ".join(["256"] * 2304)), *lines[2:]],
                  r"fer2013\.csv line 2: pixel values must be in 0-255"),
    "emotion-7": (lambda lines: [lines[0], _replace_field(lines[1], 0, "7"), *lines[2:]], r"fer2013\.csv line 2"),
    "unknown-usage": (lambda lines: [lines[0], _replace_field(lines[1], 2, "Dev"), *lines[2:]], r"fer2013\.csv line 2"),
}


@pytest.mark.parametrize("case", list(FER2013_CSV_CASES))
def test_broken_fer2013_csv_rows_are_named(case, tmp_path):
    edit, message = FER2013_CSV_CASES[case]
    with pytest.raises(DatasetFormatError, match=message):
        load_fer2013(_fer2013_csv(tmp_path, edit), cache_dir=str(tmp_path / "cache"))


def test_fer2013_folders_leave_out_test_faces_inside_train_and_say_so(tmp_path, caplog):
    root = tmp_path / "fer"
    write_fer2013_folders(str(root), {"train": [0, 1, 2], "validation": [3], "test": [4]})
    shutil.copy(next((root / "test").rglob("PrivateTest_*.jpg")), root / "train" / "angry" / "PrivateTest_9.jpg")
    (root / "train" / "angry" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        dataset = load_fer2013(str(root), cache_dir=str(tmp_path / "cache"))
    assert len(dataset["train"]) == 3 and not any("PrivateTest" in s for s in dataset["train"]["source"][:])
    assert "train: dropped 2 rows" in caplog.text and "PrivateTest_* image inside train/" in caplog.text


def test_a_corrupt_image_in_the_fer2013_folders_stops_the_build_naming_it(tmp_path):
    root = tmp_path / "fer"
    paths = write_fer2013_folders(str(root), {"train": [0, 1], "validation": [3], "test": [4]})
    (root / paths["train"][1]).write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DatasetFormatError, match=os.path.basename(paths["train"][1])):
        load_fer2013(str(root), cache_dir=str(tmp_path / "cache"))


def _ferplus(tmp_path, edit=None, rows=None):
    root = tmp_path / "ferplus"
    write_ferplus_folders(str(root), rows or {"train": [CLEAR, CLEAR, CLEAR], "validation": [CLEAR],
                                              "test": [CLEAR]})
    label_csv = root / "FER2013Train" / "label.csv"
    if edit is not None:
        lines = label_csv.read_text().splitlines()
        label_csv.write_text("\n".join(edit(lines)) + "\n")
    return str(root)


FERPLUS_LABEL_CASES = {
    "wrong-field-count": (lambda lines: [lines[0] + ",3", *lines[1:]], DatasetFormatError, r"label\.csv line 1"),
    "vote-of-11": (lambda lines: [lines[0].rsplit(",", 1)[0] + ",11", *lines[1:]], DatasetFormatError,
                   r"label\.csv line 1: vote counts must be in 0-10"),
    "all-votes-zero": (lambda lines: [lines[0].split(",")[0] + ',"(0, 0, 48, 48)",' + ",".join(["0"] * 10),
                                      *lines[1:]], DatasetFormatError, r"label\.csv line 1: all 10 vote counts are 0"),
    "missing-png": (lambda lines: ["nothere.png" + lines[0][len("fer0000000.png"):], *lines[1:]], FileNotFoundError,
                    r"label\.csv line 1: image nothere\.png not found"),
    "conflicting-duplicate": (lambda lines: [*lines, lines[0].rsplit(",", 3)[0] + ",5,0,0"], DatasetFormatError,
                              r"label\.csv line 4: fer0000000\.png is listed again with other votes .* line 1"),
}


@pytest.mark.parametrize("case", list(FERPLUS_LABEL_CASES))
def test_broken_ferplus_label_rows_are_named(case, tmp_path):
    edit, error, message = FERPLUS_LABEL_CASES[case]
    with pytest.raises(error, match=message):
        load_ferplus(_ferplus(tmp_path, edit), cache_dir=str(tmp_path / "cache"))


def test_ferplus_duplicate_rows_train_once_and_every_drop_is_reported_again_from_the_cache(tmp_path, caplog):
    root = _ferplus(tmp_path, lambda lines: [*lines, lines[0], lines[0]],
                    rows={"train": [CLEAR, CLEAR, [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]], "validation": [CLEAR],
                          "test": [CLEAR]})
    for attempt in ("fresh", "cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dataset = load_ferplus(root, cache_dir=str(tmp_path / "cache"))
        assert dataset["train"]["source"][:] == ["FER2013Train/fer0000000.png", "FER2013Train/fer0000001.png"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
        assert len(warnings) == 1, attempt
        message = warnings[0].getMessage()
        assert "train: dropped 3 rows" in message and "2 duplicate label.csv row" in message, attempt
        assert "1 no emotion holds more than half" in message, attempt


def test_ferplus_without_label_csv_names_the_file(tmp_path):
    root = _ferplus(tmp_path)
    os.remove(os.path.join(root, "FER2013Valid", "label.csv"))
    with pytest.raises(FileNotFoundError, match=r"FER2013Valid/label\.csv"):
        load_ferplus(root, cache_dir=str(tmp_path / "cache"))


def _rafdb(tmp_path, edit):
    root = tmp_path / "raf"
    write_rafdb(str(root), {"train": [0, 1, 2, 3, 4, 5, 6, 0, 1, 2], "test": [0, 1]})
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("\n".join(edit(label_file.read_text().splitlines())) + "\n")
    return str(root)


RAFDB_CASES = {
    "label-8": (lambda lines: [lines[0].split()[0] + " 8", *lines[1:]], r"list_patition_label\.txt line 1"),
    "bad-name": (lambda lines: ["train_1.png 1", *lines[1:]], r"list_patition_label\.txt line 1"),
    "conflicting-duplicate": (lambda lines: [*lines, lines[0].split()[0] + " 7"],
                              r"line 13: train_00001\.jpg is listed again with label 7, but line 1"),
}


@pytest.mark.parametrize("case", list(RAFDB_CASES))
def test_broken_rafdb_label_lines_are_named(case, tmp_path):
    edit, message = RAFDB_CASES[case]
    with pytest.raises(DatasetFormatError, match=message):
        load_rafdb(_rafdb(tmp_path, edit), cache_dir=str(tmp_path / "cache"))


def test_rafdb_duplicate_lines_are_dropped_before_validation_is_carved(tmp_path, caplog):
    root = _rafdb(tmp_path, lambda lines: [*lines, *lines[:3]])
    with caplog.at_level(logging.WARNING):
        dataset = load_rafdb(root, cache_dir=str(tmp_path / "cache"))
    train, validation = dataset["train"]["source"][:], dataset["validation"]["source"][:]
    assert len(train) + len(validation) == 10 and not set(train) & set(validation)
    assert "train: dropped 3 rows: 3 duplicate line of the label list" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Commands: one line on stderr and exit status 2, before any work
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def restored_log_levels():
    """train_hf.main() sets the package loggers' levels as a process would; the next tests get them back."""
    import datasets
    import transformers

    names = ("grefel_hf", "dataset_scripts", "grefel_hf.training.run")
    levels = {name: logging.getLogger(name).level for name in names}
    verbosity = (transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity())
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(verbosity[0])
    datasets.utils.logging.set_verbosity(verbosity[1])


def _train(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["train_hf.py", *map(str, argv)])
    code = train_hf.main()
    return code, capsys.readouterr().err.strip()


def _recipe(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


TINY = ["--backbone", "test_resnet", "--image_size", "32", "--embed_dim", "32", "--num_attention_heads", "4",
        "--max_train_samples", "8", "--max_eval_samples", "8", "--max_steps", "1", "--use_cpu", "true"]

TRAIN_CASES = {
    "negative-learning-rate": (lambda tmp: ["--learning_rate", "-1"], "--learning_rate must be >= 0, got -1.0"),
    "batch-size-zero": (lambda tmp: ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be"),
    "invalid-yaml": (lambda tmp: [_recipe(tmp, "r.yaml", "lr: [\n")], r"r\.yaml: not a valid YAML recipe"),
    "invalid-json": (lambda tmp: [_recipe(tmp, "r.json", "{nope")], r"r\.json: not a valid JSON recipe"),
    "recipe-not-a-mapping": (lambda tmp: [_recipe(tmp, "l.yaml", "- 1\n- 2\n")], r"l\.yaml: a recipe must be a mapping"),
    "recipe-unknown-key": (lambda tmp: [_recipe(tmp, "u.yaml", "learning_rat: 0.1\n")],
                           r"u\.yaml: unknown argument\(s\) \['learning_rat'\]"),
    "missing-recipe": (lambda tmp: [tmp / "none.yaml"], r"recipe file not found: .*none\.yaml"),
    "unknown-argument": (lambda tmp: ["--nope", "1"], r"\['--nope', '1'\]"),
    "test-split-for-selection": (lambda tmp: ["--eval_split", "test"], "--eval_split 'test' looks like a test split"),
    "label-smoothing-1.5": (lambda tmp: ["--label_smoothing_factor", "1.5"], r"--label_smoothing_factor must be in"),
    "output-dir-is-a-file": (lambda tmp: ["--output_dir", _recipe(tmp, "file.txt", "x")],
                             r"--output_dir .*file\.txt is an existing file"),
    "bad-json-list": (lambda tmp: [*TINY, "--primary_hidden_sizes", "[1,"], r"--primary_hidden_sizes must be JSON"),
    "offline-hub-id": (lambda tmp: [*TINY, "--model_name_or_path", "someone/not-here"],
                       r"--model_name_or_path 'someone/not-here': no such local folder"),
    "ferplus-without-data-dir": (lambda tmp: ["--dataset", "ferplus"], r"dataset 'ferplus' needs data_dir"),
    "missing-data-dir": (lambda tmp: ["--dataset", "fer2013", "--data_dir", tmp / "nothing"], r"nothing"),
    "too-many-frozen-groups": (lambda tmp: [*TINY, "--backbone_frozen_groups", "99"],
                               r"backbone_frozen_groups is 99, but the .* backbone has only"),
    "missing-backbone-weights": (lambda tmp: [*TINY, "--backbone_weights", tmp / "w.safetensors"], r"w\.safetensors"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_hf_user_errors_are_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys, restored_log_levels):
    make_argv, message = TRAIN_CASES[case]
    argv = make_argv(tmp_path)
    recipe = argv[:1] if argv and str(argv[0]).endswith((".yaml", ".json")) else []
    # a scratch output folder first, so that a case's own --output_dir (given later) wins
    code, err = _train(monkeypatch, capsys, *recipe, "--output_dir", tmp_path / "out", *argv[len(recipe):])
    last = err.splitlines()[-1]  # progress bars of the dataset preparation may come before it
    assert code == 2 and last.startswith("train_hf.py: error: ") and "Traceback" not in err, err
    assert re.search(message, last), last


EVALUATE_CASES = {
    "tta-shift-5": (["--tta_shift", "5"], r"TTA shift must be .* got 5"),
    "tta-views-9": (["--tta_views", "9"], r"number of TTA views must be in 1..6, got 9"),
    "batch-size-0": (["--batch_size", "0"], "--batch_size must be >= 1"),
    "unknown-split": (["--split", "dev"], "has no 'dev' split"),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_user_errors_exit_2_with_one_message(case, model_dir, tmp_path, caplog):
    extra, message = EVALUATE_CASES[case]
    with caplog.at_level(logging.ERROR):
        code = grefel_cli(["evaluate", "--model_dir", str(model_dir), "--dataset", "synthetic", "--output_dir",
                           str(tmp_path / "eval"), "--no_progress", *extra])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_refuses_an_output_file_before_any_work(model_dir, tmp_path, caplog):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    code = grefel_cli(["evaluate", "--model_dir", str(model_dir), "--dataset", "synthetic", "--output_dir",
                       str(target), "--no_progress"])
    assert code == 2 and target.read_text() == "keep me" and "is an existing file" in caplog.text


def test_a_corrupt_second_variant_keeps_the_first_variants_results(model_dir, tmp_path, caplog):
    folder = tmp_path / "run"
    shutil.copytree(model_dir, folder)
    shutil.copytree(model_dir, folder / "ema")
    (folder / "weights_selection.json").write_text(json.dumps({"selected": "raw"}))
    _cut_weights(folder / "ema")
    code = grefel_cli(["evaluate", "--model_dir", str(folder), "--dataset", "synthetic", "--split", "validation",
                       "--max_samples", "8", "--output_dir", str(tmp_path / "eval"), "--no_progress"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert code == 2 and metrics["num_images"] == 8  # the raw weights' results were written
    assert r"ema/model.safetensors: the weights file is truncated or corrupt" in caplog.text


PUSH_CASES = {
    "truncated-weights": (lambda f, tmp: _cut_weights(f), r"model\.safetensors: the weights file is truncated"),
    "missing-metrics": (lambda f, tmp: None, r"metrics file not found: .*nothing\.json"),
    "non-empty-local-dir": (lambda f, tmp: (tmp / "stage").mkdir() or (tmp / "stage" / "x").write_text("x"),
                            r"--local_dir .*stage already exists and is not an empty folder"),
    "bad-repo-id": (lambda f, tmp: None, r"--repo_id must look like 'namespace/name'"),
}


@pytest.mark.parametrize("case", list(PUSH_CASES))
def test_push_to_hub_user_errors_are_one_line_and_exit_2(case, model_dir, tmp_path, monkeypatch, capsys):
    breakage, message = PUSH_CASES[case]
    folder = _broken_copy(model_dir, tmp_path, lambda f: breakage(f, tmp_path))
    argv = ["--model_dir", str(folder), "--repo_id", "a/b" if case != "bad-repo-id" else "no id",
            "--local_dir", str(tmp_path / "stage")]
    if case == "missing-metrics":
        argv += ["--metrics", str(tmp_path / "nothing.json")]
    monkeypatch.setattr(sys, "argv", ["push_to_hub.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        push_to_hub.main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and re.search(message, err), err


INFERENCE_OUTPUT_CASES = {
    "predict-output-is-a-folder": (["predict", "examples/astronaut.jpg", "--output", "{folder}", "--format", "csv"],
                                   "--output .* is an existing folder"),
    "predict-annotate-is-a-file": (["predict", "examples/astronaut.jpg", "--output", "{tmp}/r.csv", "--annotate",
                                    "{file}"], "--annotate .* is an existing file"),
    "export-output-is-a-folder": (["export-onnx", "--output", "{folder}"], "--output .* is an existing folder"),
    "explain-output-is-a-file": (["explain", "examples/astronaut.jpg", "--output_dir", "{file}"],
                                 "--output_dir .* is an existing file"),
}


@pytest.mark.parametrize("case", list(INFERENCE_OUTPUT_CASES))
def test_inference_commands_check_their_output_paths_before_any_work(case, model_dir, tmp_path, caplog):
    argv, message = INFERENCE_OUTPUT_CASES[case]
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("keep me")
    names = {"folder": tmp_path / "folder", "file": tmp_path / "file", "tmp": tmp_path}
    argv = [arg.format(**names).replace("examples/", f"{REPO_ROOT}/examples/") for arg in argv]
    assert grefel_cli([*argv, "--model", str(model_dir)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert (tmp_path / "file").read_text() == "keep me" and not any((tmp_path / "folder").iterdir())
