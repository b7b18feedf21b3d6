"""`grefel-hf predict` over several processes (issue 37): the shards, the parts and their merge, and real
`accelerate launch --num_processes 2` runs on the CPU (gloo) compared with a one-process run."""

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from accelerate import PartialState
from inference_support import astronaut, chelsea, save_tiny_model, write_astronaut_video
from PIL import Image

from grefel_hf.cli import main as cli_main
from grefel_hf.inference.parts import Parts, add_part_counts, concatenate_rows
from grefel_hf.inference.shards import Piece, Shard, video_units, work_items
from grefel_hf.inference.sources import Source, SourceList, iter_sources
from grefel_hf.inference.summaries import RunSummary
from grefel_hf.inference.targets import RunTargets

RUN_OPTIONS = ["--batch_size", "1", "--num_workers", "0", "--threads", "1", "--no_progress"]
"""One face per forward pass on one thread, so that no float depends on which faces share a batch or on how a
sum is split between threads: the files compare byte for byte (as the resume tests do; otherwise they agree to
float rounding)."""


# ----------------------------------------------------------------------------------------------------------------
# Shards and parts
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("units, count", [(0, 2), (1, 2), (7, 2), (8, 3), (100, 7)])
def test_shard_bounds_are_accelerates_split_between_processes(units, count):
    for index in range(count):
        state = SimpleNamespace(num_processes=count, process_index=index)
        with PartialState.split_between_processes(state, list(range(units))) as theirs:
            start, stop = Shard(index, count, units).bounds()
            assert list(range(start, stop)) == theirs


def _sources(*specs):
    return [Source(Path(name), "video" if name.endswith(".mp4") else "image") for name, _ in specs]


def test_work_items_share_photos_once_and_cut_long_videos_where_the_shards_meet():
    specs = [("a.jpg", 1), ("b.jpg", 1), ("long.mp4", 10), ("c.jpg", 1), ("short.mp4", 3)]
    units = dict(specs)
    units_of = lambda source: units[source.path.name]  # noqa: E731
    total = sum(units.values())  # 16: process 0 does units 0-7, process 1 units 8-15
    shards = [list(work_items(_sources(*specs), Shard(i, 2, total), units_of)) for i in range(2)]
    mine = [[(item.source.path.name, item.piece) for item in items if item.mine] for items in shards]
    assert mine == [[("a.jpg", Piece()), ("b.jpg", Piece()), ("long.mp4", Piece(0, 6))],
                    [("long.mp4", Piece(6, None)), ("c.jpg", Piece()), ("short.mp4", Piece())]]
    assert [[item.owner for item in items if item.mine] for items in shards] == [[True] * 3, [False, True, True]]
    whole = [[item.source.path.name for item in work_items(_sources(*specs), Shard(i, 2, total), units_of,
                                                           split_videos=False) if item.mine] for i in range(2)]
    assert whole == [["a.jpg", "b.jpg", "long.mp4"], ["c.jpg", "short.mp4"]]  # kept whole for --annotate
    assert [item.piece for item in work_items(_sources(*specs))] == [Piece()] * 5  # one process: all of it


def test_parts_are_joined_in_order_with_one_header_and_their_counts_added(tmp_path):
    parts = Parts.of(RunTargets.of(tmp_path / "rows.csv"), 2)
    assert parts.folder == tmp_path / "rows.parts"
    assert parts.part(1).rows == tmp_path / "rows.parts" / "part-00001-of-00002.csv"
    parts.folder.mkdir()
    parts.part(0).rows.write_bytes(b"source,label\r\na.jpg,happy\r\n")
    parts.part(1).rows.write_bytes(b"source,label\r\nb.jpg,sad\r\nc.jpg,no_face\r\n")
    concatenate_rows([part.rows for part in parts.all()], tmp_path / "rows.csv", "csv")
    assert (tmp_path / "rows.csv").read_bytes() == b"source,label\r\na.jpg,happy\r\nb.jpg,sad\r\nc.jpg,no_face\r\n"
    total = RunSummary(unreadable=[("listed.jpg", "a dangling link")])
    for images, unreadable in ((2, ["x.jpg"]), (1, ["y.jpg"])):
        part = RunSummary(images=images, faces=3, unreadable=[(name, "corrupt") for name in unreadable])
        add_part_counts(total, part.as_dict())
    assert (total.images, total.faces, total.interrupted) == (3, 6, False)
    assert [name for name, _ in total.unreadable] == ["listed.jpg", "x.jpg", "y.jpg"]
    add_part_counts(total, RunSummary(interrupted=True, stopped_by="SIGTERM").as_dict())
    assert (total.interrupted, total.stopped_by) == (True, "SIGTERM")


def test_parts_of_another_run_are_refused_before_any_work(tmp_path):
    output = tmp_path / "rows.csv"
    parts = Parts.of(RunTargets.of(output), 2)
    parts.check(output, overwrite=False, resume=False)  # nothing there: a new run
    parts.folder.mkdir()
    (parts.folder / "part-00000-of-00003.csv").write_text("source\r\n")
    with pytest.raises(ValueError, match=r"rows\.parts already exists \(the parts of an unfinished run"):
        parts.check(output, overwrite=False, resume=False)
    with pytest.raises(ValueError, match=r"holds the parts of a run over 3 processes; resume it with as many"):
        parts.check(output, overwrite=False, resume=True)
    parts.check(output, overwrite=True, resume=False)
    assert not parts.folder.exists()
    output.write_text("source\r\n")
    with pytest.raises(ValueError, match=r"--resume: .*rows\.csv has no parts to continue"):
        parts.check(output, overwrite=False, resume=True)


# ----------------------------------------------------------------------------------------------------------------
# accelerate launch --num_processes 2 on the CPU
# ----------------------------------------------------------------------------------------------------------------

def _photo(path: Path, shift: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.roll(astronaut(), 9 * shift, axis=1)).resize((224, 224)).save(path)


def _forty_mixed_files(root: Path) -> Path:
    """34 photos (a third in a subfolder), a photo without a face, a truncated JPEG, a text file named .jpg, a
    text file, a 16-frame video among the photos and a 3-frame one in the subfolder: 40 files."""
    for i in range(34):
        _photo(root / ("nested" if i % 3 == 0 else ".") / f"p{i:02d}.jpg", i)
    Image.fromarray(chelsea()).resize((150, 100)).save(root / "cat.png")
    data = (root / "p01.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.jpg").write_text("this is not an image")
    (root / "readme.txt").write_text("not an input")
    write_astronaut_video(root / "p07_clip.mp4", frames=16, side=160)
    write_astronaut_video(root / "nested" / "short.mp4", frames=3, side=96)
    assert sum(1 for path in root.rglob("*") if path.is_file()) == 40
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The inputs, a model, and a one-process run over them."""
    root = tmp_path_factory.mktemp("forty")
    inputs, model = _forty_mixed_files(root / "inputs"), save_tiny_model(root / "model")
    out = root / "one" / "rows.csv"
    assert cli_main(["predict", str(inputs), "--model", str(model), "--output", str(out), *RUN_OPTIONS]) == 0
    return inputs, model, out


def _launch(inputs, model, out, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               "-m", "grefel_hf.cli", "predict", str(inputs), "--model", str(model), "--output", str(out),
               *RUN_OPTIONS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _same_run(out: Path, reference: Path, resumed_rows: int = 0) -> None:
    """The same rows, byte for byte, the same run summary (every file counted once) and video summaries."""
    assert out.read_bytes() == reference.read_bytes()
    got, expected = (json.loads(path.with_name("rows.summary.json").read_text()) for path in (out, reference))
    assert got.pop("output") == str(out) and expected.pop("output") == str(reference)
    assert got.pop("resumed_rows") == resumed_rows and expected.pop("resumed_rows") == 0
    assert got == expected
    assert (got["images"], got["videos"], got["frames"], len(got["unreadable"]), len(got["unsupported"])) == \
        (35, 2, 19, 2, 1)
    videos = sorted(p.name for p in (reference.parent / "rows_videos").iterdir())
    assert sorted(p.name for p in (out.parent / "rows_videos").iterdir()) == videos
    for name in videos:
        if name.endswith(".json"):
            assert (out.parent / "rows_videos" / name).read_text() == \
                (reference.parent / "rows_videos" / name).read_text()
    assert not (out.parent / "rows.parts").exists()


def test_the_long_video_is_shared_out_by_frames(reference):
    """What the launches below exercise: the 16-frame video straddles the two processes' shards."""
    inputs = reference[0]
    units_of = partial(video_units, frame_stride=1, max_frames=None)
    total = sum(map(units_of, iter_sources([inputs], SourceList())))
    pieces = [[item.piece for item in work_items(iter_sources([inputs], SourceList()), Shard(i, 2, total),
                                                 units_of) if item.mine and item.source.path.name == "p07_clip.mp4"]
              for i in range(2)]
    assert total == 37 + 16 + 3 and pieces == [[Piece(0, 5)], [Piece(5, None)]]


@pytest.mark.slow
def test_two_processes_write_the_file_a_single_process_writes(reference, tmp_path):
    inputs, model, one = reference
    out = tmp_path / "rows.csv"
    run = _finish(_launch(inputs, model, out))
    assert run.returncode == 0, run.stderr[-3000:]
    _same_run(out, one)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [] and "Traceback" not in run.stderr


@pytest.mark.slow
def test_a_signal_stops_every_shard_and_resume_finishes_them_exactly(reference, tmp_path):
    """SIGTERM to the launcher's process group (as a scheduler sends it): each process stops at its next image
    or frame and keeps its part; the same command with --resume finishes each part and merges them."""
    inputs, model, one = reference
    out = tmp_path / "rows.csv"
    process = _launch(inputs, model, out)
    parts = [out.with_name("rows.parts") / f"part-0000{i}-of-00002.csv" for i in range(2)]
    deadline = time.monotonic() + 240
    while not all(part.exists() and part.read_bytes().count(b"\n") >= 4 for part in parts):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGTERM)
    run = _finish(process)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "stopped by SIGTERM" in errors[0] and "--resume" in errors[0], run.stderr[-3000:]
    assert not [line for line in run.stderr.splitlines() if line.startswith("  File") and "grefel_hf" in line]
    summary = json.loads(out.with_name("rows.summary.json").read_text())
    assert summary["interrupted"] is True and summary["output"] == str(out.with_name("rows.parts"))
    assert not out.exists()
    written = [part.read_bytes() for part in parts]
    assert all(rows.endswith(b"\r\n") for rows in written)  # whole rows only
    assert one.read_bytes().startswith(written[0])  # process 0's part is the start of the whole file

    resumed = _finish(_launch(inputs, model, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_run(out, one, resumed_rows=sum(rows.count(b"\r\n") - 1 for rows in written))


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (3, 2), (4, 3), (16, 4)])
def test_worker_defaults_follow_the_cores(cores, workers, monkeypatch):
    # On 2 cores OpenCV's detector runs on both in the main process but on one thread in a forked worker: no workers.
    from grefel_hf.inference.distributed import per_process_options
    from grefel_hf.inference.predict import PredictOptions, default_num_workers

    assert default_num_workers(cores) == workers
    monkeypatch.setattr(os, "cpu_count", lambda: 2 * cores)
    assert default_num_workers() == default_num_workers(2 * cores)
    shared = per_process_options(PredictOptions(inputs=["x.jpg"], output="rows.csv"), local_processes=2)
    assert (shared.num_workers, shared.threads) == (workers, max(1, cores - workers))
    given = per_process_options(PredictOptions(inputs=["x.jpg"], output="rows.csv", num_workers=1, threads=3), 2)
    assert (given.num_workers, given.threads) == (1, 3)
