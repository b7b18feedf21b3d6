"""FER2013 targets mixed with the FER+ votes of the same faces (benchmarks/ferplus_vote_targets.py): the mapping of
the votes onto FER2013's classes, the rows without votes, the saved column, the refusals."""

import json
import os
import sys

import datasets
import numpy as np
import pytest
from conftest import REPO_ROOT

from dataset_scripts.fixtures import write_ferplus_folders
from dataset_scripts.synthetic import load_synthetic

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from ferplus_vote_targets import main, vote_matrix  # noqa: E402

FER2013_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
# FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, not a face.
VOTES = [
    [0, 0, 0, 0, 10, 0, 0, 0, 0, 0],  # fer0000000: all anger
    [5, 0, 3, 0, 0, 0, 2, 0, 0, 0],  # fer0000001: neutral 5, surprise 3, fear 2
    [0, 0, 0, 0, 0, 0, 0, 6, 3, 1],  # fer0000002: contempt, unknown, not a face only: nothing mapped
    [0, 4, 0, 0, 0, 0, 0, 4, 0, 2],  # fer0000003: happiness 4 (contempt and not-a-face set aside)
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("votes")
    write_ferplus_folders(str(root / "ferplus"), {"train": VOTES})
    data = load_synthetic(train_size=5, validation_size=4, test_size=2)
    # Rows 0-3 came from fer0000000-3 in another order; row 4's image is not in label.csv.
    sources = ["fer0000001.png (label of a)", "fer0000000.png (label of b)", "fer0000002.png (label of c)",
               "fer0000003.png (label of d)", "fer0009999.png (label of e)"]
    train = data["train"].remove_columns("source").add_column("source", sources)
    train = train.cast_column("label", data["train"].features["label"])
    datasets.DatasetDict({"train": train, "validation": data["validation"]}).save_to_disk(str(root / "fer2013"))
    return root


def test_votes_are_mapped_onto_fer2013_classes_by_emotion():
    counts = vote_matrix(["fer1.png (label of x)", "fer2.png", "fer3.png (label of z)"],
                         {"fer1.png": VOTES[1], "fer2.png": VOTES[0]}, FER2013_NAMES)
    np.testing.assert_array_equal(counts, [[0, 0, 2, 0, 0, 3, 5], [10, 0, 0, 0, 0, 0, 0], [0] * 7])
    with pytest.raises(ValueError, match="train row 0: source 'synthetic/000' does not start with a FER\\+ PNG"):
        vote_matrix(["synthetic/000"], {}, FER2013_NAMES)
    with pytest.raises(ValueError, match="the dataset's classes \\['pride'\\] have no FER\\+ emotion"):
        vote_matrix([], {}, ["angry", "pride"])


def test_the_saved_targets_mix_the_label_and_the_votes(tmp_path, folders):
    report_path = tmp_path / "votes.json"
    report = main(["--dataset_dir", str(folders / "fer2013"), "--ferplus_train_dir",
                   str(folders / "ferplus" / "FER2013Train"), "--output_dir", str(tmp_path / "out"),
                   "--output", str(report_path), "--hard_weight", "0.75"])
    saved = datasets.load_from_disk(str(tmp_path / "out"))
    labels = list(saved["train"]["label"])
    targets = np.asarray(list(saved["train"]["soft_label"]))
    votes = np.array([[0, 0, 0.2, 0, 0, 0.3, 0.5], [1, 0, 0, 0, 0, 0, 0], [0] * 7, [0, 0, 0, 1, 0, 0, 0], [0] * 7])
    expected = 0.25 * votes
    for row, label in enumerate(labels):
        expected[row, label] += 0.75 if row in (0, 1, 3) else 1.0  # rows 2 and 4 have no mapped vote
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    assert len(saved["validation"]) == 4
    assert report["rows_with_votes"] == 3 and report["rows_one_hot_only"] == 2
    written = json.loads(report_path.read_text())
    assert written["hard_weight"] == 0.75 and list(written["agreement_by_label"]) == FER2013_NAMES


def test_a_dataset_without_sources_or_an_existing_output_is_refused(tmp_path, folders, capsys):
    plain = tmp_path / "plain"
    data = load_synthetic(train_size=4, validation_size=2, test_size=2)
    datasets.DatasetDict({"train": data["train"].remove_columns("source"),
                          "validation": data["validation"]}).save_to_disk(str(plain))
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_dir", str(plain), "--ferplus_train_dir", str(folders / "ferplus" / "FER2013Train"),
              "--output_dir", str(tmp_path / "out"), "--output", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    assert "its train split has no source column" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_dir", str(plain), "--ferplus_train_dir", "unused", "--output_dir", str(tmp_path),
              "--output", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2


def test_a_missing_ferplus_folder_is_refused_in_one_line(tmp_path, folders, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_dir", str(folders / "fer2013"), "--ferplus_train_dir", str(tmp_path / "nowhere"),
              "--output_dir", str(tmp_path / "out"), "--output", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("ferplus_vote_targets: ") and "label.csv" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
