"""Fine-tuning a saved model on another label set without losing what its class heads know.

A model trained on FER+ (neutral, happiness, ..., contempt) already has a head row and anchors for every FER2013 or
RAF-DB emotion; only the names and the order differ ("anger" against "angry"). When `--model_name_or_path` names a
model whose classes differ from the dataset's, each of the dataset's classes takes the class-indexed weights (the
rows of the classifiers, the class anchors) of the saved class of the same emotion, matched by name after folding
the usual synonyms; a class with no counterpart starts fresh. Everything else is copied unchanged.

Without this, transformers either refuses a different class count (unless told to re-initialise the heads) or,
with the same count in another order, silently keeps the rows in the old order under the new names.
"""

from __future__ import annotations

import copy
import logging

import torch

from ..calibration.folder import set_identity_calibration
from .calibration import stores_calibration

logger = logging.getLogger(__name__)

# Names the common FER label sets give the same emotion, folded to one spelling (FER+'s).
EMOTION_SYNONYMS = {
    "angry": "anger",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "contemptuous": "contempt",
}


def canonical_emotion(name: str) -> str:
    """`name` lower-cased and stripped, with synonyms folded ("Angry" -> "anger")."""
    folded = name.strip().lower()
    return EMOTION_SYNONYMS.get(folded, folded)


def match_classes(source_labels: list[str], target_labels: list[str]) -> list[int | None]:
    """For every target class, the index of the source class of the same emotion, or None when there is none.

    Raises:
        ValueError: two classes of one label set name the same emotion (the match would be ambiguous).
    """
    for side, labels in (("saved model", source_labels), ("dataset", target_labels)):
        seen: dict[str, str] = {}
        for name in labels:
            key = canonical_emotion(name)
            if key in seen:
                raise ValueError(f"the {side}'s classes {seen[key]!r} and {name!r} name the same emotion: cannot "
                                 "tell which saved class head a dataset class should start from")
            seen[key] = name
    index = {canonical_emotion(name): i for i, name in enumerate(source_labels)}
    return [index.get(canonical_emotion(name)) for name in target_labels]


def relabelled_config(source, target_labels: list[str]):
    """A copy of `source`'s config with the target classes and, where it stores one, the identity calibration (a
    fitted calibration belongs to the old classes and the old weights)."""
    config = copy.deepcopy(source.config)
    config.id2label = dict(enumerate(target_labels))
    config.label2id = {name: i for i, name in enumerate(target_labels)}
    if stores_calibration(source):
        set_identity_calibration(config)
    return config


@torch.no_grad()
def transfer_class_weights(source, target, rows: list[int | None]) -> None:
    """Copy `source`'s weights into `target` (the same architecture with other classes): class-indexed tensors row
    by row as `rows` says (None keeps the target's fresh row), every other tensor whole.

    Raises:
        ValueError: a tensor that is not class-indexed has another shape in `target`.
    """
    class_indexed = set(target.class_indexed_parameters())
    target_state = target.state_dict()
    for name, value in source.state_dict().items():
        destination = target_state[name]
        if name in class_indexed:
            for target_row, source_row in enumerate(rows):
                if source_row is not None:
                    destination[target_row].copy_(value[source_row])
        elif destination.shape != value.shape:
            raise ValueError(f"weight {name!r} has shape {tuple(value.shape)} in the saved model but "
                             f"{tuple(destination.shape)} in the model being built")
        else:
            destination.copy_(value)


def with_target_classes(source, target_labels: list[str]):
    """`source` (a loaded classifier) as a model for `target_labels`: itself when the classes are the same, else
    a new model of its architecture whose class heads start from the saved heads of the same emotions."""
    source_labels = [source.config.id2label[i] for i in range(source.config.num_labels)]
    if source_labels == list(target_labels):
        return source
    rows = match_classes(source_labels, list(target_labels))
    target = type(source)(relabelled_config(source, list(target_labels)))
    transfer_class_weights(source, target, rows)
    kept = [f"{name} <- {source_labels[row]}" for name, row in zip(target_labels, rows, strict=True) if row is not None]
    fresh = [name for name, row in zip(target_labels, rows, strict=True) if row is None]
    logger.warning("fine-tuning on other classes: %d of %d class heads start from the saved model's (%s); %d start "
                   "fresh%s", len(kept), len(rows), ", ".join(kept) or "none", len(fresh),
                   f" ({', '.join(fresh)})" if fresh else "")
    return target


__all__ = ["EMOTION_SYNONYMS", "canonical_emotion", "match_classes", "relabelled_config", "transfer_class_weights",
           "with_target_classes"]
