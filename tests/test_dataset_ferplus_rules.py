"""Microsoft's FER+ label rules on hand-made vote rows (order: 8 emotions, unknown, NF)."""

import pytest

from dataset_scripts.ferplus_rules import (
    DROP_NO_MAJORITY,
    DROP_TOO_SPREAD,
    DROP_UNKNOWN_OR_NF,
    ferplus_target,
    remove_outlier_votes,
)


def votes(**counts: int) -> list[int]:
    """A 10-count vote row from named counts, e.g. votes(neutral=6, happiness=2)."""
    order = [
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
        "unknown",
        "NF",
    ]
    unknown = set(counts) - set(order)
    assert not unknown, unknown
    return [counts.get(name, 0) for name in order]


def test_outlier_removal_zeroes_single_votes_only():
    assert remove_outlier_votes([1, 2, 1, 0, 3, 0, 0, 0, 1, 2]) == [0, 2, 0, 0, 3, 0, 0, 0, 0, 2]


# ---------------------------------------------------------------- majority
def test_majority_clear_winner_is_one_hot():
    target = ferplus_target(votes(neutral=6, happiness=2, surprise=1, sadness=1), "majority")
    assert target.kept and target.label == 0
    assert target.soft_label == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_majority_counts_after_outlier_removal():
    # 5 of 10 is not a majority, but after removing the single vote 5 of 9 is.
    target = ferplus_target(votes(sadness=5, anger=4, fear=1), "majority")
    assert target.kept and target.label == 3


def test_majority_tie_is_dropped():
    target = ferplus_target(votes(neutral=4, happiness=4, surprise=1, sadness=1), "majority")
    assert not target.kept and target.drop_reason == DROP_NO_MAJORITY
    assert target.label is None and target.soft_label is None


def test_majority_all_single_votes_is_dropped():
    target = ferplus_target([1] * 10, "majority")
    assert target.drop_reason == DROP_NO_MAJORITY


@pytest.mark.parametrize("row", [votes(happiness=2, unknown=8), votes(NF=10), votes(neutral=3, NF=7)])
def test_majority_unknown_or_nf_winner_is_dropped(row):
    assert ferplus_target(row, "majority").drop_reason == DROP_UNKNOWN_OR_NF


# ---------------------------------------------------------------- probability / crossentropy
@pytest.mark.parametrize("mode", ["probability", "crossentropy"])
def test_distribution_stops_at_75_percent(mode):
    # After outlier removal: neutral 4, anger 3, disgust 2 (9 votes). 4 < 6.75, 4 + 3 >= 6.75: stop.
    target = ferplus_target(votes(neutral=4, sadness=1, anger=3, disgust=2), mode)
    assert target.kept and target.label == 0
    assert target.soft_label == pytest.approx([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])


def test_distribution_takes_tied_emotions_together():
    target = ferplus_target(votes(neutral=4, happiness=4, surprise=2), "crossentropy")
    assert target.soft_label == pytest.approx([0.5, 0.5, 0, 0, 0, 0, 0, 0])
    assert target.label == 0  # the first of the tied emotions, like numpy.argmax


def test_distribution_three_emotions_allowed():
    target = ferplus_target(votes(neutral=3, happiness=3, surprise=3, unknown=1), "crossentropy")
    assert target.soft_label == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0, 0])


def test_distribution_more_than_three_emotions_dropped():
    # The second pass takes two tied emotions at once: 4 emotions in total.
    target = ferplus_target(votes(neutral=3, happiness=3, surprise=2, sadness=2), "crossentropy")
    assert target.drop_reason == DROP_TOO_SPREAD


def test_distribution_unknown_tied_with_top_emotion_leaves_too_few_votes():
    # unknown ties with neutral: taking stops, neutral alone holds 4 of 10 votes (<= 50 %): dropped.
    target = ferplus_target(votes(neutral=4, unknown=4, NF=2), "crossentropy")
    assert target.drop_reason == DROP_TOO_SPREAD


def test_distribution_unknown_tie_after_enough_emotions_is_ignored():
    # Microsoft's loop: emotions taken in the same pass before the tied unknown are kept (6 of 9 votes).
    target = ferplus_target(votes(neutral=3, happiness=3, unknown=3), "crossentropy")
    assert target.kept and target.soft_label == pytest.approx([0.5, 0.5, 0, 0, 0, 0, 0, 0])


def test_distribution_unknown_as_sole_top_is_dropped():
    target = ferplus_target(votes(neutral=2, unknown=8), "probability")
    assert target.drop_reason == DROP_UNKNOWN_OR_NF


def test_distribution_unknown_in_a_later_pass_is_not_taken():
    # neutral 6 covers 60 % < 75 %; the next top is unknown/NF (2 each), which ends the loop without them.
    target = ferplus_target(votes(neutral=6, unknown=2, NF=2), "crossentropy")
    assert target.kept and target.soft_label == pytest.approx([1, 0, 0, 0, 0, 0, 0, 0])


# ---------------------------------------------------------------- multi_target
def test_multi_target_is_normalised_multi_hot():
    # After outlier removal: neutral 4, anger 3, disgust 2 of 9; threshold 2.7 keeps neutral and anger.
    target = ferplus_target(votes(neutral=4, sadness=1, anger=3, disgust=2), "multi_target")
    assert target.soft_label == pytest.approx([0.5, 0, 0, 0, 0.5, 0, 0, 0])
    assert target.label == 0


def test_multi_target_label_is_the_top_vote_not_the_first_hot_entry():
    target = ferplus_target(votes(neutral=3, happiness=4, unknown=1, NF=1, fear=1), "multi_target")
    assert target.label == 1
    assert target.soft_label == pytest.approx([0.5, 0.5, 0, 0, 0, 0, 0, 0])


def test_multi_target_too_few_kept_votes_dropped():
    # Only neutral (3 of 9) passes the 30 % threshold: 3 <= 4.5.
    target = ferplus_target(votes(neutral=3, happiness=2, surprise=2, sadness=2, anger=1), "multi_target")
    assert target.drop_reason == DROP_TOO_SPREAD


def test_multi_target_unknown_peak_dropped():
    target = ferplus_target(votes(neutral=2, unknown=4, NF=4), "multi_target")
    assert target.drop_reason == DROP_UNKNOWN_OR_NF


# ---------------------------------------------------------------- argument errors
def test_bad_mode_and_bad_length_raise():
    with pytest.raises(ValueError, match="label_mode must be one of"):
        ferplus_target(votes(neutral=10), "soft")
    with pytest.raises(ValueError, match="has 10 counts, got 8"):
        ferplus_target([10, 0, 0, 0, 0, 0, 0, 0], "majority")
