"""Resume-exact randomness for the training input pipeline.

Augmentation, FER+ label sampling and CutMix/Mixup draw their random numbers from a seed derived from the run seed
and the dataset indices of the batch, not from the global RNG stream. Trainer restores the global RNG from a
checkpoint, but accelerate's loader fetches one batch ahead, and worker processes have RNG states that are never
saved: with a global stream a resumed run would augment its next batches differently from an uninterrupted one.
Keyed on the sample indices (which the sampler reproduces exactly on resume), they are identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

INDEX_COLUMN = "sample_index"


def derive_seed(seed: int, indices: Sequence[int]) -> int:
    """A 63-bit seed that depends on the run seed and on exactly which samples (in order) form the batch."""
    digest = hashlib.blake2b(np.asarray([seed, *indices], dtype=np.int64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def add_sample_index(dataset):
    """Add the `sample_index` column (0..N-1) the seeded transform and collator key their randomness on."""
    if INDEX_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))


class IndexSeededTransform:
    """Run a random `with_transform` function under a seed derived from the batch's sample indices.

    The global torch RNG is left exactly as it was. The indices are passed on, so the collator can use them too.
    """

    def __init__(self, transform: Callable[[Mapping[str, Any]], dict[str, Any]], seed: int):
        self.transform = transform
        self.seed = seed

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if INDEX_COLUMN not in batch:
            raise ValueError(f"the batch has no {INDEX_COLUMN!r} column; add it with add_sample_index(dataset)")
        indices = [int(i) for i in batch[INDEX_COLUMN]]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, indices))
            output = self.transform(batch)
        output[INDEX_COLUMN] = indices
        return output


class IndexSeededCollator:
    """Give a collator with a `generator` attribute (e.g. `GReFELMixCollator`) a generator seeded from the
    batch's sample indices, so mixing decisions are reproducible on resume."""

    def __init__(self, collator, seed: int):
        self.collator = collator
        self.seed = seed

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        missing = [i for i, example in enumerate(examples) if INDEX_COLUMN not in example]
        if missing:
            raise ValueError(f"examples {missing[:5]} carry no {INDEX_COLUMN!r}; use IndexSeededTransform")
        indices = [int(example[INDEX_COLUMN]) for example in examples]
        # a different stream from the transform's: the collator's draws must not repeat the augmentation's
        self.collator.generator = torch.Generator().manual_seed(derive_seed(self.seed + 1, indices))
        return self.collator(examples)


__all__ = ["INDEX_COLUMN", "IndexSeededCollator", "IndexSeededTransform", "add_sample_index", "derive_seed"]
