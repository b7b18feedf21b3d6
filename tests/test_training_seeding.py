"""Index-keyed randomness of the training input pipeline (what makes resumed runs exact)."""

import pytest
import torch

from grefel_hf.data.collators import GReFELMixCollator
from grefel_hf.training.seeding import IndexSeededCollator, IndexSeededTransform, derive_seed


def _noisy_transform(batch):
    return {"pixel_values": [torch.rand(3, 8, 8) for _ in batch["sample_index"]], "labels": list(batch["label"])}


def test_same_indices_give_the_same_draws_and_leave_the_global_rng_alone():
    transform = IndexSeededTransform(_noisy_transform, seed=3)
    batch = {"sample_index": [4, 9, 1], "label": [0, 1, 2]}
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = transform(batch)
    assert torch.equal(torch.get_rng_state(), before)
    second = transform(batch)
    assert all(torch.equal(a, b) for a, b in zip(first["pixel_values"], second["pixel_values"], strict=True))
    assert first["sample_index"] == [4, 9, 1]
    other = transform({"sample_index": [4, 9, 2], "label": [0, 1, 2]})
    assert not torch.equal(first["pixel_values"][0], other["pixel_values"][0])
    assert derive_seed(3, [1, 2]) != derive_seed(4, [1, 2]) != derive_seed(3, [2, 1])


def test_seeded_collator_repeats_its_mixing_for_the_same_batch():
    collator = IndexSeededCollator(GReFELMixCollator(7, prob=1.0), seed=5)
    examples = [{"pixel_values": torch.rand(3, 32, 32), "labels": i % 7, "sample_index": 10 + i} for i in range(6)]
    first, second = collator(examples), collator(examples)
    assert torch.equal(first["pixel_values"], second["pixel_values"])
    assert torch.equal(first["labels"], second["labels"])
    with pytest.raises(ValueError, match="carry no 'sample_index'"):
        collator([{"pixel_values": torch.rand(3, 32, 32), "labels": 0}])
    with pytest.raises(ValueError, match="add_sample_index"):
        IndexSeededTransform(_noisy_transform, 0)({"label": [0]})
