"""`train_hf.py`'s command line: an optional recipe file first, then arguments that override it.

    train_hf.py recipes/NAME.yaml --num_train_epochs 3 --dataset synthetic

A recipe is a YAML or JSON mapping of argument names to values (the same names as on the command line, without
`--`); its values become the defaults that the command line then overrides. `--help` lists the project's own options
first, in groups (model, architecture, data, objective, augmentation, optimisation, EMA and selection, runtime), then
the options inherited from transformers' `TrainingArguments`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .arguments import PROJECT_ARGUMENT_GROUPS, DataArguments, GReFELTrainingArguments
from .model_arguments import ModelArguments, is_architecture_argument

RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


class ArgumentError(ValueError):
    """A user error on the command line or in a recipe file; the message names the file or the argument."""


class GroupedArgumentParser(HfArgumentParser):
    """HfArgumentParser that lists each argument under the help group its name belongs to, and whose errors are
    one line (no usage block) raised as `ArgumentError` instead of exiting.

    HfArgumentParser puts a dataclass's fields in one group, but `GReFELTrainingArguments` is one dataclass made of
    several option groups (Trainer needs one arguments object). So every argument is added to the group that
    `help_groups` names for it, created in that order; an argument it does not name goes to the last group.

    Args:
        dataclass_types: as for HfArgumentParser.
        help_groups: `(title, argument names)` per group, in the order `--help` lists them.
    """

    def __init__(self, dataclass_types, help_groups: list[tuple[str, set[str]]], **kwargs):
        self._help_groups = help_groups  # read by add_argument, which HfArgumentParser.__init__ calls
        self._created_groups: dict[str, Any] = {}
        super().__init__(dataclass_types, **kwargs)

    def add_argument(self, *name_or_flags, **kwargs):
        """Add the argument to its help group (argparse's own `--help` goes where argparse puts it)."""
        long_flags = [flag for flag in name_or_flags if flag.startswith("--")]  # argparse names it by the first
        dest = kwargs.get("dest") or (long_flags or name_or_flags)[0].lstrip("-").replace("-", "_")
        if not getattr(self, "_help_groups", None) or dest == "help":
            return super().add_argument(*name_or_flags, **kwargs)
        if not self._created_groups:  # created together, so that --help lists them in this order
            self._created_groups = {title: self.add_argument_group(title) for title, _ in self._help_groups}
        title = next((title for title, names in self._help_groups if dest in names), self._help_groups[-1][0])
        return self._created_groups[title].add_argument(*name_or_flags, **kwargs)

    def error(self, message: str):
        raise ArgumentError(message)


def help_groups() -> list[tuple[str, set[str]]]:
    """(title, argument names) of each `--help` group, in order: the project's options, then Trainer's."""
    model_names = {f.name for f in fields(ModelArguments)}
    groups = [
        ("model: what to build or fine-tune", {n for n in model_names if not is_architecture_argument(n)}),
        ("architecture: model config fields (unset keeps the config's default)",
         {n for n in model_names if is_architecture_argument(n)}),
        ("data", {f.name for f in fields(DataArguments)}),
    ]
    for group in PROJECT_ARGUMENT_GROUPS:
        names = {f.name for f in fields(group)} | set(getattr(group, "trainer_fields", ()))
        groups.append((group.help_title, names))
    groups.append(("transformers TrainingArguments (inherited)", set()))
    return groups


def build_argument_parser() -> GroupedArgumentParser:
    """The parser of `train_hf.py`, with `--help` grouped: the project's options first, Trainer's last."""
    return GroupedArgumentParser((ModelArguments, DataArguments, GReFELTrainingArguments), help_groups(),
                                 usage="train_hf.py [RECIPE.yaml] [--ARGUMENT VALUE ...]",
                                 description="Train a GReFEL (or baseline) facial-expression model with the "
                                             "transformers Trainer. A recipe file (.yaml/.json) may come first; "
                                             "later arguments override its values.")


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
        known = {f.name for dtype in parser.dataclass_types for f in fields(dtype)}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ArgumentError(f"{recipe_path}: unknown argument(s) {unknown}; `train_hf.py --help` lists them")
        parser.set_defaults(**recipe)
    return parser.parse_args_into_dataclasses(args=argv)


__all__ = ["ArgumentError", "RECIPE_SUFFIXES", "build_argument_parser", "parse_training_arguments", "read_recipe"]
