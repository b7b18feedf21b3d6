"""Where a `grefel-hf predict` run writes, and the checks made before any work.

A run writes the rows file (`--output`), the run summary beside it (`<output stem>.summary.json`), per video a
summary and a plot (`--summary_dir`), and with `--annotate` a copy of each input. Before anything is read or
written, `check_targets` refuses, in one line naming the path:

- any of them that is an input, or a folder of them that is (or lies inside) an input folder: inputs are never
  written over, and copies never land among them;
- an existing output, unless `overwrite` (replace it) or `resume` (continue it);
- a path that cannot be written: under a file, in a read-only or unwritable folder, a read-only file.

`OutputNames` gives each input its files' names, the same on every run over the same inputs (so a resumed run
writes what an uninterrupted one would), in the order the inputs come.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .annotate import UniqueNames, annotated_suffix
from .sources import Source, SourceList
from .writers import escaped_name


@dataclass(frozen=True)
class RunTargets:
    """The paths one run writes to: `summary_dir` holds the per-video files; `annotate_dir` is None without
    `--annotate`; `summary_dir_given` says whether `--summary_dir` was given (else it is the default beside the
    output)."""

    output: Path
    summary_file: Path
    annotate_dir: Path | None
    summary_dir: Path
    summary_dir_given: bool = False

    @classmethod
    def of(cls, output: str | Path, annotate_dir: str | Path | None = None,
           summary_dir: str | Path | None = None) -> RunTargets:
        output = Path(output)
        default_dir = output.parent / f"{output.stem}_videos"
        return cls(output, output.with_name(f"{output.stem}.summary.json"),
                   None if annotate_dir is None else Path(annotate_dir), Path(summary_dir or default_dir),
                   summary_dir is not None)


@dataclass(frozen=True)
class SourceFiles:
    """The files a run writes for one input: its annotated copy (None without `--annotate`), and for a video its
    summary and plot (None for an image)."""

    annotated: Path | None = None
    summary: Path | None = None
    plot: Path | None = None

    def described(self, source: Source) -> Iterator[tuple[Path, str]]:
        """(path, what it is) of each file."""
        for path, what in ((self.annotated, "annotated copy"), (self.summary, "video summary"),
                           (self.plot, "emotion plot")):
            if path is not None:
                yield path, f"the {what} of {escaped_name(source.path)}"


class OutputNames:
    """Names of the files written for each input (`of`), never colliding within a folder (`name`, `name_1`, ...)
    nor with the run's own rows and summary files, and made of the input's name in its escaped form (so that a name
    that is not UTF-8 never reaches OpenCV)."""

    def __init__(self, targets: RunTargets):
        self.targets = targets
        self._folders: dict[str, UniqueNames] = {}
        for own in (targets.output, targets.summary_file):
            self._names(own.parent).reserve(own.name)

    def _names(self, folder: Path) -> UniqueNames:
        key = os.path.abspath(folder)
        if key not in self._folders:
            self._folders[key] = UniqueNames(folder)
        return self._folders[key]

    def of(self, source: Source) -> SourceFiles:
        """The files of the next input (ask in input order, for every input, done or not)."""
        stem, video = escaped_name(source.path.stem), source.kind == "video"
        annotated = None
        if self.targets.annotate_dir is not None:
            suffix = ".mp4" if video else annotated_suffix(source.path)
            annotated = self._names(self.targets.annotate_dir).path(stem, suffix)
        if not video:
            return SourceFiles(annotated)
        names = self._names(self.targets.summary_dir)
        return SourceFiles(annotated, names.path(stem, ".summary.json"), names.path(stem, ".emotions.png"))


def check_output_paths(files: dict[str, str | os.PathLike | None] | None = None,
                       folders: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse, before any work, an output file that is an existing folder or an output folder that is an existing
    file (`{option: path}`; None is skipped)."""
    for option, path in (files or {}).items():
        if path is not None and os.path.isdir(path):
            raise ValueError(f"{option} {path} is an existing folder; expected a file to write")
    for option, path in (folders or {}).items():
        if path is not None and os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{option} {path} is an existing file; expected a folder to write into")


def check_writable(option: str, path: str | os.PathLike, folder: bool = False) -> None:
    """Refuse, naming it, a file (or with `folder`, a folder) that cannot be created or written: one under a
    file, one in a folder this process may not write (read-only, or without permission) where it or its missing
    parents would be created, or a read-only existing file."""
    path = Path(path)
    existing = path if folder else path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        raise ValueError(f"{option} {path}: {existing} is a file, so nothing can be written under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot write into the folder {existing} (read-only or no permission)")
    if not folder and os.path.isfile(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path} is read-only")


def _input_named(sources: SourceList, path: Path) -> Source | None:
    if os.path.realpath(path) not in sources.realpaths:
        return None
    return next(s for s in sources.sources if os.path.realpath(s.path) == os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_not_inputs(targets: RunTargets, sources: SourceList, videos: bool) -> None:
    """Refuse a rows or summary file that is an input, and an annotation or video-summary folder that is, or lies
    inside, an input folder (one line naming both)."""
    for option, path in (("--output", targets.output), ("the run summary", targets.summary_file)):
        source = _input_named(sources, path)
        if source is not None:
            raise ValueError(f"{option} {path} is the input {escaped_name(source.path)}: writing it would destroy "
                             "it; choose another --output")
    summary_option = "--summary_dir" if targets.summary_dir_given else "--summary_dir (by default beside --output)"
    written = [("--annotate", targets.annotate_dir), (summary_option, targets.summary_dir if videos else None)]
    for option, folder in written:
        for searched in sources.folders if folder is not None else ():
            if _inside(folder, searched):
                raise ValueError(f"{option} {folder} is inside the input folder {searched} (or is it): files "
                                 "written there would replace inputs of the same name or be read as inputs next "
                                 "time; choose a folder outside it")


def check_planned_files(targets: RunTargets, sources: SourceList, keep_existing: bool) -> None:
    """Refuse a file planned for an input (annotated copy, video summary, plot) that is an input itself, or,
    unless `keep_existing` (`--overwrite` or `--resume`), that exists already."""
    names = OutputNames(targets)
    for source in sources.sources:
        for path, what in names.of(source).described(source):
            other = _input_named(sources, path)
            if other is not None:
                raise ValueError(f"{path}, {what}, would be written over the input {escaped_name(other.path)}; "
                                 "choose another --annotate or --summary_dir")
            if not keep_existing and os.path.lexists(path):
                raise ValueError(f"{path} already exists ({what}); give --overwrite to replace it, or --resume "
                                 "to finish the run that wrote it")


def check_targets(targets: RunTargets, sources: SourceList, overwrite: bool = False, resume: bool = False) -> None:
    """Every check above, in order, before any work (see the module docstring)."""
    videos = any(source.kind == "video" for source in sources.sources)
    check_output_paths({"--output": targets.output}, {"--annotate": targets.annotate_dir,
                                                      "--summary_dir": targets.summary_dir})
    check_not_inputs(targets, sources, videos)
    for path in (targets.output, targets.summary_file):
        if not (overwrite or resume) and os.path.lexists(path):
            raise ValueError(f"{path} already exists; give --overwrite to replace it, or --resume to finish the "
                             "run that wrote it")
    check_writable("--output", targets.output)
    check_writable("--output", targets.summary_file)
    if targets.annotate_dir is not None:
        check_writable("--annotate", targets.annotate_dir, folder=True)
    if videos:
        check_writable("--summary_dir", targets.summary_dir, folder=True)
    check_planned_files(targets, sources, overwrite or resume)


__all__ = ["OutputNames", "RunTargets", "SourceFiles", "check_not_inputs", "check_output_paths",
           "check_planned_files", "check_targets", "check_writable"]
