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

The checks that concern the inputs (`InputChecks`) are made on each input as the one listing pass of
`check_targets` meets it; what they remember (real paths met, files planned, names handed out) is kept on disk, so
no list of the inputs is ever held.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .annotate import UniqueNames, annotated_suffix
from .disk_sets import DiskSet
from .sources import Source, SourceList, iter_sources
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

    def close(self) -> None:
        """Forget the names handed out (their files on disk are removed)."""
        for names in self._folders.values():
            names.close()

    def __enter__(self) -> OutputNames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class InputChecks:
    """The checks that concern the inputs, made on each input as it is listed (`source`), then `finish`:

    - a rows or summary file that is an input, and an annotation or video-summary folder that is, or lies inside,
      an input folder, raise at once (one line naming both);
    - a file planned for an input (annotated copy, video summary, plot) that is an input, or, unless
      `keep_existing` (`--overwrite` or `--resume`), that exists already, is kept in `problem` (the first one),
      which `check_targets` raises once the run's own files are checked.

    `seen` is the listing's record of the real paths met (`iter_sources`)."""

    def __init__(self, targets: RunTargets, found: SourceList, seen: DiskSet, keep_existing: bool):
        self.targets, self.found, self.seen, self.keep_existing = targets, found, seen, keep_existing
        self.names = OutputNames(targets)
        self.planned = DiskSet()
        self.own = [(option, path, os.path.realpath(path)) for option, path in
                    (("--output", targets.output), ("the run summary", targets.summary_file))]
        self.videos, self.problem, self._folders_checked = False, None, 0

    def source(self, source: Source) -> None:
        """Check one input, in listing order (raises ValueError)."""
        self._check_folders()
        real = os.path.realpath(source.path)
        for option, path, own in self.own:
            if real == own:
                raise ValueError(f"{option} {path} is the input {escaped_name(source.path)}: writing it would "
                                 "destroy it; choose another --output")
        if source.kind == "video" and not self.videos:
            self.videos = True
            self._check_folders(again=True)
        planned = self.planned.get(real)
        if planned is not None:
            self._over_input(*planned.split("\0"), source.path)
        for path, what in self.names.of(source).described(source):
            path_real = os.path.realpath(path)
            other = self.seen.get(path_real)
            if other is not None:
                self._over_input(os.fspath(path), what, other)
            elif not self.keep_existing and os.path.lexists(path) and self.problem is None:
                self.problem = (f"{path} already exists ({what}); give --overwrite to replace it, or --resume to "
                                "finish the run that wrote it")
            self.planned.add(path_real, f"{os.fspath(path)}\0{what}")

    def finish(self) -> None:
        """After the last input: the folders searched since."""
        self._check_folders()

    def _over_input(self, path: str, what: str, other: str | os.PathLike) -> None:
        if self.problem is None:
            self.problem = (f"{path}, {what}, would be written over the input {escaped_name(other)}; choose "
                            "another --annotate or --summary_dir")

    def _check_folders(self, again: bool = False) -> None:
        """Refuse an annotation or video-summary folder inside a folder searched (the latter once a video is
        found); `again`: also the folders checked before."""
        t = self.targets
        summary_option = "--summary_dir" if t.summary_dir_given else "--summary_dir (by default beside --output)"
        written = [("--annotate", t.annotate_dir), (summary_option, t.summary_dir if self.videos else None)]
        for searched in self.found.folders[0 if again else self._folders_checked:]:
            for option, folder in written:
                if folder is not None and _inside(folder, searched):
                    raise ValueError(f"{option} {folder} is inside the input folder {searched} (or is it): files "
                                     "written there would replace inputs of the same name or be read as inputs "
                                     "next time; choose a folder outside it")
        self._folders_checked = len(self.found.folders)

    def close(self) -> None:
        self.names.close()
        self.planned.close()

    def __enter__(self) -> InputChecks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Survey:
    """What the listing pass of `check_targets` found: `found` holds what is not a source (unsupported, missing,
    skipped), `sources` and `videos` count the inputs, `units` sums `units_of` over them."""

    found: SourceList
    sources: int = 0
    videos: int = 0
    units: int = 0


def check_targets(targets: RunTargets, inputs: Sequence[str | os.PathLike], overwrite: bool = False,
                  resume: bool = False, units_of: Callable[[Source], int] | None = None) -> Survey:
    """Every check of the module docstring, in order, before any work, while `inputs` are listed once (lazily;
    `units_of(source)`: the work units an input counts for, 1 when None)."""
    check_output_paths({"--output": targets.output}, {"--annotate": targets.annotate_dir,
                                                      "--summary_dir": targets.summary_dir})
    survey = Survey(SourceList())
    with DiskSet() as seen, InputChecks(targets, survey.found, seen, overwrite or resume) as checks:
        for source in iter_sources(inputs, survey.found, seen):
            checks.source(source)
            survey.sources += 1
            survey.videos += source.kind == "video"
            survey.units += 1 if units_of is None else units_of(source)
        checks.finish()
    for path in (targets.output, targets.summary_file):
        if not (overwrite or resume) and os.path.lexists(path):
            raise ValueError(f"{path} already exists; give --overwrite to replace it, or --resume to finish the "
                             "run that wrote it")
    check_writable("--output", targets.output)
    check_writable("--output", targets.summary_file)
    if targets.annotate_dir is not None:
        check_writable("--annotate", targets.annotate_dir, folder=True)
    if survey.videos:
        check_writable("--summary_dir", targets.summary_dir, folder=True)
    if checks.problem is not None:
        raise ValueError(checks.problem)
    return survey


__all__ = ["InputChecks", "OutputNames", "RunTargets", "SourceFiles", "Survey", "check_output_paths",
           "check_targets", "check_writable"]
