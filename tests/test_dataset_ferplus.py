"""FER+ builder on tiny fixtures: Microsoft's generated layout, and fer2013new.csv + fer2013.csv."""

import csv
import logging

import numpy as np
import pytest

from dataset_scripts import FERPLUS_LABELS, DatasetFormatError, load_ferplus
from dataset_scripts.ferplus_rules import DROP_NO_MAJORITY, DROP_UNKNOWN_OR_NF
from dataset_scripts.fixtures import write_ferplus_csvs, write_ferplus_folders

# Hand-made vote rows (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF).
CLEAR = [6, 2, 1, 1, 0, 0, 0, 0, 0, 0]  # neutral wins in every mode
TIE = [4, 4, 2, 0, 0, 0, 0, 0, 0, 0]  # majority drops it; the soft modes keep neutral/happiness 50/50
UNKNOWN = [0, 2, 0, 0, 0, 0, 0, 0, 8, 0]  # unknown wins: dropped in every mode
SPREAD = [3, 3, 2, 2, 0, 0, 0, 0, 0, 0]  # majority and the soft modes drop it; multi_target keeps 2 targets
HAPPY = [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]
ROWS = {
    "train": [CLEAR, TIE, UNKNOWN, SPREAD, HAPPY],
    "validation": [CLEAR, TIE, UNKNOWN, SPREAD],
    "test": [HAPPY],
}
# Expected train rows (by position in ROWS["train"]) kept per mode; validation always keeps only CLEAR.
TOP_EMOTION = {0: 0, 1: 0, 3: 0, 4: 1}  # label of each kept train row: the first top emotion
KEPT_TRAIN = {
    "majority": [0, 4],
    "probability": [0, 1, 4],
    "crossentropy": [0, 1, 4],
    "multi_target": [0, 1, 3, 4],
}


@pytest.fixture(scope="module")
def ferplus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ferplus")
    write_ferplus_folders(str(root / "data"), ROWS)  # the FERPlus repo keeps the split folders under data/
    return str(root)


@pytest.mark.parametrize("mode", list(KEPT_TRAIN))
def test_folder_layout_every_label_mode(ferplus_dir, tmp_path, caplog, mode):
    with caplog.at_level(logging.INFO):
        dsd = load_ferplus(ferplus_dir, cache_dir=str(tmp_path), label_mode=mode)
    train = dsd["train"]
    assert [list(v) for v in train["votes"][:]] == [ROWS["train"][i] for i in KEPT_TRAIN[mode]]
    assert train.features["label"].names == list(FERPLUS_LABELS)
    assert train["source"][:][0] == "FER2013Train/fer0000000.png"
    soft = np.array(train["soft_label"][:])
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert train["label"][:] == [TOP_EMOTION[i] for i in KEPT_TRAIN[mode]]
    tie_or_spread = [i for i, row in enumerate(KEPT_TRAIN[mode]) if row in (1, 3)]
    for i in tie_or_spread:  # the two-emotion rows: 50/50 in every soft mode
        np.testing.assert_allclose(soft[i][:2], [0.5, 0.5])
    assert [list(v) for v in dsd["validation"]["votes"][:]] == [CLEAR]  # majority, whatever the mode
    assert dsd["test"]["label"][:] == [1] and dsd["test"]["soft_label"][:] == [[0, 1, 0, 0, 0, 0, 0, 0]]
    assert f"train: dropped {5 - len(KEPT_TRAIN[mode])} rows" in caplog.text
    assert f"validation: dropped 3 rows: 2 {DROP_NO_MAJORITY}; 1 {DROP_UNKNOWN_OR_NF}" in caplog.text
    image = train[0]["image"]
    assert image.size == (48, 48) and image.mode == "L"


def test_csv_layout_skips_empty_names_and_takes_pixels_from_fer2013(tmp_path, caplog):
    rows = [
        ("train", "fer0000000.png", CLEAR),
        ("train", "", HAPPY),
        ("validation", "fer0000002.png", HAPPY),
        ("train", "fer0000003.png", TIE),
        ("test", "fer0000004.png", CLEAR),
    ]
    write_ferplus_csvs(str(tmp_path / "fer"), rows)
    with caplog.at_level(logging.INFO):
        dsd = load_ferplus(
            str(tmp_path / "fer"), cache_dir=str(tmp_path / "cache"), label_mode="crossentropy"
        )
    assert dsd["train"]["source"][:] == ["fer0000000.png", "fer0000003.png"]
    assert dsd["validation"]["source"][:] == ["fer0000002.png"] and dsd["test"]["label"][:] == [0]
    assert "1 empty Image name (not a face, per FER+)" in caplog.text
    with open(tmp_path / "fer" / "fer2013.csv", newline="") as handle:
        pixels = list(csv.reader(handle))[4][1]  # data row 3 = fer0000003.png
    np.testing.assert_array_equal(
        np.asarray(dsd["train"][1]["image"]), np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
    )


# ---------------------------------------------------------------- bad input
def _label_csv(root):
    return root / "FER2013Train" / "label.csv"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('fer0000001.png,"(0, 0, 48, 48)",4,0', r"line 2: expected name, face box and 10 vote counts"),
        ('fer0000001.png,"(0, 0, 48, 48)",4,0,0,0,0,0,0,0,0,11', r"line 2: vote counts must be in 0-10"),
        ('fer0000001.png,"(0, 0, 48, 48)",4,0,0,0,0,0,0,0,0,x', r"line 2: vote counts must be integers"),
    ],
)
def test_bad_label_csv_names_file_and_line(tmp_path, bad_line, message):
    write_ferplus_folders(str(tmp_path), {"train": [CLEAR, CLEAR, CLEAR]})
    lines = _label_csv(tmp_path).read_text().splitlines()
    lines[1] = bad_line
    _label_csv(tmp_path).write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert "FER2013Train/label.csv" in str(info.value)


def test_missing_and_truncated_images_are_named(tmp_path):
    write_ferplus_folders(str(tmp_path), {"train": [CLEAR, CLEAR, CLEAR]})
    png = tmp_path / "FER2013Train" / "fer0000001.png"
    data = png.read_bytes()
    png.unlink()
    with pytest.raises(FileNotFoundError, match=r"label.csv line 2: image fer0000001.png not found"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    png.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match=r"unreadable or truncated image .*fer0000001.png"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_no_surviving_train_image_is_an_error(tmp_path):
    write_ferplus_folders(str(tmp_path), {"train": [TIE, UNKNOWN]})
    with pytest.raises(DatasetFormatError, match="no train image survives the majority rules"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_bad_csv_pairs_are_named(tmp_path):
    write_ferplus_csvs(
        str(tmp_path), [("train", "fer0000000.png", CLEAR), ("validation", "fer0000001.png", CLEAR)]
    )
    new_csv = tmp_path / "fer2013new.csv"
    lines = new_csv.read_text().splitlines()
    new_csv.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")  # rows out of order
    with pytest.raises(DatasetFormatError, match=r"fer2013new.csv line 2: Usage PublicTest does not match"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    new_csv.write_text("\n".join(lines[:2]) + "\n")  # one row missing
    with pytest.raises(DatasetFormatError, match=r"fer2013new.csv: 1 data rows, but fer2013.csv has 2"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    new_csv.write_text("\n".join(["Usage,Image,neutral"] + lines[1:]) + "\n")
    with pytest.raises(
        DatasetFormatError, match=r"fer2013new.csv line 1: expected the header Usage,Image name"
    ):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"FER\+ pixels \(beside fer2013new.csv\): file not found"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_bad_label_mode_and_missing_layout(tmp_path):
    with pytest.raises(ValueError, match="label_mode must be one of"):
        load_ferplus(str(tmp_path), label_mode="soft")
    with pytest.raises(FileNotFoundError, match=r"found neither FER2013Train/"):
        load_ferplus(str(tmp_path), cache_dir=str(tmp_path / "cache"))
