"""The single entry point, the command line of the builder modules, and cache invalidation."""

import importlib
import os
import subprocess
import sys
import time
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import (
    DATASET_LABELS,
    FER2013_LABELS,
    FERPLUS_LABELS,
    RAFDB_LABELS,
    DatasetFormatError,
    load_expression_dataset,
)
from dataset_scripts.building import compute_cache_hash
from dataset_scripts.fixtures import random_face, write_fer2013_csv, write_fer2013_folders

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = {"train": [0, 1, 2, 3, 4, 5, 6, 6], "validation": [3, 4], "test": [5]}


def run_module(module, *args, cwd):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_label_constants():
    assert DATASET_LABELS["fer2013"] == FER2013_LABELS and DATASET_LABELS["synthetic"] == FER2013_LABELS
    assert len(FER2013_LABELS) == 7 and len(FERPLUS_LABELS) == 8 and len(RAFDB_LABELS) == 7
    assert (
        FER2013_LABELS[6] == "neutral" and FERPLUS_LABELS[7] == "contempt" and RAFDB_LABELS[0] == "surprise"
    )


def test_by_name(tmp_path):
    write_fer2013_csv(str(tmp_path / "fer"), SPLITS)
    dsd = load_expression_dataset(
        "fer2013", data_dir=str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache")
    )
    assert {k: len(v) for k, v in dsd.items()} == {"train": 8, "validation": 2, "test": 1}
    synthetic = load_expression_dataset(
        "synthetic", cache_dir=str(tmp_path / "cache"), train_size=14, validation_size=0, test_size=0
    )
    assert len(synthetic["train"]) == 14
    with pytest.raises(ValueError, match=r"'synthetic' does not take \['label_mode'\]; its options are"):
        load_expression_dataset("synthetic", label_mode="majority")
    with pytest.raises(ValueError, match="'ferplus' needs data_dir="):
        load_expression_dataset("ferplus")
    with pytest.raises(FileNotFoundError, match="not a dataset name"):
        load_expression_dataset(str(tmp_path / "fer2014"))


def test_cli_writes_save_to_disk_folder_and_parquet_and_both_load_back(tmp_path):
    write_fer2013_folders(str(tmp_path / "fer"), SPLITS)
    result = run_module(
        "dataset_scripts.fer2013",
        "--data_dir",
        str(tmp_path / "fer"),
        "--output_dir",
        "out",
        "--cache_dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr  # the package does not pre-import the module run with -m
    dsd = datasets.load_from_disk(str(tmp_path / "out"))
    for split, labels in SPLITS.items():
        assert Counter(dsd[split]["label"][:]) == Counter(labels)
    assert os.path.isdir(tmp_path / "cache" / "fer2013")  # cached under the dataset's name, not "__main__"
    result = run_module(
        "dataset_scripts.fer2013",
        "--data_dir",
        str(tmp_path / "fer"),
        "--output_dir",
        "pq",
        "--format",
        "parquet",
        "--cache_dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "pq" / "data")) == [
        f"{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")
    ]
    for path in ("out", "pq"):
        loaded = load_expression_dataset(str(tmp_path / path), cache_dir=str(tmp_path / "cache"))
        assert loaded["train"].features["label"].names == list(FER2013_LABELS)
        assert Counter(loaded["validation"]["label"][:]) == Counter(SPLITS["validation"])
        assert loaded["test"][0]["image"].size == (48, 48)


def test_cli_reports_bad_input_and_offline_push_clearly(tmp_path):
    (tmp_path / "fer").mkdir()
    (tmp_path / "fer" / "fer2013.csv").write_text("a,b,c\n")
    result = run_module(
        "dataset_scripts.fer2013",
        "--data_dir",
        str(tmp_path / "fer"),
        "--output_dir",
        "out",
        "--cache_dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "fer2013.csv line 1: expected the header emotion,pixels,Usage" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_module(
        "dataset_scripts.synthetic",
        "--output_dir",
        "out",
        "--train_size",
        "7",
        "--validation_size",
        "0",
        "--test_size",
        "0",
        "--push_to_hub",
        "someone/synthetic-fer",
        "--cache_dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        "push_to_hub('someone/synthetic-fer') failed" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    )
    assert os.path.isfile(tmp_path / "out" / "dataset_dict.json")  # written before the push was tried


def test_image_folder_path_keeps_canonical_class_order(tmp_path):
    root = tmp_path / "tree"
    for split, folder in (("train", "train"), ("validation", "val")):
        for label in (0, 6):
            path = root / folder / FER2013_LABELS[label] / f"{split}_{label}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_face(np.random.default_rng(label))).save(path)
    for name in FER2013_LABELS[1:6]:  # every FER2013 class folder exists, most of them empty
        (root / "train" / name).mkdir()
    dsd = load_expression_dataset(str(root), cache_dir=str(tmp_path / "cache"))
    assert set(dsd) == {"train", "validation"}
    assert dsd["train"].features["label"].names == list(FER2013_LABELS)
    assert sorted(dsd["validation"]["label"][:]) == [0, 6]
    assert sorted(dsd["validation"]["source"][:]) == [
        "val/angry/validation_0.png",
        "val/neutral/validation_6.png",
    ]
    custom = load_expression_dataset(
        str(root), cache_dir=str(tmp_path / "cache"), label_names=list(FER2013_LABELS)
    )
    assert custom["train"].features["label"].names == list(FER2013_LABELS)


def test_bad_paths_and_schemas(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="is not a dataset folder"):
        load_expression_dataset(str(tmp_path / "empty"))
    ds = datasets.Dataset.from_dict({"image": ["x"], "label": [3]})
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(DatasetFormatError, match=r"plain split train: expected an 'image' column of type"):
        load_expression_dataset(str(tmp_path / "plain"))
    ds.save_to_disk(str(tmp_path / "single"))
    with pytest.raises(DatasetFormatError, match="single holds a single Dataset; expected a DatasetDict"):
        load_expression_dataset(str(tmp_path / "single"))
    with pytest.raises(ValueError, match="data_dir is only used with a dataset name"):
        load_expression_dataset(str(tmp_path / "plain"), data_dir=str(tmp_path))


def test_edited_input_file_rebuilds(tmp_path):
    fer = str(tmp_path / "fer")
    write_fer2013_csv(fer, SPLITS)
    first = load_expression_dataset("fer2013", data_dir=fer, cache_dir=str(tmp_path / "cache"))
    time.sleep(0.01)  # a distinct mtime even on coarse clocks
    write_fer2013_csv(fer, {"train": SPLITS["train"] * 2, "validation": SPLITS["validation"]})
    second = load_expression_dataset("fer2013", data_dir=fer, cache_dir=str(tmp_path / "cache"))
    assert len(first["train"]) == 8 and len(second["train"]) == 16 and "test" not in second
    again = load_expression_dataset("fer2013", data_dir=fer, cache_dir=str(tmp_path / "cache"))
    assert again["train"].cache_files == second["train"].cache_files  # unchanged inputs reuse the cache


def test_cache_hash_follows_code_and_inputs(tmp_path, monkeypatch):
    module_file = tmp_path / "fake_builder_module.py"
    module_file.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fake_builder_module")
    data = tmp_path / "data.csv"
    data.write_text("a\n")
    base = compute_cache_hash([module], [str(data)])
    assert compute_cache_hash([module], [str(data)]) == base
    module_file.write_text("VALUE = 2\n")
    code_changed = compute_cache_hash([module], [str(data)])
    data.write_text("a\nb\n")
    input_changed = compute_cache_hash([module], [str(data)])
    assert len({base, code_changed, input_changed}) == 3


def test_save_to_disk_folder_with_an_empty_split(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    face = Image.fromarray(np.full((48, 48), 100, np.uint8), "L")
    splits = {"train": 2, "test": 0}
    datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"image": [face] * n, "label": [1] * n}, features=features)
            for name, n in splits.items()
        }
    ).save_to_disk(str(tmp_path / "dsd"))
    dsd = load_expression_dataset(str(tmp_path / "dsd"))
    assert {name: len(ds) for name, ds in dsd.items()} == splits
    assert dsd["test"].features == features and dsd["train"][1]["label"] == 1
