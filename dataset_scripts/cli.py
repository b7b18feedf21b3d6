"""The shared command line of the builder modules: `python -m dataset_scripts.<name> --output_dir OUT ...`.

Each builder module describes its own options (`CliOption`s) and a load function; this module parses the
arguments, builds the `DatasetDict` and writes it as a `save_to_disk` folder, as Hub-style Parquet files
(`OUT/data/{split}-00000-of-00001.parquet`), or pushes it to the Hub.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CliOption:
    """One builder-specific command-line option, forwarded to the load function as a keyword argument."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: Sequence[Any] | None = field(default=None)


def write_parquet(dataset_dict: datasets.DatasetDict, output_dir: str) -> list[str]:
    """Write every split as `output_dir/data/{split}-00000-of-00001.parquet`, the Hub's layout.

    `load_dataset(output_dir)` (or `load_expression_dataset(output_dir)`) reads it back with the `Image` and
    `ClassLabel` features intact, because datasets stores them in the Parquet schema metadata.
    """
    data_dir = os.path.join(output_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    paths = []
    for split, dataset in dataset_dict.items():
        path = os.path.join(data_dir, f"{split}-00000-of-00001.parquet")
        dataset.to_parquet(path)
        paths.append(path)
    return paths


def push_dataset(dataset_dict: datasets.DatasetDict, repo_id: str) -> None:
    """Upload to the Hub, turning network failures into a message that says what to check."""
    try:
        dataset_dict.push_to_hub(repo_id)
    except Exception as err:  # offline, no token, no permission: all surface here with their own types
        raise RuntimeError(
            f"push_to_hub({repo_id!r}) failed: {type(err).__name__}: {err}. Check the network connection, "
            "that "
            "HF_HUB_OFFLINE is not set, and that you are logged in (`hf auth login` or HF_TOKEN)."
        ) from err


def build_parser(
    description: str, options: Sequence[CliOption], needs_data_dir: bool
) -> argparse.ArgumentParser:
    """The argument parser: the common options plus the builder's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_dir", required=needs_data_dir, help="folder that holds the dataset files")
    parser.add_argument("--output_dir", required=True, help="where to write the prepared dataset")
    parser.add_argument(
        "--format",
        choices=("arrow", "parquet"),
        default="arrow",
        help="arrow: DatasetDict.save_to_disk; parquet: OUT/data/{split}-00000-of-00001.parquet",
    )
    parser.add_argument(
        "--push_to_hub", metavar="REPO", default=None, help="also upload to this Hub dataset repo"
    )
    parser.add_argument(
        "--cache_dir", default=None, help="datasets cache folder (default: HF_DATASETS_CACHE)"
    )
    for option in options:
        parser.add_argument(
            f"--{option.name}",
            type=option.type,
            default=option.default,
            help=option.help,
            choices=option.choices,
        )
    return parser


def run_cli(
    argv: Sequence[str] | None,
    description: str,
    load_fn: Callable[..., datasets.DatasetDict],
    options: Sequence[CliOption] = (),
    needs_data_dir: bool = True,
) -> int:
    """Parse `argv`, build the dataset with `load_fn` and write it. Returns the process exit code.

    Errors in the input data are logged as one clear line (exit status 2) rather than a traceback.
    """
    args = build_parser(description, options, needs_data_dir).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    kwargs = {option.name: getattr(args, option.name) for option in options}
    if needs_data_dir or args.data_dir is not None:
        kwargs["data_dir"] = args.data_dir
    try:
        dataset_dict = load_fn(cache_dir=args.cache_dir, **kwargs)
        if args.format == "parquet":
            write_parquet(dataset_dict, args.output_dir)
        else:
            dataset_dict.save_to_disk(args.output_dir)
        logger.info(
            "wrote %s to %s (%s)", {k: len(v) for k, v in dataset_dict.items()}, args.output_dir, args.format
        )
        if args.push_to_hub:
            push_dataset(dataset_dict, args.push_to_hub)
            logger.info("pushed to the Hub dataset repo %s", args.push_to_hub)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    return 0
