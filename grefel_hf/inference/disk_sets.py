"""Sets of names kept on disk, so that what a run remembers per input does not grow its memory.

A `grefel-hf predict` run over a million files remembers, per input, its real path (so that a file named twice is
done once), the names handed out to annotated copies and video summaries, and on `--resume` the inputs already
done. `DiskSet` keeps them in an SQLite file in a temporary folder (under `TMPDIR`), with a page cache of a few
megabytes, and removes the folder when closed (or when the object is collected). `sorted_by_bytes` sorts the names
of a folder of any size the same way, holding at most `IN_MEMORY_NAMES` of them.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Iterator

CACHE_KIB = 4096
"""SQLite's page cache per set, in KiB: what a set holds in memory however many names it keeps."""

IN_MEMORY_NAMES = 10_000
"""Names `sorted_by_bytes` sorts in memory; beyond, it sorts them on disk."""


def _blob(text: str) -> bytes:
    """Text as stored: UTF-8, with the undecodable bytes of a file name (surrogate escapes) kept as they were."""
    return text.encode("utf-8", "surrogateescape")


def _text(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogateescape")


def _close(connection: sqlite3.Connection, folder: str) -> None:
    connection.close()
    shutil.rmtree(folder, ignore_errors=True)


class DiskSet:
    """A set of strings (each with an optional text value, and a mark) in a temporary SQLite file.

    `add(key)` says whether the key is new; `key in s`, `len(s)`; `get(key)` its value; `mark(key)` and
    `first_unmarked()` tell which keys some later pass met (the smallest key it did not meet)."""

    def __init__(self):
        self._folder = tempfile.mkdtemp(prefix="grefel-set-")
        self._db = sqlite3.connect(f"{self._folder}/set.sqlite", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KIB}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE keys (key BLOB PRIMARY KEY, value BLOB, marked INTEGER DEFAULT 0) "
                         "WITHOUT ROWID")
        self._db.execute("BEGIN")
        self._size = 0
        self._finalizer = weakref.finalize(self, _close, self._db, self._folder)

    def add(self, key: str, value: str | None = None) -> bool:
        """Add `key` (with `value`, when it is new); True when it was not there yet."""
        cursor = self._db.execute("INSERT OR IGNORE INTO keys (key, value) VALUES (?, ?)",
                                  (_blob(key), None if value is None else _blob(value)))
        added = cursor.rowcount == 1
        self._size += added
        return added

    def get(self, key: str) -> str | None:
        """The value stored with `key` (None: no such key, or no value)."""
        row = self._db.execute("SELECT value FROM keys WHERE key = ?", (_blob(key),)).fetchone()
        return None if row is None or row[0] is None else _text(row[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._db.execute("SELECT 1 FROM keys WHERE key = ?", (_blob(key),)).fetchone() is not None

    def __len__(self) -> int:
        return self._size

    def mark(self, key: str) -> bool:
        """Mark `key`; True when it is in the set."""
        return self._db.execute("UPDATE keys SET marked = 1 WHERE key = ?", (_blob(key),)).rowcount == 1

    def sorted_items(self) -> Iterator[tuple[str, str | None]]:
        """(key, value) pairs in the order of the keys' bytes, read as they are given."""
        for key, value in self._db.execute("SELECT key, value FROM keys ORDER BY key"):
            yield _text(key), None if value is None else _text(value)

    def first_unmarked(self) -> str | None:
        """The smallest key not marked (None: every key is marked)."""
        row = self._db.execute("SELECT key FROM keys WHERE marked = 0 ORDER BY key LIMIT 1").fetchone()
        return None if row is None else _text(row[0])

    def close(self) -> None:
        """Remove the file (the set is empty and unusable afterwards)."""
        self._finalizer()

    def __enter__(self) -> DiskSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _key(item: tuple[str, str | None]) -> bytes:
    return _blob(item[0])


def sorted_by_bytes(items: Iterable[tuple[str, str | None]]) -> Iterator[tuple[str, str | None]]:
    """(name, value) pairs with distinct names, sorted by the names' bytes (for names in UTF-8, the order of
    `sorted`); in memory up to `IN_MEMORY_NAMES`, past that on disk, so any number of them take little memory."""
    kept: list[tuple[str, str | None]] = []
    spill: DiskSet | None = None
    for item in items:
        if spill is not None:
            spill.add(*item)
            continue
        kept.append(item)
        if len(kept) > IN_MEMORY_NAMES:
            spill = DiskSet()
            for name, value in kept:
                spill.add(name, value)
            kept = []
    if spill is None:
        yield from sorted(kept, key=_key)
        return
    with spill:
        yield from spill.sorted_items()


__all__ = ["CACHE_KIB", "IN_MEMORY_NAMES", "DiskSet", "sorted_by_bytes"]
