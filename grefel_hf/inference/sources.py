"""Which files the INPUT arguments of `grefel-hf predict` name: image files, folders (recursive), globs, videos."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
        sources: the files to process, in argument order (folders and globs sorted), each once.
        unsupported: files inside folders (or matched by globs) that are neither images nor videos by extension.
        missing: arguments that named no existing file and matched nothing.
    """

    sources: list[Source] = field(default_factory=list)
    unsupported: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def kind_of(path: Path, explicit: bool) -> str | None:
    """"video", "image", or None (unsupported). A file named explicitly with an unknown extension is tried as an
    image (PIL reads images by their content); inside folders only known extensions count."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS or explicit:
        return "image"
    return None


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _add(result: SourceList, seen: set, path: Path, explicit: bool) -> None:
    key = os.path.realpath(path)
    if key in seen:
        return
    seen.add(key)
    kind = kind_of(path, explicit)
    if kind is None:
        result.unsupported.append(path)
    else:
        result.sources.append(Source(path, kind))


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> SourceList:
    """The files named by `inputs`: files, folders (searched recursively) and glob patterns (`**` recurses)."""
    result, seen = SourceList(), set()
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            for file in _folder_files(path):
                _add(result, seen, file, explicit=False)
        elif path.is_file():
            _add(result, seen, path, explicit=True)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                result.missing.append(text)
            for match in map(Path, matches):
                for file in _folder_files(match) if match.is_dir() else [match]:
                    _add(result, seen, file, explicit=False)
        else:
            result.missing.append(text)
    return result


__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Source", "SourceList", "expand_inputs", "kind_of"]
