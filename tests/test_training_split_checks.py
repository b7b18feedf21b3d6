"""The sharpness check that compares the training and evaluation splits."""

import logging

import datasets
import numpy as np
import pytest
from PIL import Image, ImageFilter

from grefel_hf.training.arguments import DataArguments
from grefel_hf.training.data import prepare_training_data
from grefel_hf.training.split_checks import check_split_sharpness, image_sharpness, split_sharpness

LABELS = datasets.ClassLabel(names=["a", "b"])


def _faces(count: int, seed: int, blur: float = 0.0) -> list[Image.Image]:
    """Random 48x48 grayscale textures, optionally Gaussian-blurred by `blur` pixels."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)) for _ in range(count)]
    return [image.filter(ImageFilter.GaussianBlur(blur)) for image in images] if blur else images


def _split(images: list[Image.Image]) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": LABELS})
    return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(len(images))]},
                                      features=features)


def test_image_sharpness_is_zero_for_a_flat_image_and_drops_with_blur():
    flat = Image.new("L", (48, 48), 90)
    checkerboard = Image.fromarray((np.indices((48, 48)).sum(0) % 2 * 255).astype(np.uint8))
    assert image_sharpness(flat) == 0.0
    # every interior pixel of a 0/255 checkerboard has Laplacian ±1020
    assert image_sharpness(checkerboard) == pytest.approx(1020.0)
    assert image_sharpness(checkerboard.filter(ImageFilter.GaussianBlur(2))) < 20.0
    # RGB input and other sizes are converted to 48x48 grayscale first
    assert image_sharpness(flat.convert("RGB").resize((100, 100))) == 0.0


def test_split_sharpness_is_a_seeded_median():
    split = _split(_faces(40, seed=0))
    assert split_sharpness(split, sample_size=10, seed=3) == split_sharpness(split, sample_size=10, seed=3)
    every = sorted(image_sharpness(image) for image in split["image"])
    assert split_sharpness(split, sample_size=1000) == pytest.approx(float(np.median(every)))


def test_split_sharpness_rejects_an_empty_split_and_a_missing_column():
    with pytest.raises(ValueError, match="empty split"):
        split_sharpness(_split([]))
    with pytest.raises(ValueError, match="no 'pixels' column"):
        split_sharpness(_split(_faces(2, seed=0)), image_column="pixels")


def test_a_blurred_training_split_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="grefel_hf.training.split_checks"):
        result = check_split_sharpness(_split(_faces(30, seed=0, blur=3.0)), _split(_faces(30, seed=1)))
    assert result.mismatched and result.train < result.eval and result.ratio > 10
    assert "the training images are" in caplog.text and "blurrier" in caplog.text


def test_splits_of_one_kind_pass_quietly(caplog):
    with caplog.at_level(logging.WARNING, logger="grefel_hf.training.split_checks"):
        result = check_split_sharpness(_split(_faces(30, seed=0)), _split(_faces(30, seed=1)))
    assert not result.mismatched and result.ratio < 1.2
    assert caplog.text == ""


def test_prepare_training_data_measures_both_splits(caplog):
    splits = {"train": _split(_faces(20, seed=0)), "validation": _split(_faces(20, seed=1, blur=3.0))}
    with caplog.at_level(logging.WARNING, logger="grefel_hf.training.split_checks"):
        data = prepare_training_data(splits, DataArguments(dataset="synthetic"))
    assert data.sharpness is not None and data.sharpness.mismatched and data.sharpness.eval < data.sharpness.train
    assert "the evaluation images are" in caplog.text
