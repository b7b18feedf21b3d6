"""Microsoft's FER+ label rules as small pure functions over one vote vector.

A FER+ vote vector holds 10 counts in this order: the 8 emotions of `FERPLUS_LABELS` (neutral, happiness,
surprise, sadness, anger, disgust, fear, contempt), then `unknown` and `NF` (not a face). The rules follow
`_process_data` in Microsoft's FERPlus `src/ferplus.py` (Barsoum et al., "Training Deep Networks for Facial
Expression Recognition with Crowd-Sourced Label Distribution", ICMI 2016):

1. outlier removal: every count of exactly 1 becomes 0;
2. a mode-specific rule keeps some of the remaining counts, or rejects the image;
3. images whose kept counts peak on `unknown` or `NF` are dropped, and the rest is renormalised over the
   8 emotions.

The probability rule is easily read as "drop the image if unknown/NF ties for the top"; Microsoft's loop,
followed here exactly, only stops taking emotions at such a tie, so an image whose emotions taken before the
tie already hold more than half of the votes survives (e.g. neutral 3, happiness 3, unknown 3). On the shared
FER+ data this gives the published majority counts exactly (train 25,045, valid 3,191).

`ferplus_target` returns a `FerPlusTarget` that either carries the 8-way label distribution or names the
reason the image was dropped, so the builder can count drops per reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NUM_EMOTIONS = 8
NUM_VOTE_COLUMNS = 10  # 8 emotions + unknown + NF
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")

# Drop reasons, used as keys of the per-reason counters that the builder logs.
DROP_NO_MAJORITY = "no emotion holds more than half of the votes"
DROP_UNKNOWN_OR_NF = "the winning vote is unknown or not-a-face (NF)"
DROP_TOO_SPREAD = "kept votes are 50% or less of all votes, or more than 3 emotions were needed"

_MULTI_TARGET_THRESHOLD = 0.3  # an emotion with >= 30 % of the votes is one of the targets
_PROBABILITY_COVERAGE = 0.75  # add top emotions until they cover 75 % of the votes ...
_PROBABILITY_MAX_EMOTIONS = 3  # ... or 3 emotions are taken


@dataclass(frozen=True)
class FerPlusTarget:
    """The outcome of the FER+ rules for one image.

    Attributes:
        label (`int` or `None`): index of the top emotion in `FERPLUS_LABELS`; `None` when dropped.
        soft_label (`tuple[float, ...]` or `None`): 8 non-negative floats summing to 1; `None` when dropped.
            majority gives a one-hot vector, probability / crossentropy the vote distribution over the kept
            emotions, multi_target the normalised multi-hot vector.
        drop_reason (`str` or `None`): one of the `DROP_*` strings when the image is dropped.
    """

    label: int | None
    soft_label: tuple[float, ...] | None
    drop_reason: str | None = None

    @property
    def kept(self) -> bool:
        """Whether the image survives the rules."""
        return self.drop_reason is None


def remove_outlier_votes(votes: Sequence[int | float]) -> list[float]:
    """Set every count of exactly one vote to zero (a single annotator is treated as an outlier)."""
    return [0.0 if v < 1.0 + 1e-9 else float(v) for v in votes]


def _argmax(values: Sequence[float]) -> int:
    """Index of the first maximum, like `numpy.argmax`."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def majority_votes(votes: Sequence[float]) -> tuple[list[float] | None, str | None]:
    """Keep only the top count if it holds more than half of all votes (after outlier removal)."""
    total = sum(votes)
    top = max(votes)
    if top > 0.5 * total:
        kept = [0.0] * len(votes)
        kept[_argmax(votes)] = top
        return kept, None
    return None, DROP_NO_MAJORITY


def probability_votes(votes: Sequence[float]) -> tuple[list[float] | None, str | None]:
    """Take the top-count emotions until they cover 75 % of the votes or 3 were taken (Microsoft's loop).

    Ties are taken together in one pass, so a pass can overshoot 3 emotions; such an image is dropped. When
    `unknown`/`NF` ties for the current top, taking stops; it is kept in the vector only if it is the sole top
    so far, which makes the final unknown/NF check drop the image.
    """
    remaining = list(votes)
    total = sum(remaining)
    kept = [0.0] * len(remaining)
    covered, count, valid = 0.0, 0, True
    while covered < _PROBABILITY_COVERAGE * total and count < _PROBABILITY_MAX_EMOTIONS and valid:
        top = max(remaining)
        for i, value in enumerate(remaining):
            if value != top:
                continue
            kept[i] = top
            remaining[i] = 0.0
            covered += top
            count += 1
            if i >= NUM_EMOTIONS:  # unknown or NF shares the top count
                valid = False
                if sum(kept) > top:  # real emotions were taken before it: forget the unknown/NF share
                    kept[i] = 0.0
                    count -= 1
                break
    if sum(kept) <= 0.5 * total or count > _PROBABILITY_MAX_EMOTIONS:
        return None, DROP_TOO_SPREAD
    return kept, None


def multi_target_votes(votes: Sequence[float]) -> tuple[list[float] | None, str | None]:
    """Keep every count that holds at least 30 % of the votes; drop if they cover 50 % or less."""
    total = sum(votes)
    kept = [v if v >= _MULTI_TARGET_THRESHOLD * total else 0.0 for v in votes]
    if sum(kept) <= 0.5 * total:
        return None, DROP_TOO_SPREAD
    return kept, None


_MODE_RULES = {
    "majority": majority_votes,
    "probability": probability_votes,
    "crossentropy": probability_votes,
    "multi_target": multi_target_votes,
}


def ferplus_target(votes: Sequence[int | float], mode: str = "majority") -> FerPlusTarget:
    """Apply Microsoft's FER+ rules for `mode` to one row of 10 vote counts.

    Args:
        votes: 10 counts: the 8 emotions, unknown, NF.
        mode: one of `LABEL_MODES`.

    Returns:
        A `FerPlusTarget`; check `.kept` (or `.drop_reason`) before using the label.
    """
    if mode not in _MODE_RULES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {mode!r}")
    if len(votes) != NUM_VOTE_COLUMNS:
        raise ValueError(f"a FER+ vote row has {NUM_VOTE_COLUMNS} counts, got {len(votes)}: {list(votes)}")
    kept, reason = _MODE_RULES[mode](remove_outlier_votes(votes))
    if kept is None:
        return FerPlusTarget(None, None, reason)
    if _argmax(kept) >= NUM_EMOTIONS:
        return FerPlusTarget(None, None, DROP_UNKNOWN_OR_NF)
    emotions = kept[:NUM_EMOTIONS]
    label = _argmax(emotions)
    if mode == "multi_target":
        emotions = [1.0 if v > 0 else 0.0 for v in emotions]
    total = sum(emotions)
    return FerPlusTarget(label, tuple(v / total for v in emotions))
