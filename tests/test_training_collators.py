"""Tests for grefel_hf.data.collators: face-aware CutMix / Mixup and the evaluation collator."""

import pytest
import torch

from grefel_hf.data.collators import (
    GReFELEvalCollator,
    GReFELMixCollator,
    box_overlaps,
    collate_eval,
    protected_box_pixels,
    sample_beta,
    sample_peripheral_box,
    smooth_targets,
)

NUM_LABELS = 8
PROTECTED = (0.2, 0.25, 0.8, 0.85)


def constant_examples(batch_size: int, size: tuple[int, int] = (48, 48), soft: bool = False) -> list[dict]:
    """Example ``i`` is an image filled with the value ``i`` and labelled class ``i`` (or a soft variant)."""
    examples = []
    for i in range(batch_size):
        if soft:
            label = torch.full((NUM_LABELS,), 0.2 / (NUM_LABELS - 1))
            label[i % NUM_LABELS] = 0.8
            label = label.tolist()
        else:
            label = i % NUM_LABELS
        examples.append({"pixel_values": torch.full((3, *size), float(i)), "labels": label})
    return examples


def cutmix_only(**kwargs) -> GReFELMixCollator:
    return GReFELMixCollator(NUM_LABELS, mixup_alpha=0.0, cutmix_alpha=1.0, **kwargs)


def test_targets_are_distributions_for_hard_and_soft_labels():
    collator = GReFELMixCollator(NUM_LABELS, label_smoothing=0.1, generator=torch.Generator().manual_seed(0))
    for soft in (False, True):
        for _ in range(20):
            batch = collator(constant_examples(6, soft=soft))
            assert batch["labels"].shape == (6, NUM_LABELS)
            assert batch["labels"].dtype == torch.float32
            assert batch["pixel_values"].shape == (6, 3, 48, 48)
            torch.testing.assert_close(batch["labels"].sum(dim=1), torch.ones(6))
            assert (batch["labels"] > 0).all()  # smoothing gives every class some mass


@pytest.mark.parametrize("size", [(48, 48), (64, 40), (224, 224)])
def test_cutmix_lambda_matches_pasted_pixel_count(size):
    """λ read from the targets equals the fraction of pixels that did not come from the partner."""
    height, width = size
    smoothing = 0.1
    collator = cutmix_only(label_smoothing=smoothing, generator=torch.Generator().manual_seed(1))
    batch_size = 4
    mixed_batches = 0
    for _ in range(30):
        batch = collator(constant_examples(batch_size, size))
        for i in range(batch_size):
            partner = batch_size - 1 - i
            from_partner = (batch["pixel_values"][i] == partner).all(dim=0).sum().item()
            # target[i, i] = λ (1 - s) + s / C, because class i belongs to the sample itself only.
            lam = (batch["labels"][i, i].item() - smoothing / NUM_LABELS) / (1 - smoothing)
            assert lam == pytest.approx(1 - from_partner / (height * width), abs=1e-5)
            mixed_batches += from_partner > 0
    assert mixed_batches > 0


def test_cutmix_never_touches_the_protected_region_in_collated_images():
    collator = cutmix_only(protected_region=PROTECTED, generator=torch.Generator().manual_seed(2))
    examples = constant_examples(4)
    py0, py1, px0, px1 = protected_box_pixels(48, 48, PROTECTED)
    for _ in range(200):
        batch = collator(examples)
        for i in range(4):
            assert (batch["pixel_values"][i, :, py0:py1, px0:px1] == i).all()


@pytest.mark.parametrize("size", [(48, 48), (224, 224), (40, 64), (17, 23)])
def test_sampled_boxes_never_intersect_the_protected_region(size):
    height, width = size
    generator = torch.Generator().manual_seed(3)
    protected = protected_box_pixels(height, width, PROTECTED)
    image_area = height * width
    for lam in torch.linspace(0.0, 1.0, 101).tolist() * 5:
        box = sample_peripheral_box(height, width, lam, PROTECTED, generator)
        y0, y1, x0, x1 = box
        assert 0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width
        assert not box_overlaps(box, protected)
        # The box is never larger than requested (it may be shrunk to fit a peripheral strip).
        assert (y1 - y0) * (x1 - x0) <= round(height * (1 - lam) ** 0.5) * round(width * (1 - lam) ** 0.5)
        assert (y1 - y0) * (x1 - x0) < image_area


def test_box_is_shrunk_when_it_cannot_fit_the_periphery():
    # λ = 0 asks for the whole image; the largest strip of a 48x48 image with PROTECTED is 12 rows x 48 cols.
    y0, y1, x0, x1 = sample_peripheral_box(48, 48, 0.0, PROTECTED, torch.Generator().manual_seed(0))
    assert (y1 - y0, x1 - x0) in {(12, 48), (7, 48), (48, 9)}


def test_no_periphery_means_no_cut():
    assert sample_peripheral_box(10, 10, 0.3, (0.0, 0.0, 1.0, 0.999)) == (0, 0, 0, 0)


def test_mixup_mixes_pixels_and_targets_with_the_same_lambda():
    smoothing = 0.1
    collator = GReFELMixCollator(
        NUM_LABELS,
        mixup_alpha=0.8,
        cutmix_alpha=0.0,
        label_smoothing=smoothing,
        generator=torch.Generator().manual_seed(4),
    )
    examples = constant_examples(4, soft=True)
    sources = smooth_targets(torch.tensor([e["labels"] for e in examples]), smoothing)
    for _ in range(10):
        batch = collator(examples)
        for i in range(4):
            partner = 3 - i
            # pixel value = λ i + (1 - λ) partner  =>  λ = (value - partner) / (i - partner)
            lam = (batch["pixel_values"][i, 0, 0, 0].item() - partner) / (i - partner)
            assert torch.allclose(
                batch["pixel_values"][i], torch.full((3, 48, 48), batch["pixel_values"][i, 0, 0, 0])
            )
            expected = lam * sources[i] + (1 - lam) * sources[partner]
            torch.testing.assert_close(batch["labels"][i], expected, atol=1e-5, rtol=0)


def test_prob_zero_only_smooths():
    collator = GReFELMixCollator(NUM_LABELS, prob=0.0, label_smoothing=0.2)
    examples = constant_examples(5)
    batch = collator(examples)
    torch.testing.assert_close(batch["pixel_values"], torch.stack([e["pixel_values"] for e in examples]))
    expected = torch.full((5, NUM_LABELS), 0.2 / NUM_LABELS)
    expected[torch.arange(5), torch.arange(5)] += 0.8
    torch.testing.assert_close(batch["labels"], expected)


def test_same_seed_gives_same_batches_and_inputs_are_not_modified():
    examples = [{"pixel_values": torch.randn(3, 32, 32), "labels": i % NUM_LABELS} for i in range(6)]
    originals = [e["pixel_values"].clone() for e in examples]

    def run(seed):
        collator = GReFELMixCollator(NUM_LABELS, generator=torch.Generator().manual_seed(seed))
        return [collator(examples) for _ in range(8)]

    first, second, other = run(7), run(7), run(8)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a["pixel_values"], b["pixel_values"], rtol=0, atol=0)
        torch.testing.assert_close(a["labels"], b["labels"], rtol=0, atol=0)
    assert any(not torch.equal(a["labels"], b["labels"]) for a, b in zip(first, other, strict=True))
    for example, original in zip(examples, originals, strict=True):
        assert torch.equal(example["pixel_values"], original)


def test_global_rng_is_used_without_a_generator():
    examples = [{"pixel_values": torch.randn(3, 32, 32), "labels": i} for i in range(4)]
    collator = GReFELMixCollator(NUM_LABELS)
    torch.manual_seed(11)
    first = [collator(examples)["labels"] for _ in range(5)]
    torch.manual_seed(11)
    second = [collator(examples)["labels"] for _ in range(5)]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_sample_beta_has_the_beta_moments():
    generator = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_beta(0.8, generator) for _ in range(4000)])
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(0.5, abs=0.02)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * 0.8 + 1)), abs=0.01)


def test_eval_collator_never_mixes():
    examples = constant_examples(4)
    for _ in range(10):
        batch = GReFELEvalCollator(num_labels=NUM_LABELS)(examples)
        assert torch.equal(batch["pixel_values"], torch.stack([e["pixel_values"] for e in examples]))
        assert batch["labels"].dtype == torch.int64
        assert batch["labels"].tolist() == [0, 1, 2, 3]


def test_eval_collator_soft_and_unlabelled_examples():
    soft = constant_examples(3, soft=True)
    batch = collate_eval(soft)
    assert batch["labels"].dtype == torch.float32
    torch.testing.assert_close(batch["labels"], torch.tensor([e["labels"] for e in soft]))
    unlabelled = [{"pixel_values": torch.zeros(3, 8, 8)} for _ in range(2)]
    assert set(collate_eval(unlabelled)) == {"pixel_values"}
    with pytest.raises(ValueError, match="example 1 has no label but others in the batch do"):
        collate_eval([soft[0], {"pixel_values": torch.zeros(3, 48, 48)}])
    with pytest.raises(ValueError, match="mixes hard and soft"):
        collate_eval([soft[0], {"pixel_values": torch.zeros(3, 48, 48), "labels": 1}])


@pytest.mark.parametrize(
    ("bad_example", "message"),
    [
        (
            {"pixel_values": torch.zeros(3, 48, 48), "labels": NUM_LABELS},
            "example 2: label 8 is out of range",
        ),
        ({"pixel_values": torch.zeros(3, 48, 48), "labels": -1}, "example 2: label -1 is out of range"),
        (
            {"pixel_values": torch.zeros(3, 48, 48), "labels": [0.5, 0.5]},
            "example 2: soft label has 2 values",
        ),
        (
            {"pixel_values": torch.zeros(3, 48, 48), "labels": [0.2] * NUM_LABELS},
            "example 2: soft label must sum",
        ),
        ({"pixel_values": torch.zeros(3, 40, 48), "labels": 0}, "example 2: pixel_values shape"),
        (
            {"pixel_values": torch.zeros(3, 48, 48, dtype=torch.uint8), "labels": 0},
            "example 2: pixel_values must",
        ),
        ({"labels": 0}, "example 2 has no 'pixel_values'"),
        ({"pixel_values": torch.zeros(3, 48, 48)}, "example 2 has no 'labels'"),
        ({"pixel_values": torch.zeros(3, 48, 48), "labels": 1.5}, "example 2: hard label must be an integer"),
    ],
)
def test_bad_examples_raise_value_errors_naming_the_example(bad_example, message):
    examples = constant_examples(2) + [bad_example]
    with pytest.raises(ValueError, match=message):
        GReFELMixCollator(NUM_LABELS)(examples)
    # The evaluation collator shares the image and class-id checks (soft/hard mixing has its own test).
    if "pixel_values" in message or "out of range" in message:
        with pytest.raises(ValueError, match=message):
            GReFELEvalCollator(num_labels=NUM_LABELS)(examples)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_labels": 1},
        {"num_labels": 7, "mixup_alpha": -0.1},
        {"num_labels": 7, "prob": 1.5},
        {"num_labels": 7, "label_smoothing": -0.1},
        {"num_labels": 7, "protected_region": (0.8, 0.2, 0.2, 0.8)},
        {"num_labels": 7, "protected_region": (0.0, 0.0, 1.0)},
        {"num_labels": 7, "protected_region": (0.0, 0.0, 1.0, 1.0)},
    ],
)
def test_bad_collator_arguments(kwargs):
    with pytest.raises(ValueError):
        GReFELMixCollator(**kwargs)


def test_empty_batch_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        GReFELMixCollator(NUM_LABELS)([])
