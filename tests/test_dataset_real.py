"""Builders on the real FER2013 (Kaggle folders) and FER+ (generated layout) data in ../shared/data.

Skipped with a message where that folder is absent. Each archive is unpacked and each dataset prepared once
per session (about 5 s each on 2 cores); the expected counts are the published ones (see the data README).
"""

import os
import subprocess
import sys
import tarfile
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import FER2013_LABELS, FERPLUS_LABELS, load_fer2013, load_ferplus
from grefel_hf.training.split_checks import check_split_sharpness

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FER2013_COUNTS = {
    "train": dict(zip(FER2013_LABELS, [3995, 436, 4097, 7215, 4830, 3171, 4965], strict=True)),
    "validation": dict(zip(FER2013_LABELS, [467, 56, 496, 895, 653, 415, 607], strict=True)),
}
FERPLUS_MAJORITY_COUNTS = {
    "train": dict(zip(FERPLUS_LABELS, [8733, 7284, 3136, 3022, 2098, 116, 536, 120], strict=True)),
    "validation": dict(zip(FERPLUS_LABELS, [1180, 862, 411, 348, 289, 25, 60, 16], strict=True)),
}


def named_counts(dataset) -> dict[str, int]:
    names = dataset.features["label"].names
    return {names[label]: n for label, n in Counter(dataset["label"][:]).items()}


def assert_all_48x48(dataset):
    sizes = Counter(image.size for image in dataset["image"])
    assert sizes == Counter({(48, 48): len(dataset)})


@pytest.fixture(scope="session")
def real_root(shared_data_dir, tmp_path_factory):
    return tmp_path_factory.mktemp("real_fer")


@pytest.fixture(scope="session")
def fer2013_dir(shared_data_dir, real_root):
    target = real_root / "fer2013"
    with tarfile.open(os.path.join(shared_data_dir, "fer2013_kaggle_trainval.tar.gz")) as archive:
        archive.extractall(target, filter="data")
    return str(target)


@pytest.fixture(scope="session")
def fer2013_real(fer2013_dir, real_root):
    return load_fer2013(fer2013_dir, cache_dir=str(real_root / "cache"))


@pytest.fixture(scope="session")
def ferplus_dir(shared_data_dir, real_root):
    """The unpacked FER+ archive's `data/` folder (FER2013Train/, FER2013Valid/)."""
    target = real_root / "ferplus"
    with tarfile.open(os.path.join(shared_data_dir, "ferplus_trainval.tar.gz")) as archive:
        archive.extractall(target, filter="data")
    return target / "data"


@pytest.fixture(scope="session")
def ferplus_real(ferplus_dir, real_root):
    return load_ferplus(str(ferplus_dir.parent), cache_dir=str(real_root / "cache"), label_mode="majority")


def test_fer2013_kaggle_folders(fer2013_real):
    assert set(fer2013_real) == {"train", "validation"}  # the shared copy has no PrivateTest images
    for split, counts in FER2013_COUNTS.items():
        assert named_counts(fer2013_real[split]) == counts
        assert len(fer2013_real[split]) == sum(counts.values())
    assert_all_48x48(fer2013_real["validation"])
    assert_all_48x48(fer2013_real["train"])


def test_ferplus_generated_layout_majority(ferplus_real):
    assert set(ferplus_real) == {"train", "validation"}  # the shared copy has no FER2013Test
    for split, counts in FERPLUS_MAJORITY_COUNTS.items():
        assert named_counts(ferplus_real[split]) == counts
        assert len(ferplus_real[split]) == sum(counts.values())
    assert_all_48x48(ferplus_real["validation"])
    assert_all_48x48(ferplus_real["train"])
    # label.csv starts with fer0000000.png 4,0,0,1,3,2,0,0,0,0 (no majority: dropped) and
    # fer0000001.png 6,0,1,1,0,0,0,0,2,0 (neutral).
    first = ferplus_real["train"][0]
    assert first["source"] == "FER2013Train/fer0000001.png" and first["label"] == 0
    assert first["votes"] == [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]


def test_fer2013_command_line_on_real_data(fer2013_dir, fer2013_real, real_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # The same cache folder as the fixture: the CLI finds the prepared dataset and only writes the copy.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataset_scripts.fer2013",
            "--data_dir",
            fer2013_dir,
            "--output_dir",
            "out",
            "--cache_dir",
            str(real_root / "cache"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    dsd = datasets.load_from_disk(str(tmp_path / "out"))
    for split, counts in FER2013_COUNTS.items():
        assert named_counts(dsd[split]) == counts


def test_the_shared_fer2013_training_jpegs_are_blurred_and_publictest_is_not(fer2013_real):
    """The archive's training faces are ~19x blurrier than its PublicTest faces; the sharpness check says so."""
    result = check_split_sharpness(fer2013_real["train"], fer2013_real["validation"])
    assert result.mismatched and result.train < 5.0 and result.eval > 30.0


def test_ferplus_training_and_validation_faces_are_equally_sharp(ferplus_real):
    result = check_split_sharpness(ferplus_real["train"], ferplus_real["validation"])
    assert not result.mismatched and result.train > 30.0 and result.eval > 30.0


def test_blurred_fer2013_training_jpegs_are_the_ferplus_faces(fer2013_real, ferplus_dir):
    """Blurring the lossless FER+ PNGs by σ = 3 px reproduces the archive's training JPEGs (benchmark helper)."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
    from fer2013_lossless_train import MAX_MATCH_RMSE, match_lossless

    sample = fer2013_real["train"].select(range(0, len(fer2013_real["train"]), 97))  # 296 faces, every class
    jpegs = np.stack([np.asarray(image.convert("L")) for image in sample["image"]])
    pngs = np.stack([np.asarray(Image.open(path)) for path in sorted(ferplus_dir.glob("FER2013Train/*.png"))])
    _, rmse = match_lossless(jpegs, pngs)
    assert np.median(rmse) < 5.0
    assert (rmse <= MAX_MATCH_RMSE).mean() > 0.95
