"""Soft FER2013 training targets from the FER+ annotators' votes on the same faces (issue 36: "one backbone trained
with both label sets of the same faces").

FER+ relabelled every FER2013 face with ten annotators' votes. The lossless FER2013 training set
(`fer2013_lossless_train.py`) already knows, for each of its rows, the FER+ image it came from (its `source`
column starts with that PNG's name). This helper looks up that image's votes in the FER+ `label.csv`, maps the
emotions onto the dataset's classes by name (`anger` = `angry`; FER+'s contempt, unknown and not-a-face votes have
no FER2013 class and are set aside) and writes

    soft_label = hard_weight * one_hot(the FER2013 label) + (1 - hard_weight) * the normalised mapped votes,

as a `soft_label` column beside the images and labels of a copy of the dataset folder. With `hard_weight` above 0.5
the FER2013 label stays every target's largest entry; the votes spread the rest. A row whose image has no mapped
vote (not in label.csv, or only contempt, unknown or not-a-face votes) keeps its one-hot label, and the JSON counts
those rows. Train on it with `--use_soft_labels true --dataset OUTPUT_DIR`. The validation split is copied unchanged;
nothing reads a test split.

    python benchmarks/ferplus_vote_targets.py --dataset_dir /tmp/fer/fer2013-lossless-train \\
        --ferplus_train_dir /tmp/fer/ferplus/data/FER2013Train --output_dir /tmp/fer2013-votes \\
        --output /tmp/fer2013_vote_targets.json   # fer2013_vote_targets_3ep.json holds it as "targets"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from distill_targets import (  # noqa: E402
    add_target_options,
    load_train_and_validation,
    parse_target_options,
    save_with_targets,
    soft_targets,
)
from fer2013_lossless_train import lossless_png_name  # noqa: E402
from selective_prediction import commit  # noqa: E402

from dataset_scripts.common import FERPLUS_LABELS  # noqa: E402
from dataset_scripts.ferplus import read_label_csv  # noqa: E402


def vote_matrix(sources: list[str], votes_by_name: dict[str, list[int]], class_names: list[str]) -> np.ndarray:
    """(N, C) FER+ vote counts of each row's image in the dataset's class order; a row of zeros where the image is
    not in label.csv or has no vote for any of the dataset's classes.

    Raises:
        ValueError: a source does not start with a PNG name, or a dataset class has no FER+ emotion.
    """
    from grefel_hf.training.class_transfer import match_classes

    columns = match_classes(list(FERPLUS_LABELS), class_names)
    if None in columns:
        missing = [name for name, column in zip(class_names, columns, strict=True) if column is None]
        raise ValueError(f"the dataset's classes {missing} have no FER+ emotion ({list(FERPLUS_LABELS)})")
    counts = np.zeros((len(sources), len(class_names)), dtype=np.float64)
    for row, source in enumerate(sources):
        png_name = lossless_png_name(source)
        if png_name is None:
            raise ValueError(f"train row {row}: source {source!r} does not start with a FER+ PNG name; build the "
                             "dataset with fer2013_lossless_train.py")
        votes = votes_by_name.get(png_name)
        if votes is not None:
            counts[row] = [votes[column] for column in columns]
    return counts


def vote_targets(labels: np.ndarray, counts: np.ndarray, hard_weight: float) -> np.ndarray:
    """The mixture of `soft_targets`, with the one-hot label alone on rows without votes."""
    totals = counts.sum(axis=1, keepdims=True)
    has_votes = totals[:, 0] > 0
    distribution = np.where(has_votes[:, None], counts / np.maximum(totals, 1.0), np.eye(counts.shape[1])[labels])
    return soft_targets(labels, distribution, hard_weight)


def summary(labels: np.ndarray, counts: np.ndarray, names: list[str], hard_weight: float) -> dict:
    """How the votes and the FER2013 labels relate on the training rows, for the JSON."""
    has_votes = counts.sum(axis=1) > 0
    majority = counts.argmax(axis=1)
    agree = (majority == labels) & has_votes
    return {
        "train_rows": int(len(labels)), "rows_with_votes": int(has_votes.sum()),
        "rows_one_hot_only": int((~has_votes).sum()),
        "vote_majority_agrees_with_label": float(agree.sum() / max(has_votes.sum(), 1)),
        "agreement_by_label": {name: float(agree[labels == i].sum() / max((has_votes & (labels == i)).sum(), 1))
                               for i, name in enumerate(names)},
        "mean_label_share_of_target": float(hard_weight + (1 - hard_weight) * np.mean(
            np.where(has_votes, counts[np.arange(len(labels)), labels] / np.maximum(counts.sum(axis=1), 1), 1.0))),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True,
                        help="the lossless FER2013 DatasetDict folder (train and validation, with a source column)")
    parser.add_argument("--ferplus_train_dir", required=True, help="FER+'s FER2013Train folder, with label.csv")
    add_target_options(parser, 0.6, "the JSON with the counts and agreement figures")
    return parse_target_options(parser, argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from grefel_hf.data.labels import label_names_of

    data = load_train_and_validation(args.dataset_dir, train_columns=("source",))
    train = data["train"]
    names = label_names_of(train)
    labels = np.asarray(train["label"])
    try:
        rows, _ = read_label_csv(args.ferplus_train_dir)
        counts = vote_matrix(list(train["source"]), {name: votes for name, votes, _ in rows}, names)
    except (OSError, ValueError) as error:  # a missing label.csv or image, a malformed row, an unknown source
        print(f"ferplus_vote_targets: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    report = {"study": "issue 36: FER2013 training targets mixed with the FER+ votes of the same faces",
              "commit": commit(), "dataset_dir": args.dataset_dir, "ferplus_train_dir": args.ferplus_train_dir,
              "hard_weight": args.hard_weight, **summary(labels, counts, names, args.hard_weight)}
    targets = vote_targets(labels, counts, args.hard_weight)
    save_with_targets(data, targets, args.output_dir)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['rows_with_votes']} of {report['train_rows']} rows mixed with FER+ votes "
          f"({report['rows_one_hot_only']} keep the one-hot label); the vote majority agrees with the label on "
          f"{report['vote_majority_agrees_with_label']:.1%}; targets saved to {args.output_dir}")
    return report


if __name__ == "__main__":
    main()
