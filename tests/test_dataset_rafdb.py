"""RAF-DB basic builder on fixtures in its exact layout (the real data is not redistributable)."""

from collections import Counter

import pytest

from dataset_scripts import RAFDB_LABELS, DatasetFormatError, load_rafdb
from dataset_scripts.fixtures import write_rafdb

TRAIN = [label for label in range(7) for _ in range(5)]  # 5 per class
TEST = [0, 3, 3, 6]


@pytest.fixture(scope="module")
def rafdb_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rafdb")
    write_rafdb(str(root), {"train": TRAIN, "test": TEST})
    return root


def test_aligned_splits_labels_and_images(rafdb_dir, tmp_path):
    dsd = load_rafdb(str(rafdb_dir), cache_dir=str(tmp_path), validation_fraction=0.2)
    assert Counter(dsd["validation"]["label"][:]) == Counter(range(7))  # 1 of every 5, stratified
    assert Counter(dsd["train"]["label"][:]) + Counter(dsd["validation"]["label"][:]) == Counter(TRAIN)
    assert not set(dsd["train"]["source"][:]) & set(dsd["validation"]["source"][:])
    assert dsd["test"]["source"][:] == ["test_0001.jpg", "test_0002.jpg", "test_0003.jpg", "test_0004.jpg"]
    # File label 1 is surprise: stored 0-based.
    assert dsd["test"]["label"][:] == TEST and dsd["test"].features["label"].names == list(RAFDB_LABELS)
    assert dsd["test"].features["label"].int2str(0) == "surprise"
    image = dsd["test"][0]["image"]
    assert image.size == (100, 100) and image.mode == "RGB"


def test_original_variant_and_basic_folder_as_data_dir(rafdb_dir, tmp_path):
    dsd = load_rafdb(str(rafdb_dir / "basic"), cache_dir=str(tmp_path), image_variant="original")
    assert dsd["test"][0]["image"].size == (120, 120)
    assert len(dsd["train"]) + len(dsd["validation"]) == len(TRAIN)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00001.jpg 8", r"line 1: label must be an integer 1-7, got '8'"),
        ("train_00001.jpg", r"line 1: expected '<train\|test>_<number>.jpg <label 1-7>'"),
        ("val_00001.jpg 3", r"line 1: expected '<train\|test>_<number>.jpg <label 1-7>'"),
        ("train_00099.jpg 3", r"line 1: image .*train_00099_aligned.jpg not found"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    write_rafdb(str(tmp_path), {"train": [0, 1], "test": [2]})
    label_file = tmp_path / "basic" / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join([line, *lines[1:]]) + "\n")
    with pytest.raises((DatasetFormatError, FileNotFoundError), match=message) as info:
        load_rafdb(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert "list_patition_label.txt" in str(info.value)


def test_missing_label_file_and_truncated_image(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"RAF-DB label list: file not found: .*list_patition_label.txt"
    ):
        load_rafdb(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    write_rafdb(str(tmp_path), {"train": [0, 1, 2], "test": [2]})
    bad = tmp_path / "basic" / "Image" / "aligned" / "test_0001_aligned.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(DatasetFormatError, match=r"unreadable or truncated image .*test_0001_aligned.jpg"):
        load_rafdb(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_no_train_lines_is_an_error(tmp_path):
    write_rafdb(str(tmp_path), {"test": [0, 1]})
    with pytest.raises(DatasetFormatError, match="no train_\\* images listed"):
        load_rafdb(str(tmp_path), cache_dir=str(tmp_path / "cache"))
