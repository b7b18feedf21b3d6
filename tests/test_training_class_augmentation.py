"""RandAugment and class-specific augmentation probabilities as training-transform options."""

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import ViTImageProcessor

from grefel_hf.data.augmentation import (
    GReFELTrainAugmentation,
    build_train_transform,
    class_apply_probabilities,
)
from grefel_hf.training.arguments import GReFELTrainingArguments
from grefel_hf.training.data import TrainingData, attach_transforms

OFF = dict(rotation=0.0, color_jitter=0.0, translate=0.0, scale=None, perspective=0.0, blur_sigma=None,
           erasing_prob=0.0, hflip_prob=0.0)


@pytest.fixture(scope="module")
def processor():
    return ViTImageProcessor(do_convert_rgb=True, size={"height": 48, "width": 48})


def _faces(count, seed=0):
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)) for _ in range(count)]


def test_randaugment_changes_images_reproducibly_and_zero_operations_leave_them(processor):
    faces = _faces(6)
    plain = processor(faces, return_tensors="pt")["pixel_values"]
    randaugment = GReFELTrainAugmentation(processor, **OFF, randaugment_ops=2, randaugment_magnitude=9)
    torch.manual_seed(0)
    first = randaugment(faces)
    torch.manual_seed(0)
    assert torch.equal(first, randaugment(faces))
    assert sum(not torch.equal(a, b) for a, b in zip(first, plain, strict=True)) >= 4
    assert torch.equal(GReFELTrainAugmentation(processor, **OFF, randaugment_ops=0)(faces), plain)


def test_each_class_is_augmented_with_its_own_probability(processor):
    faces = _faces(200)
    labels = [i % 3 for i in range(200)]
    plain = processor(faces, return_tensors="pt")["pixel_values"]
    flipped = processor([f.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT) for f in faces],
                        return_tensors="pt")["pixel_values"]
    # augmenting = a sure horizontal flip, so whether an image was augmented can be read off it
    augmentation = GReFELTrainAugmentation(processor, **{**OFF, "hflip_prob": 1.0},
                                           class_apply_probs=[0.0, 1.0, 0.5])
    torch.manual_seed(0)
    output = augmentation(faces, labels=labels)
    augmented = [torch.equal(out, flip) for out, flip in zip(output, flipped, strict=True)]
    untouched = [torch.equal(out, base) for out, base in zip(output, plain, strict=True)]
    assert all(a != u for a, u in zip(augmented, untouched, strict=True))
    rate = {c: np.mean([a for a, label in zip(augmented, labels, strict=True) if label == c]) for c in range(3)}
    assert rate[0] == 0.0 and rate[1] == 1.0 and 0.3 < rate[2] < 0.7
    with pytest.raises(ValueError, match="class-specific augmentation probabilities need the class id of each"):
        augmentation(faces)


def test_a_probability_of_one_draws_no_random_number(processor):
    faces = _faces(4)
    torch.manual_seed(3)
    GReFELTrainAugmentation(processor, **OFF, apply_prob=1.0)(faces)
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(1), after)  # the augmentation's random stream is that of the code without it
    never = GReFELTrainAugmentation(processor, **{**OFF, "hflip_prob": 1.0}, apply_prob=0.0)(faces)
    assert torch.equal(never, processor(faces, return_tensors="pt")["pixel_values"])


def test_class_names_of_the_training_arguments_become_per_class_probabilities(processor):
    args = GReFELTrainingArguments(output_dir="x", aug_prob=0.8, aug_class_probs='{"fear": 0.95, "sad": 0.9}',
                                   aug_randaugment_ops=2)
    kwargs = args.augmentation_kwargs()
    assert kwargs["class_probs"] == {"fear": 0.95, "sad": 0.9} and kwargs["randaugment_ops"] == 2
    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert class_apply_probabilities(kwargs["class_probs"], names, 0.8) == [0.8, 0.8, 0.95, 0.8, 0.9, 0.8, 0.8]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    split = datasets.Dataset.from_dict({"image": _faces(4), "label": [2, 4, 0, 1]}, features=features)
    data = attach_transforms(TrainingData(train=split, eval=split, label_names=names, use_soft_labels=False,
                                          sample_hard_labels=False), processor, kwargs)
    assert data.train[0:4]["pixel_values"][0].shape == (3, 48, 48)
    with pytest.raises(ValueError, match=r"--aug_class_probs names \['feer'\], which are not classes of the training "
                                         r"set \['angry'"):
        class_apply_probabilities({"feer": 0.9}, names, 0.8)
    with pytest.raises(ValueError, match="--aug_class_probs: the probability of 'fear' must be in"):
        GReFELTrainingArguments(output_dir="x", aug_class_probs={"fear": 1.5})
    with pytest.raises(ValueError, match="--aug_class_probs must be a JSON mapping on the command line"):
        GReFELTrainingArguments(output_dir="x", aug_class_probs="{fear: 0.9}")
    transform = build_train_transform(processor, **{**OFF, "hflip_prob": 1.0}, class_apply_probs=[1.0] * 7)
    flipped = transform({"image": _faces(2), "label": [0, 1]})["pixel_values"]
    expected = processor([f.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT) for f in _faces(2)],
                         return_tensors="pt")["pixel_values"]
    assert all(torch.equal(a, b) for a, b in zip(flipped, expected, strict=True))  # the batch transform passes labels
