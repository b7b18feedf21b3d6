"""`train_hf.py`'s command line: an optional recipe file first, then arguments that override it.

    train_hf.py recipes/NAME.yaml --num_train_epochs 3 --dataset synthetic

A recipe is a YAML or JSON mapping of argument names to values (the same names as on the command line, without
`--`); its values become the defaults that the command line then overrides. `--help` lists the project's own options
first, in groups (model, architecture, data, objective, augmentation, optimisation, EMA and selection, runtime), then
the options inherited from transformers' `TrainingArguments`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .arguments import PROJECT_ARGUMENT_GROUPS, DataArguments, GReFELTrainingArguments
from .model_arguments import ModelArguments, is_architecture_argument

RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


class ArgumentError(ValueError):
    """A user error on the command line or in a recipe file; the message names the file or the argument."""


class _OneLineParser(HfArgumentParser):
    """HfArgumentParser whose errors are one line (no usage block) and raise `ArgumentError` instead of exiting."""

    def error(self, message: str):
        raise ArgumentError(message)


def _group_titles() -> list[tuple[str, set[str]]]:
    """(title, argument names) of each help group, in order."""
    model_names = {f.name for f in fields(ModelArguments)}
    groups = [
        ("model: what to build or fine-tune", {n for n in model_names if not is_architecture_argument(n)}),
        ("architecture: model config fields (unset keeps the config's default)",
         {n for n in model_names if is_architecture_argument(n)}),
        ("data", {f.name for f in fields(DataArguments)}),
    ]
    for group in PROJECT_ARGUMENT_GROUPS:
        groups.append((group.help_title, {f.name for f in fields(group)}))
    return groups


def build_argument_parser() -> HfArgumentParser:
    """The parser of `train_hf.py`, with `--help` grouped: the project's options first, Trainer's last."""
    parser = _OneLineParser((ModelArguments, DataArguments, GReFELTrainingArguments),
                            usage="train_hf.py [RECIPE.yaml] [--ARGUMENT VALUE ...]",
                            description="Train a GReFEL (or baseline) facial-expression model with the transformers "
                                        "Trainer. A recipe file (.yaml/.json) may come first; later arguments "
                                        "override its values.")
    default_group = next(g for g in parser._action_groups if g.title in ("options", "optional arguments"))
    inherited = {f.name for f in fields(TrainingArguments)} - {f.name for g in PROJECT_ARGUMENT_GROUPS
                                                              for f in fields(g)}
    moved: dict[str, argparse._ArgumentGroup] = {}
    for title, names in [*_group_titles(), ("transformers TrainingArguments (inherited)", inherited)]:
        group = parser.add_argument_group(title)
        for name in names:
            moved[name] = group
    for action in list(default_group._group_actions):
        group = moved.get(action.dest)
        if group is not None:
            default_group._group_actions.remove(action)
            group._group_actions.append(action)
    return parser


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The argument values of a recipe file (a YAML or JSON mapping).

    Raises:
        ArgumentError: the file is missing, unreadable, not valid YAML/JSON or not a mapping (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"recipe file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            detail = f"{err.problem}, line {err.problem_mark.line + 1}"
        raise ArgumentError(f"{path}: not a valid {path.suffix.lstrip('.').upper()} recipe ({detail})") from err
    if values is None:
        return {}
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise ArgumentError(f"{path}: a recipe must be a mapping of argument names to values, got "
                            f"{type(values).__name__}")
    return values


def parse_training_arguments(argv: Sequence[str]) -> tuple[Any, DataArguments, GReFELTrainingArguments]:
    """(model, data, training) arguments from `argv`: an optional recipe file first, then overriding arguments.

    Raises:
        ArgumentError: a bad recipe file, an unknown key in it, or a bad command-line argument.
        ValueError: an argument value that its dataclass refuses (the message names the argument).
    """
    argv = list(argv)
    parser = build_argument_parser()
    if argv and argv[0].endswith(RECIPE_SUFFIXES) and not argv[0].startswith("-"):
        recipe_path, argv = argv[0], argv[1:]
        recipe = read_recipe(recipe_path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ArgumentError(f"{recipe_path}: unknown argument(s) {unknown}; `train_hf.py --help` lists them")
        parser.set_defaults(**recipe)
    return parser.parse_args_into_dataclasses(args=argv)


__all__ = ["ArgumentError", "RECIPE_SUFFIXES", "build_argument_parser", "parse_training_arguments", "read_recipe"]
