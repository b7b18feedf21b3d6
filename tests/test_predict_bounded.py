"""What keeps `grefel-hf predict`'s memory flat however many inputs it has (issue 37): sets kept on disk, folders
sorted on disk past a size, inputs listed lazily. (The memory itself is measured by benchmarks/large_jobs.py.)"""

import os
from pathlib import Path

import pytest

from grefel_hf.inference import disk_sets
from grefel_hf.inference.annotate import UniqueNames
from grefel_hf.inference.disk_sets import DiskSet, sorted_by_bytes
from grefel_hf.inference.sources import SourceList, expand_inputs, iter_sources

NAMES = ["b.jpg", "a.jpg", "Z.png", "é.jpg", "a b.jpg", "a_1.jpg", "10.jpg", "9.jpg", "zz.mp4", "ü/x"]


def test_a_disk_set_is_a_set_with_values_and_marks_and_leaves_nothing_behind():
    with DiskSet() as seen:
        folder = seen._folder
        assert seen.add("a.jpg") and not seen.add("a.jpg") and seen.add("caf\udce9.jpg", "its value")
        assert "a.jpg" in seen and "b.jpg" not in seen and 3 not in seen and len(seen) == 2
        assert seen.get("caf\udce9.jpg") == "its value" and seen.get("a.jpg") is None
        assert seen.first_unmarked() == "a.jpg"
        assert seen.mark("a.jpg") and not seen.mark("b.jpg")
        assert seen.first_unmarked() == "caf\udce9.jpg"  # a name that is not UTF-8 comes back as it was
        seen.mark("caf\udce9.jpg")
        assert seen.first_unmarked() is None
        assert os.path.isdir(folder)
    assert not os.path.exists(folder)


@pytest.mark.parametrize("in_memory", [3, 10_000])
def test_names_sort_the_same_in_memory_and_on_disk(in_memory, monkeypatch):
    monkeypatch.setattr(disk_sets, "IN_MEMORY_NAMES", in_memory)
    items = [(name, str(i)) for i, name in enumerate(NAMES)]
    assert list(sorted_by_bytes(items)) == sorted(items)


def test_unique_names_on_disk_number_repeats():
    names = UniqueNames("out")
    names.reserve("rows.csv")
    assert [names.path(stem, ext).name for stem, ext in [("a", ".jpg"), ("a", ".jpg"), ("rows", ".csv"),
                                                         ("a", ".png")]] == ["a.jpg", "a_1.jpg", "rows_1.csv",
                                                                             "a.png"]
    names.close()


def test_a_big_folder_is_listed_in_the_same_order_and_lazily(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ["b.jpg", "a.jpg", "c.png", "sub/x.jpg", "sub/w.mp4", "notes.txt", "é.jpg", "10.jpg", "9.jpg"]:
        (folder / name).write_bytes(b"")
    expected = expand_inputs([folder])
    monkeypatch.setattr(disk_sets, "IN_MEMORY_NAMES", 2)  # every folder sorted on disk
    spilled = expand_inputs([folder])
    assert spilled.sources == expected.sources and spilled.unsupported == expected.unsupported
    assert [s.path.relative_to(folder).as_posix() for s in expected.sources] == \
        ["10.jpg", "9.jpg", "a.jpg", "b.jpg", "c.png", "sub/w.mp4", "sub/x.jpg", "é.jpg"]

    found = SourceList()
    sources = iter_sources([folder, tmp_path / "gone.jpg", folder / "a.jpg"], found)
    assert next(sources).path == folder / "10.jpg" and found.missing == []  # listed as it goes
    assert [s.path.name for s in sources][-1] == "é.jpg"  # a.jpg named again is not listed twice
    assert found.missing == [str(tmp_path / "gone.jpg")] and found.unsupported == [folder / "notes.txt"]
    assert isinstance(found.folders[0], Path)
