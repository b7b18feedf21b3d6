"""Tests for grefel_hf.data.augmentation: face-preserving train augmentation and batch transforms."""

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import ViTImageProcessor

from grefel_hf.data.augmentation import (
    GReFELEvalPreprocessing,
    GReFELTrainAugmentation,
    build_eval_transform,
    build_train_transform,
)
from grefel_hf.data.collators import GReFELEvalCollator, GReFELMixCollator

ALL_OFF = {
    "rotation": 0.0,
    "color_jitter": 0.0,
    "translate": 0.0,
    "scale": None,
    "perspective": 0.0,
    "blur_sigma": None,
    "erasing_prob": 0.0,
    "hflip_prob": 0.0,
}
# Each augmentation alone, forced on (probability 1) so that it must change the output.
SINGLE_AUGMENTATIONS = {
    "hflip": {"hflip_prob": 1.0},
    "rotation": {"rotation": 8.0},
    "translate": {"translate": 0.08},
    "scale": {"scale": (0.92, 1.08)},
    "perspective": {"perspective": 0.15, "perspective_prob": 1.0},
    "color_jitter": {"color_jitter": 0.25},
    "blur": {"blur_sigma": (0.1, 0.8), "blur_prob": 1.0},
    "erasing": {"erasing_prob": 1.0},
}


@pytest.fixture(scope="module")
def processor() -> ViTImageProcessor:
    return ViTImageProcessor(do_convert_rgb=True, size={"height": 64, "width": 64})


def gray_faces(count: int, seed: int = 0) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)) for _ in range(count)]


def test_shapes_dtypes_and_grayscale_to_rgb(processor):
    augmentation = GReFELTrainAugmentation(processor)
    pixel_values = augmentation(gray_faces(4))
    assert pixel_values.shape == (4, 3, 64, 64)
    assert pixel_values.dtype == torch.float32
    assert torch.isfinite(pixel_values).all()
    rgb = PIL.Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8), mode="RGB"
    )
    assert augmentation(rgb).shape == (1, 3, 64, 64)
    assert augmentation(np.asarray(gray_faces(1)[0])).shape == (1, 3, 64, 64)


def test_deterministic_under_a_fixed_torch_seed(processor):
    augmentation = GReFELTrainAugmentation(processor, erasing_prob=0.5)
    images = gray_faces(6)
    torch.manual_seed(123)
    first = augmentation(images)
    torch.manual_seed(123)
    second = augmentation(images)
    torch.manual_seed(124)
    other = augmentation(images)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_all_augmentations_off_equals_the_plain_processor(processor):
    images = gray_faces(5)
    expected = processor(images, return_tensors="pt")["pixel_values"]
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(GReFELTrainAugmentation(processor, **ALL_OFF)(images), expected)


@pytest.mark.parametrize("name", sorted(SINGLE_AUGMENTATIONS))
def test_each_augmentation_changes_the_image_and_can_be_switched_off(processor, name):
    images = gray_faces(4, seed=5)
    plain = processor(images, return_tensors="pt")["pixel_values"]
    torch.manual_seed(0)
    augmented = GReFELTrainAugmentation(processor, **{**ALL_OFF, **SINGLE_AUGMENTATIONS[name]})(images)
    assert augmented.shape == plain.shape
    assert not torch.allclose(augmented, plain, atol=1e-4)


def test_eval_preprocessing_never_augments(processor):
    images = gray_faces(3)
    expected = processor(images, return_tensors="pt")["pixel_values"]
    preprocessing = GReFELEvalPreprocessing(processor)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(preprocessing(images), expected)


def fer_like_dataset(count: int = 6) -> datasets.Dataset:
    names = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    soft = np.full((count, len(names)), 0.05, dtype=np.float32)
    soft[np.arange(count), np.arange(count) % len(names)] = 0.65
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "soft_label": datasets.List(datasets.Value("float32")),
        }
    )
    data = {
        "image": gray_faces(count),
        "label": [i % len(names) for i in range(count)],
        "soft_label": soft.tolist(),
    }
    return datasets.Dataset.from_dict(data, features=features)


def test_batch_transforms_with_datasets_and_collators(processor):
    dataset = fer_like_dataset()
    train = dataset.with_transform(build_train_transform(processor))
    row = train[0]
    assert set(row) == {"pixel_values", "labels"}
    assert row["pixel_values"].shape == (3, 64, 64)
    assert row["labels"] == 0
    batch = GReFELMixCollator(num_labels=8)([train[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 64, 64)
    torch.testing.assert_close(batch["labels"].sum(dim=1), torch.ones(4))

    soft = dataset.with_transform(build_train_transform(processor, use_soft_labels=True))
    assert soft[1]["labels"] == pytest.approx(dataset[1]["soft_label"])

    evaluation = dataset.with_transform(build_eval_transform(processor))
    expected = processor(dataset[:4]["image"], return_tensors="pt")["pixel_values"]
    eval_batch = GReFELEvalCollator(num_labels=8)([evaluation[i] for i in range(4)])
    assert torch.equal(eval_batch["pixel_values"], expected)
    assert eval_batch["labels"].tolist() == [0, 1, 2, 3]


def test_unlabelled_eval_transform(processor):
    transform = build_eval_transform(processor, label_column=None)
    output = transform({"image": gray_faces(2)})
    assert set(output) == {"pixel_values"}
    assert len(output["pixel_values"]) == 2


def test_missing_columns_and_bad_images_raise(processor):
    transform = build_train_transform(processor)
    with pytest.raises(ValueError, match="no column 'image'.*remove_unused_columns=False"):
        transform({"label": [0]})
    with pytest.raises(ValueError, match="no column 'soft_label'"):
        build_train_transform(processor, use_soft_labels=True)({"image": gray_faces(1), "label": [0]})
    with pytest.raises(ValueError, match="image 1: expected a PIL image"):
        GReFELTrainAugmentation(processor)([gray_faces(1)[0], "face.png"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hflip_prob": 1.5},
        {"erasing_prob": -0.1},
        {"rotation": -1.0},
        {"perspective": 2.0},
        {"blur_kernel_size": 4},
    ],
)
def test_bad_arguments_raise(processor, kwargs):
    with pytest.raises(ValueError):
        GReFELTrainAugmentation(processor, **kwargs)


def test_training_arguments_switch_the_blur_off_and_refuse_inverted_ranges(tmp_path):
    from grefel_hf.training.arguments import GReFELTrainingArguments

    no_blur = GReFELTrainingArguments(output_dir=str(tmp_path), use_cpu=True, aug_blur_sigma_max=0.0)
    assert no_blur.augmentation_kwargs()["blur_sigma"] is None
    assert GReFELTrainingArguments(output_dir=str(tmp_path), use_cpu=True).augmentation_kwargs()["blur_sigma"] == (
        0.1, 0.8)
    with pytest.raises(ValueError, match="--aug_blur_sigma_min and --aug_blur_sigma_max.*got 0.9 and 0.5"):
        GReFELTrainingArguments(output_dir=str(tmp_path), use_cpu=True, aug_blur_sigma_min=0.9, aug_blur_sigma_max=0.5)
    with pytest.raises(ValueError, match="--aug_scale_min and --aug_scale_max.*got 1.2 and 1.1"):
        GReFELTrainingArguments(output_dir=str(tmp_path), use_cpu=True, aug_scale_min=1.2, aug_scale_max=1.1)
