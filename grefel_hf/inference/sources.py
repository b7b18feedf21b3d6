"""Which files the INPUT arguments of `grefel-hf predict` name: image files, folders (recursive), globs, videos.

Folders are searched in sorted order (of the names' bytes), following symbolic links to folders but never around a loop; `**` in a glob
does not follow them. Dangling links, link loops and entries that are not regular files (pipes, sockets, devices)
are skipped with the reason, never silently.

`iter_sources` lists lazily: a folder's names are sorted in memory up to 10,000 of them and on disk beyond
(`sorted_by_bytes`), and the real paths met (so that a file named twice is done once) are kept on disk
(`DiskSet`), so listing a million files, in one folder or many, takes no more memory than listing a thousand. `expand_inputs` keeps the whole list, for callers that want it.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..image_processing_grefel import link_problem
from .disk_sets import DiskSet, sorted_by_bytes

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                              ".pbm", ".pnm", ".tga", ".jp2", ".jfif"})
"""Files read as images when found in a folder."""

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp"})
"""Files read as videos (with OpenCV)."""


@dataclass(frozen=True)
class Source:
    """One file to process: `kind` is "image" or "video"."""

    path: Path
    kind: str


@dataclass
class SourceList:
    """What the INPUT arguments named.

    Args:
        sources: the files to process, in argument order (folders and globs sorted), each once (filled by
            `expand_inputs` only: `iter_sources` yields them instead).
        unsupported: files inside folders (or matched by globs) that are neither images nor videos by extension.
        missing: arguments that named no existing file and matched nothing.
        skipped: (path, reason) of what cannot be read as a file: dangling symbolic links, link loops, pipes,
            sockets, devices, folders that cannot be listed.
        realpaths: the resolved path of every file in `sources` (`expand_inputs` only).
        folders: the folders searched (named, or matched by a glob), where a run must not write either; each is
            added before its files are listed.
    """

    sources: list[Source] = field(default_factory=list)
    unsupported: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    realpaths: set[str] = field(default_factory=set)
    folders: list[Path] = field(default_factory=list)
    _skipped_paths: set[str] = field(default_factory=set, repr=False)

    def skip(self, path: Path, reason: str) -> None:
        """Count `path` as skipped, once however many arguments lead to it."""
        key = os.path.abspath(path)
        if key not in self._skipped_paths:
            self._skipped_paths.add(key)
            self.skipped.append((path, reason))


def kind_of(path: Path, explicit: bool) -> str | None:
    """"video", "image", or None (unsupported). A file named explicitly with an unknown extension is tried as an
    image (PIL reads images by their content); inside folders only known extensions count."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS or explicit:
        return "image"
    return None


NOT_A_FILE = "is not a regular file (a pipe, socket or device)"


def _not_a_file(path: Path) -> str:
    return link_problem(path) or NOT_A_FILE


def folder_files(folder: Path, skip: Callable[[Path, str], None]) -> Iterator[Path]:
    """The files under `folder`, in the order sorted paths have, following symbolic links to folders except
    around a loop; what is not a readable file is passed to `skip(path, reason)`."""
    yield from _walk(Path(folder), (os.path.realpath(folder),), skip)


def _walk(folder: Path, ancestors: tuple[str, ...], skip: Callable[[Path, str], None]) -> Iterator[Path]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted_by_bytes((entry.name, _entry_kind(entry)) for entry in listing)
            first = next(entries, None)  # the folder is read (and its names sorted) here
    except OSError as err:
        skip(folder, f"cannot be listed: {err.strerror or err}")
        return
    for name, kind in itertools.chain([first] if first else [], entries):
        path = folder / name
        if kind == "folder":
            real = os.path.realpath(path)
            if real in ancestors:
                skip(path, f"is a symbolic link loop: it leads back to {real}")
            else:
                yield from _walk(path, (*ancestors, real), skip)
        elif kind == "file":
            yield path
        else:
            skip(path, _not_a_file(path))


def _entry_kind(entry: os.DirEntry) -> str | None:
    """"folder" or "file" (following symbolic links), or None for anything else, a link loop included."""
    try:
        return "folder" if entry.is_dir() else "file" if entry.is_file() else None
    except OSError:
        return None


def _glob(pattern: str) -> list[Path]:
    """Sorted matches of a glob pattern; `**` recurses without following symbolic links to folders."""
    if "**" not in pattern:
        return sorted(map(Path, glob.glob(pattern)))
    parts = Path(pattern).parts
    literal = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    base = Path(*parts[:literal]) if literal else Path(".")
    return sorted(base.glob(str(Path(*parts[literal:]))))


class _Listing:
    """One pass over the INPUT arguments: what is not a source goes to `found`, the real path of every file met to
    `seen` (value: the source's own path, for sources)."""

    def __init__(self, found: SourceList, seen: DiskSet):
        self.found, self.seen = found, seen

    def named(self, text: str) -> Iterator[Source]:
        """The sources one argument names: a file, a folder's files or a glob's matches."""
        if os.path.lexists(text):
            yield from self.path(Path(text), explicit=True)
        elif glob.has_magic(text):
            matches = _glob(text)
            if not matches:
                self.found.missing.append(text)
            for match in matches:
                yield from self.path(match, explicit=False)
        else:
            self.found.missing.append(text)

    def path(self, path: Path, explicit: bool) -> Iterator[Source]:
        """A named or matched path: a folder's files, a file, or what cannot be read, skipped with the reason."""
        if path.is_dir():
            self.found.folders.append(path)
            for file in folder_files(path, self.found.skip):
                yield from self.file(file, explicit=False)
        elif path.is_file():
            yield from self.file(path, explicit=explicit)
        else:
            self.found.skip(path, _not_a_file(path))

    def file(self, path: Path, explicit: bool) -> Iterator[Source]:
        kind = kind_of(path, explicit)
        if not self.seen.add(os.path.realpath(path), None if kind is None else os.fspath(path)):
            return
        if kind is None:
            self.found.unsupported.append(path)
        else:
            yield Source(path, kind)


def iter_sources(inputs: Sequence[str | os.PathLike], found: SourceList,
                 seen: DiskSet | None = None) -> Iterator[Source]:
    """The files named by `inputs` (files, folders searched recursively, glob patterns where `**` recurses), in
    order and each once, listed lazily; unsupported files, arguments naming nothing and what cannot be read go to
    `found`. `seen` keeps the real path of every file met, with the source's path as its value for sources (a
    fresh `DiskSet`, closed at the end, when None)."""
    own = seen is None
    seen = DiskSet() if own else seen
    try:
        listing = _Listing(found, seen)
        for raw in inputs:
            yield from listing.named(os.fspath(raw))
    finally:
        if own:
            seen.close()


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> SourceList:
    """The files named by `inputs` (see `iter_sources`), all kept in `sources`, with their real paths."""
    result = SourceList()
    for source in iter_sources(inputs, result):
        result.sources.append(source)
        result.realpaths.add(os.path.realpath(source.path))
    return result


__all__ = ["IMAGE_EXTENSIONS", "NOT_A_FILE", "VIDEO_EXTENSIONS", "Source", "SourceList", "expand_inputs",
           "folder_files", "iter_sources", "kind_of"]
