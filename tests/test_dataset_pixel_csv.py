"""Seed 002's pixel CSVs (dataset_scripts/pixel_csv.py): splits, FER+ labels, exact pixels, and errors that name
the file and line."""

import csv

import numpy as np
import pytest

from dataset_scripts import load_expression_dataset
from dataset_scripts.common import FERPLUS_LABELS, DatasetFormatError
from dataset_scripts.pixel_csv import load_pixel_csv, main

RNG = np.random.default_rng(0)


def _faces(count):
    return [RNG.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(count)]


def _write(path, rows, header=("emotion", "pixels", "Usage")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _rows(faces, labels):
    return [[label, " ".join(map(str, face.ravel())), "x"] for face, label in zip(faces, labels, strict=True)]


def _folder(tmp_path, test=True):
    folder = tmp_path / "csv"
    folder.mkdir()
    data = {"train": (_faces(10), [i % 8 for i in range(10)]), "validation": (_faces(4), [7, 6, 5, 0])}
    _write(folder / "train.csv", _rows(*data["train"]))
    _write(folder / "val.csv", _rows(*data["validation"]))
    if test:
        data["test"] = (_faces(3), [1, 2, 3])  # the columns in the other order, and no other column
        _write(folder / "test.csv", [[row[1], row[0]] for row in _rows(*data["test"])], header=("pixels", "emotion"))
    return folder, data


def test_every_row_becomes_an_example_with_its_pixels_and_fer_plus_label(tmp_path):
    folder, data = _folder(tmp_path)
    dataset = load_expression_dataset("pixel_csv", data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    assert sorted(dataset) == ["test", "train", "validation"]
    for split, (faces, labels) in data.items():
        assert dataset[split].features["label"].names == list(FERPLUS_LABELS)
        assert dataset[split]["label"][:] == labels
        for index, face in enumerate(faces):
            assert np.array_equal(np.asarray(dataset[split][index]["image"]), face)
    assert dataset["validation"]["source"][:2] == ["val.csv:0", "val.csv:1"]
    (tmp_path / "second").mkdir()
    without_test, _ = _folder(tmp_path / "second", test=False)
    assert sorted(load_pixel_csv(str(without_test), cache_dir=str(tmp_path / "cache"))) == ["train", "validation"]


PIXELS = " ".join(["7"] * 2304)
BAD_ROWS = {
    "label-8": ([["8", PIXELS, "x"]], r"train\.csv line 2: emotion must be a class id 0-7 in FER\+ order"),
    "label-text": ([["0", PIXELS, "x"], ["sad", PIXELS, "x"]], r"train\.csv line 3: emotion must be a class id"),
    "short-pixels": ([["1", "1 2 3", "x"]], r"train\.csv line 2: pixels must be 2304 numbers \(48x48\), got 3"),
    "pixel-300": ([["1", " ".join(["300"] * 2304), "x"]], r"line 2: pixel values must be in 0-255, got up to 300"),
    "negative-pixel": ([["1", " ".join(["-1"] * 2304), "x"]], r"line 2: pixels must be integers 0-255"),
    "missing-field": ([["1", PIXELS]], r"train\.csv line 2: expected 3 fields as in the header, got 2"),
    "no-rows": ([], r"train\.csv: the train split has no rows after the header"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_row_is_an_error_naming_file_and_line(case, tmp_path):
    folder, _ = _folder(tmp_path)
    rows, message = BAD_ROWS[case]
    _write(folder / "train.csv", rows)
    with pytest.raises(DatasetFormatError, match=message):
        load_pixel_csv(str(folder), cache_dir=str(tmp_path / "cache"))


def test_missing_files_and_headers_are_named(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="pixel CSV data_dir: folder not found"):
        load_pixel_csv(str(tmp_path / "nowhere"))
    folder, _ = _folder(tmp_path)
    (folder / "val.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"pixel CSV validation split \(val\.csv .*file not found: .*val\.csv"):
        load_pixel_csv(str(folder))
    _write(folder / "val.csv", [["0", PIXELS]], header=("label", "pixels"))
    with pytest.raises(DatasetFormatError, match=r"val\.csv line 1: expected a header with the columns pixels and "
                                                 r"emotion, got \['label', 'pixels'\]"):
        load_pixel_csv(str(folder), cache_dir=str(tmp_path / "cache"))
    assert main(["--data_dir", str(folder), "--output_dir", str(tmp_path / "out"),
                 "--cache_dir", str(tmp_path / "cache")]) == 2
    assert "val.csv line 1" in caplog.text
