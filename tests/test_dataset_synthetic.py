"""The generated expression dataset: schema, determinism, split handling, and that a small CNN learns it."""

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from dataset_scripts import FER2013_LABELS, load_synthetic
from dataset_scripts.synthetic_faces import draw_face


def image_bytes(dataset) -> list[bytes]:
    return [
        row["bytes"]
        for row in dataset.cast_column("image", dataset.features["image"].__class__(decode=False))["image"][:]
    ]


def test_schema_sizes_and_balance(tmp_path):
    dsd = load_synthetic(cache_dir=str(tmp_path), train_size=70, validation_size=21, test_size=14)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 70, "validation": 21, "test": 14}
    assert dsd["train"].features["label"].names == list(FER2013_LABELS)
    assert Counter(dsd["train"]["label"][:]) == Counter({label: 10 for label in range(7)})
    image = dsd["validation"][0]["image"]
    assert image.size == (48, 48) and image.mode == "L"
    assert dsd["test"][3]["source"] == "synthetic-seed0/test/000003"
    all_images = image_bytes(dsd["train"]) + image_bytes(dsd["validation"]) + image_bytes(dsd["test"])
    assert len(set(all_images)) == len(all_images)  # no image repeats within or across splits


def test_deterministic_in_seed(tmp_path):
    first = load_synthetic(cache_dir=str(tmp_path / "a"), train_size=14, validation_size=7, test_size=0)
    again = load_synthetic(cache_dir=str(tmp_path / "b"), train_size=14, validation_size=7, test_size=0)
    other = load_synthetic(
        cache_dir=str(tmp_path / "c"), train_size=14, validation_size=7, test_size=0, seed=1
    )
    assert image_bytes(first["train"]) == image_bytes(again["train"])
    assert first["train"]["label"][:] == again["train"]["label"][:]
    assert not set(image_bytes(first["train"])) & set(image_bytes(other["train"]))


def test_empty_splits_and_bad_arguments(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dsd = load_synthetic(
            cache_dir=str(tmp_path), train_size=7, validation_size=0, test_size=0, image_size=64
        )
    assert set(dsd) == {"train"} and dsd["train"][0]["image"].size == (64, 64)
    assert "validation_size is 0; the validation split is omitted" in caplog.text
    with pytest.raises(ValueError, match="split sizes must be train > 0"):
        load_synthetic(cache_dir=str(tmp_path), train_size=0)
    with pytest.raises(ValueError, match="reads no data_dir"):
        load_synthetic(cache_dir=str(tmp_path), data_dir="somewhere")
    with pytest.raises(ValueError, match="label must be in 0-6"):
        draw_face(np.random.default_rng(0), 7)


def _as_tensors(dataset):
    images = np.stack([np.asarray(im, dtype=np.float32) for im in dataset["image"][:]]) / 255.0
    return torch.from_numpy(images)[:, None], torch.tensor(dataset["label"][:])


def test_a_small_cnn_learns_it_above_chance(tmp_path):
    """Three epochs on 1400 images (5-12 s on 2 cores) go well above 14 % chance (measured: 36.6 %)."""
    dsd = load_synthetic(cache_dir=str(tmp_path), train_size=1400, validation_size=350, test_size=0)
    x_train, y_train = _as_tensors(dsd["train"])
    x_val, y_val = _as_tensors(dsd["validation"])
    torch.manual_seed(0)

    def block(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
        )

    model = nn.Sequential(
        block(1, 8),
        block(8, 16),
        block(16, 32),
        block(32, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 7),
    )
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        model.train()
        for batch in torch.randperm(len(x_train)).split(32):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    assert 0.25 < accuracy < 0.95, accuracy
