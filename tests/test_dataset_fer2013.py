"""FER2013 builder on tiny fixtures in both real layouts (fer2013.csv and the Kaggle image folders)."""

import csv
import logging
import os
from collections import Counter

import numpy as np
import pytest

from dataset_scripts import FER2013_LABELS, DatasetFormatError, load_fer2013
from dataset_scripts.fixtures import write_fer2013_csv, write_fer2013_folders

SPLITS = {"train": [0, 1, 2, 3, 4, 5, 6, 3, 3, 6, 0, 2], "validation": [1, 3, 5, 6], "test": [0, 2, 4]}


def label_counts(dataset) -> Counter:
    return Counter(dataset["label"][:])


def test_csv_layout_splits_labels_and_pixels(tmp_path):
    rows = write_fer2013_csv(str(tmp_path / "fer"), SPLITS)
    dsd = load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    assert set(dsd) == {"train", "validation", "test"}
    for split, labels in SPLITS.items():
        assert label_counts(dsd[split]) == Counter(labels)
    assert dsd["train"].features["label"].names == list(FER2013_LABELS)
    example = dsd["validation"][0]
    row_index = int(example["source"].split(":")[1])
    assert example["source"].startswith("fer2013.csv:") and rows[row_index] == (
        "validation",
        example["label"],
    )
    with open(tmp_path / "fer" / "fer2013.csv", newline="") as handle:
        csv_row = list(csv.reader(handle))[row_index + 1]
    expected = np.array(csv_row[1].split(), dtype=np.uint8).reshape(48, 48)
    assert example["image"].size == (48, 48)
    np.testing.assert_array_equal(np.asarray(example["image"]), expected)  # PNG storage is lossless


def test_folder_layout_uses_name_prefixes(tmp_path):
    written = write_fer2013_folders(str(tmp_path / "fer"), SPLITS)
    dsd = load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    for split, labels in SPLITS.items():
        assert label_counts(dsd[split]) == Counter(labels)
        assert sorted(dsd[split]["source"][:]) == sorted(written[split])
    image = dsd["test"][0]["image"]
    assert image.size == (48, 48) and image.mode == "L"


def test_folder_layout_without_private_test_omits_test(tmp_path, caplog):
    write_fer2013_folders(
        str(tmp_path / "fer"), {"train": SPLITS["train"], "validation": SPLITS["validation"]}
    )
    with caplog.at_level(logging.WARNING):
        dsd = load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    assert set(dsd) == {"train", "validation"}
    assert "the test split has no images; it is omitted" in caplog.text


def test_folder_layout_without_prefixes_carves_validation(tmp_path, caplog):
    train = [label for label in range(7) for _ in range(10)]
    write_fer2013_folders(str(tmp_path / "fer"), {"train": train, "test": [0, 1, 2]}, prefixes=False)
    with caplog.at_level(logging.INFO):
        dsd = load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"), validation_fraction=0.2)
    assert "carved with seed 0" in caplog.text
    assert len(dsd["test"]) == 3
    assert label_counts(dsd["validation"]) == Counter({label: 2 for label in range(7)})  # stratified
    train_sources, val_sources = set(dsd["train"]["source"][:]), set(dsd["validation"]["source"][:])
    assert not train_sources & val_sources and len(train_sources | val_sources) == len(train)
    again = load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache2"), validation_fraction=0.2)
    assert sorted(again["validation"]["source"][:]) == sorted(val_sources)  # the same seed carves the same
    other = load_fer2013(
        str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache3"), validation_fraction=0.2, seed=1
    )
    assert sorted(other["validation"]["source"][:]) != sorted(val_sources)


# ---------------------------------------------------------------- bad input
def _write_csv(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


GOOD_PIXELS = " ".join(["7"] * 2304)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["label,pixels,Usage", f"0,{GOOD_PIXELS},Training"],
            r"line 1: expected the header emotion,pixels,Usage",
        ),
        (
            ["emotion,pixels,Usage", f"0,{GOOD_PIXELS},Training", "1,1 2 3,Training"],
            r"line 3: pixels must be 2304 numbers \(48x48\), got 3",
        ),
        (["emotion,pixels,Usage", f"9,{GOOD_PIXELS},Training"], r"line 2: emotion 9 out of range 0-6"),
        (["emotion,pixels,Usage", f"x,{GOOD_PIXELS},Training"], r"line 2: emotion must be an integer"),
        (
            ["emotion,pixels,Usage", "0," + " ".join(["300"] * 2304) + ",Training"],
            r"line 2: pixel values must be",
        ),
        (["emotion,pixels,Usage", f"0,{GOOD_PIXELS},Train"], r"line 2: Usage must be one of"),
        (["emotion,pixels,Usage", f"0,{GOOD_PIXELS},PublicTest"], r"the train split has no images"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, lines, message):
    _write_csv(tmp_path / "fer" / "fer2013.csv", lines)
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    assert "fer2013.csv" in str(info.value)


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="FER2013 data_dir: folder not found"):
        load_fer2013(str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither fer2013.csv nor a train/ folder"):
        load_fer2013(str(tmp_path / "empty"), cache_dir=str(tmp_path / "cache"))


def test_truncated_image_is_named(tmp_path):
    written = write_fer2013_folders(str(tmp_path / "fer"), SPLITS)
    bad = tmp_path / "fer" / written["train"][3]
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="unreadable or truncated image") as info:
        load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    assert os.path.basename(written["train"][3]) in str(info.value)
    assert info.value.__cause__ is None and "DatasetGenerationError" not in repr(info.value)


def test_unknown_class_folder_and_mixed_prefixes(tmp_path):
    write_fer2013_folders(str(tmp_path / "fer"), SPLITS)
    (tmp_path / "fer" / "train" / "contempt").mkdir()
    with pytest.raises(DatasetFormatError, match=r"unknown class folder .*contempt"):
        load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "fer" / "train" / "contempt").rmdir()
    odd = tmp_path / "fer" / "test" / "happy" / "odd.jpg"
    odd.write_bytes(
        (tmp_path / "fer" / "test" / "angry")
        .joinpath(os.listdir(tmp_path / "fer" / "test" / "angry")[0])
        .read_bytes()
    )
    with pytest.raises(
        DatasetFormatError, match=r"1 images \(e.g. odd.jpg\) lack the PublicTest_/PrivateTest_"
    ):
        load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))


def test_empty_train_folder_is_an_error(tmp_path):
    write_fer2013_folders(str(tmp_path / "fer"), {"validation": [0, 1]})
    (tmp_path / "fer" / "train").mkdir()
    with pytest.raises(DatasetFormatError, match="the train split has no images"):
        load_fer2013(str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"))
