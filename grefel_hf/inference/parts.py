"""The parts a run over several processes writes, and how they become the one output.

Process i of n writes its rows to `<output stem>.parts/part-<i>-of-<n><output suffix>` and, when its inputs are
done or a signal stopped it, what it did to `part-<i>-of-<n>.summary.json` beside them (which `--resume` trusts,
as it trusts a one-process run's summary). The processes' inputs are consecutive stretches of the input order
(`shards`), so the output is the parts' rows one after the other: `concatenate_rows` copies their bytes, the
header once. Once merged, the parts folder is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .summaries import RunSummary
from .targets import RunTargets

PART_NAME = re.compile(r"part-(\d+)-of-(\d+)")

ADDED_COUNTS = ("images", "frames", "faces", "without_face", "uncertain", "escaped_names", "resumed_rows")
"""The counts of `RunSummary` that a run over several processes adds up over its parts (videos are counted when
their summaries are made from the merged rows)."""


@dataclass(frozen=True)
class PartFile:
    """The rows file and summary of one process."""

    rows: Path
    summary: Path


@dataclass(frozen=True)
class Parts:
    """The parts folder of a run over `count` processes."""

    folder: Path
    count: int
    suffix: str

    @classmethod
    def of(cls, targets: RunTargets, count: int) -> Parts:
        output = targets.output
        return cls(output.with_name(f"{output.stem}.parts"), count, output.suffix)

    def part(self, index: int) -> PartFile:
        stem = self.folder / f"part-{index:05d}-of-{self.count:05d}"
        return PartFile(stem.with_name(stem.name + self.suffix), stem.with_name(stem.name + ".summary.json"))

    def all(self) -> list[PartFile]:
        return [self.part(index) for index in range(self.count)]

    def check(self, output: Path, overwrite: bool, resume: bool) -> None:
        """Refuse, before any work, parts that this run must not write over or cannot continue (one line each);
        with `overwrite`, remove an earlier run's parts."""
        if os.path.lexists(self.folder) and not os.path.isdir(self.folder):
            raise ValueError(f"{self.folder} is a file, where the parts of this run over several processes go; "
                             "move it or choose another --output")
        found = sorted(p.name for p in self.folder.iterdir()) if os.path.isdir(self.folder) else []
        if overwrite:
            shutil.rmtree(self.folder, ignore_errors=True)
        elif not resume and os.path.lexists(self.folder):
            raise ValueError(f"{self.folder} already exists (the parts of an unfinished run over several "
                             "processes); give --resume to finish it, or --overwrite to replace it")
        elif resume:
            counts = {int(m[2]) for m in map(PART_NAME.match, found) if m}
            if counts - {self.count}:
                raise ValueError(f"--resume: {self.folder} holds the parts of a run over {max(counts)} processes; "
                                 f"resume it with as many (accelerate launch --num_processes {max(counts)})")
            if not found and output.is_file():
                raise ValueError(f"--resume: {output} has no parts to continue in {self.folder}: it was finished, "
                                 "or written by one process (resume that with one process)")


def concatenate_rows(parts: list[Path], output: Path, fmt: str) -> None:
    """`output`: the parts' rows one after the other (a CSV header once), written beside it and then renamed, so
    that `output` is never half written."""
    merging = output.with_name(output.name + ".merging")
    with open(merging, "wb") as out:
        for index, part in enumerate(parts):
            with open(part, "rb") as rows:
                if fmt == "csv":
                    header = rows.readline()
                    if index == 0:
                        out.write(header)
                shutil.copyfileobj(rows, out)
    os.replace(merging, output)


def add_part_counts(total: RunSummary, record: dict[str, Any]) -> None:
    """Add one part's summary (as written) to `total`: its counts, unreadable files, and whether it was stopped."""
    for name in ADDED_COUNTS:
        setattr(total, name, getattr(total, name) + record[name])
    total.unreadable.extend((entry["file"], entry["reason"]) for entry in record["unreadable"])
    if record["interrupted"] and not total.interrupted:
        total.interrupted, total.stopped_by = True, record["stopped_by"]


def read_part_summary(path: Path) -> dict[str, Any]:
    """A part's summary; a missing one is a ValueError (the process ended without writing it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"{path} is missing: that process ended before its inputs were done; run the same "
                         "command with --resume") from err


__all__ = ["ADDED_COUNTS", "PART_NAME", "PartFile", "Parts", "add_part_counts", "concatenate_rows",
           "read_part_summary"]
