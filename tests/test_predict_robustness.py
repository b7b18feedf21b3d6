"""`grefel-hf predict` loses nothing and overwrites nothing (issue 33): inputs are never written, existing outputs
are kept unless --overwrite (or continued with --resume), every path problem is one line before any work, a run
stopped by SIGINT or SIGTERM keeps what it did and --resume finishes it exactly, odd file names never stop a run,
and CSV cells never start a spreadsheet formula. The signal tests send real signals to a real `grefel-hf predict`
process."""

import csv
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from inference_support import astronaut, save_tiny_model, write_astronaut_video
from PIL import Image

from grefel_hf.cli import main as cli_main
from grefel_hf.inference.interrupt import exit_status
from grefel_hf.inference.predict import PredictOptions
from grefel_hf.inference.writers import name_bytes, output_format


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("robust") / "model")


def _photo(path: Path, shift: int = 0, side: int = 160) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.roll(astronaut(), 7 * shift, axis=1)).resize((side, side)).save(path)
    return path


def _predict(model_dir, *argv) -> int:
    return cli_main(["predict", *map(str, argv), "--model", str(model_dir), "--no_progress"])


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _one_error(caplog, pattern: str) -> str:
    errors = _errors(caplog)
    assert len(errors) == 1 and "\n" not in errors[0] and re.search(pattern, errors[0]), errors
    assert "Traceback" not in caplog.text
    return errors[0]


# ----------------------------------------------------------------------------------------------------------------
# Inputs are never written over; an existing output is kept unless --overwrite or --resume
# ----------------------------------------------------------------------------------------------------------------

def _holiday(tmp_path):
    photos = tmp_path / "holiday"
    for i in range(2):
        _photo(photos / f"p{i}.jpg", i)
    return photos


INPUT_CASES = {
    "output-is-an-input": (lambda t: [t / "holiday" / "notes.csv", "--output", t / "holiday" / "notes.csv"],
                           r"--output .*notes\.csv is the input .*holiday/notes\.csv: writing it would destroy it"),
    "output-named-like-a-photo": (lambda t: [t / "holiday" / "p0.jpg", "--output", t / "holiday" / "p0.jpg",
                                             "--format", "csv"],
                                  r"--output .*p0\.jpg has the extension '\.jpg' but --format is csv"),
    "summary-file-is-an-input": (lambda t: [t / "holiday" / "r.summary.json", "--output", t / "holiday" / "r.csv"],
                                 r"the run summary .*r\.summary\.json is the input .*r\.summary\.json"),
    "annotate-into-the-input-folder": (lambda t: [t / "holiday", "--output", t / "r.csv", "--annotate",
                                                  t / "holiday"],
                                       r"--annotate .*holiday is inside the input folder .*holiday \(or is it\)"),
    "annotate-inside-the-input-folder": (lambda t: [t / "holiday", "--output", t / "r.csv", "--annotate",
                                                    t / "holiday" / "annotated"],
                                         r"--annotate .*holiday/annotated is inside the input folder .*holiday"),
    "annotated-copy-would-replace-an-input": (
        lambda t: [t / "holiday" / "p1.jpg", "--output", t / "r.csv", "--annotate", t / "holiday"],
        r"holiday/p1\.jpg, the annotated copy of .*holiday/p1\.jpg, would be written over the input "),
    "video-summaries-inside-the-input-folder": (
        lambda t: [t / "holiday", "--output", t / "holiday" / "r.csv"],
        r"--summary_dir \(by default beside --output\) .*holiday/r_videos is inside the input folder .*holiday"),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_no_command_writes_over_its_inputs(case, model_dir, tmp_path, caplog):
    photos = _holiday(tmp_path)
    (photos / "notes.csv").write_text("a,b\n1,2\n")
    (photos / "r.summary.json").write_text("{}")
    write_astronaut_video(photos / "clip.mp4", frames=2, side=96)
    before = {path: path.read_bytes() for path in photos.rglob("*")}
    assert _predict(model_dir, *INPUT_CASES[case][0](tmp_path)) == 2
    _one_error(caplog, INPUT_CASES[case][1])
    assert {path: path.read_bytes() for path in photos.rglob("*")} == before  # nothing written, nothing changed
    assert not (tmp_path / "r.csv").exists()


def test_an_existing_output_is_refused_unless_overwrite(model_dir, tmp_path, caplog):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "r.csv"
    out.write_text("my earlier results\n")
    assert _predict(model_dir, photo, "--output", out) == 2
    _one_error(caplog, r"r\.csv already exists; give --overwrite to replace it, or --resume to finish the run")
    assert out.read_text() == "my earlier results\n" and not (tmp_path / "r.summary.json").exists()
    assert _predict(model_dir, photo, "--output", out, "--overwrite") == 0
    assert out.read_text().startswith("source,frame,")


def test_an_existing_annotated_copy_is_refused_unless_overwrite(model_dir, tmp_path, caplog):
    photo = _photo(tmp_path / "in" / "a.png")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.png").write_bytes(b"an older copy")
    assert _predict(model_dir, photo, "--output", tmp_path / "r.csv", "--annotate", tmp_path / "ann") == 2
    _one_error(caplog, r"ann/a\.png already exists \(the annotated copy of .*in/a\.png\); give --overwrite")
    assert (tmp_path / "ann" / "a.png").read_bytes() == b"an older copy" and not (tmp_path / "r.csv").exists()
    assert _predict(model_dir, photo, "--output", tmp_path / "r.csv", "--annotate", tmp_path / "ann",
                    "--overwrite") == 0
    assert Image.open(tmp_path / "ann" / "a.png").size == (160, 160)


def test_overwrite_and_resume_exclude_each_other(tmp_path, capsys):
    with pytest.raises(ValueError, match="--overwrite and --resume exclude each other"):
        PredictOptions(inputs=["a.png"], output=str(tmp_path / "r.csv"), overwrite=True, resume=True)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "a.png", "--output", "r.csv", "--overwrite", "--resume"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("output, fmt, message", [
    ("rows.json", None, r"the rows are written as JSON Lines \(one JSON object per line\), not one JSON document; "
                        r"name the file rows\.jsonl"),
    ("rows.json", "jsonl", r"name the file rows\.jsonl"),
    ("rows.csv", "jsonl", r"has the extension '\.csv' but --format is jsonl; name it rows\.jsonl"),
    ("rows.jsonl", "csv", r"has the extension '\.jsonl' but --format is csv; name it rows\.csv"),
])
def test_the_output_extension_must_match_the_format(output, fmt, message, tmp_path, caplog):
    with pytest.raises(ValueError, match=message):
        output_format(output, fmt)
    argv = ["predict", "a.png", "--output", str(tmp_path / output), *(["--format", fmt] if fmt else [])]
    assert cli_main(argv) == 2
    _one_error(caplog, message)


# ----------------------------------------------------------------------------------------------------------------
# Every path problem is one line before any work
# ----------------------------------------------------------------------------------------------------------------

PATH_CASES = {
    "output-under-a-file": (["--output", "{file}/r.csv"], r"--output .*file/r\.csv: .*file is a file, so nothing"),
    "annotate-under-a-file": (["--output", "{tmp}/r.csv", "--annotate", "{file}/ann"],
                              r"--annotate .*file/ann: .*file is a file"),
    "summary-dir-under-a-file": (["--output", "{tmp}/r.csv", "--summary_dir", "{file}/videos"],
                                 r"--summary_dir .*file/videos: .*file is a file"),
    "summary-dir-is-a-file": (["--output", "{tmp}/r.csv", "--summary_dir", "{file}"],
                              r"--summary_dir .*file is an existing file; expected a folder"),
}


@pytest.mark.parametrize("case", list(PATH_CASES))
def test_path_problems_are_one_line_before_any_work(case, model_dir, tmp_path, caplog):
    _photo(tmp_path / "in" / "a.png")
    write_astronaut_video(tmp_path / "in" / "clip.mp4", frames=2, side=96)
    (tmp_path / "file").write_text("keep me")
    argv, message = PATH_CASES[case]
    argv = [arg.format(file=tmp_path / "file", tmp=tmp_path) for arg in argv]
    assert _predict(model_dir, tmp_path / "in", *argv) == 2
    _one_error(caplog, message)
    assert (tmp_path / "file").read_text() == "keep me" and not (tmp_path / "r.csv").exists()


def _without_root_powers() -> list[str]:
    """A command prefix under which folder permissions apply: none for a normal user; for root, setpriv dropping
    the capabilities that let root write anywhere (the test is skipped where that is not possible)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: read-only folders do not stop root")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


READ_ONLY_SCRIPT = """
import logging, sys
from grefel_hf.cli import main
logging.basicConfig(level=logging.ERROR)
for argv in {runs!r}:
    print("exit", main(argv), flush=True)
"""


def test_read_only_folders_are_one_line_before_any_work(model_dir, tmp_path):
    """Output, --annotate and --summary_dir in a read-only folder, and a missing parent that cannot be created;
    explain's --output_dir and export-onnx's --output there too."""
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.png")
    write_astronaut_video(tmp_path / "in" / "clip.mp4", frames=2, side=96)
    locked = tmp_path / "locked"
    locked.mkdir()
    base = ["predict", str(tmp_path / "in"), "--model", str(model_dir), "--no_progress"]
    runs = [[*base, "--output", str(locked / "r.csv")],
            [*base, "--output", str(locked / "new" / "deeper" / "r.csv")],
            [*base, "--output", str(tmp_path / "r1.csv"), "--annotate", str(locked)],
            [*base, "--output", str(tmp_path / "r2.csv"), "--summary_dir", str(locked / "videos")],
            ["explain", str(tmp_path / "in" / "a.png"), "--model", str(model_dir), "--output_dir", str(locked)],
            ["export-onnx", "--model", str(model_dir), "--output", str(locked / "model.onnx")]]
    locked.chmod(0o555)
    try:
        run = subprocess.run([*_without_root_powers(), sys.executable, "-c", READ_ONLY_SCRIPT.format(runs=runs)],
                             capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    assert run.stdout.split() == ["exit", "2"] * 6, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 6 and "Traceback" not in run.stderr, run.stderr
    options = ["--output", "--output", "--annotate", "--summary_dir", "--output_dir", "--output"]
    for line, option in zip(errors, options, strict=True):
        assert re.search(rf"{option} .*: cannot write into the folder .*locked \(read-only or no permission\)",
                         line), line
    assert not any(locked.iterdir()) and not list(tmp_path.glob("r*.csv"))


# ----------------------------------------------------------------------------------------------------------------
# Interruption and --resume: real signals to a real process; the resumed file equals an uninterrupted run's
# ----------------------------------------------------------------------------------------------------------------

def _batch_inputs(root: Path) -> Path:
    """24 small photos, one named like a formula, and a 50-frame video (sorted last)."""
    for i in range(23):
        _photo(root / f"p{i:02d}.jpg", i, side=128)
    _photo(root / "=SUM(A1).jpg", 30, side=128)
    write_astronaut_video(root / "zclip.mp4", frames=50, side=128)
    return root


RUN_OPTIONS = ["--batch_size", "1", "--num_workers", "1"]
"""Faces classified one at a time, so that probabilities do not depend on which faces share a batch and the
resumed file can be compared byte for byte (with larger batches they agree to float rounding)."""


@pytest.fixture(scope="module")
def batch(model_dir, tmp_path_factory):
    """The inputs and an uninterrupted run over them (rows, summary, annotated video)."""
    root = tmp_path_factory.mktemp("batch")
    inputs = _batch_inputs(root / "inputs")
    out = root / "reference" / "rows.csv"
    assert _predict(model_dir, inputs, "--output", out, "--annotate", root / "reference" / "ann", *RUN_OPTIONS) == 0
    return inputs, out


def _rows_of(path: Path, source_part: str) -> int:
    return path.read_text(errors="replace").count(source_part) if path.exists() else 0


def _interrupt(model_dir, inputs, out, signum, when) -> tuple[subprocess.CompletedProcess, float]:
    """Start `grefel-hf predict` as its own process group, wait until `when(out)`, send `signum` to the group (as
    Ctrl-C in a terminal or a scheduler does: the worker processes get it too) and wait for the process."""
    command = [sys.executable, "-m", "grefel_hf.cli", "predict", str(inputs), "--model", str(model_dir), "--output",
               str(out), "--annotate", str(out.parent / "ann"), "--no_progress", *RUN_OPTIONS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not when(out):
        assert process.poll() is None, f"the run ended before it could be interrupted:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    os.killpg(process.pid, signum)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), time.monotonic() - sent


def _same_summaries(resumed: Path, reference: Path) -> None:
    got, expected = (json.loads(path.with_name("rows.summary.json").read_text()) for path in (resumed, reference))
    for summary in (got, expected):
        for key in ("output", "resumed_rows", "rows_bytes"):
            summary.pop(key)
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize("signum, when", [
    (signal.SIGINT, lambda out: _rows_of(out, "/p") >= 4),  # among the photos (read by a worker process)
    (signal.SIGTERM, lambda out: _rows_of(out, "zclip.mp4") >= 5),  # in the middle of the video
], ids=["SIGINT-among-the-photos", "SIGTERM-inside-the-video"])
def test_a_signal_stops_the_run_cleanly_and_resume_finishes_it_exactly(signum, when, model_dir, batch, tmp_path,
                                                                       caplog):
    inputs, reference = batch
    out = tmp_path / "run" / "rows.csv"
    run, stop_seconds = _interrupt(model_dir, inputs, out, signum, when)
    name = signal.Signals(signum).name
    assert run.returncode == exit_status(signum) == {"SIGINT": 130, "SIGTERM": 143}[name], run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"stopped by {name}" in errors[0] and "--resume" in errors[0], run.stderr
    assert "Traceback" not in run.stderr and stop_seconds < 30
    summary = json.loads(out.with_name("rows.summary.json").read_text())
    assert summary["interrupted"] is True and summary["stopped_by"] == name
    written = out.read_bytes()
    assert written.endswith(b"\r\n") and reference.read_bytes().startswith(written)  # whole rows, nothing lost
    assert summary["rows_bytes"] == len(written)
    if signum == signal.SIGTERM:  # stopped inside the video: its summary and plot cover the frames done
        video = json.loads((out.parent / "rows_videos" / "zclip.summary.json").read_text())
        assert video["complete"] is False and video["frames_processed"] == _rows_of(out, "zclip.mp4")
        assert (out.parent / "rows_videos" / "zclip.emotions.png").stat().st_size > 0

    assert _predict(model_dir, inputs, "--output", out, "--annotate", out.parent / "ann", "--resume",
                    *RUN_OPTIONS) == 0
    assert out.read_bytes() == reference.read_bytes()
    _same_summaries(out, reference)
    resumed = json.loads(out.with_name("rows.summary.json").read_text())
    assert resumed["interrupted"] is False and resumed["resumed_rows"] == written.count(b"\r\n") - 1
    capture = cv2.VideoCapture(str(out.parent / "ann" / "zclip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 50  # the annotated video has the frames of both runs
    capture.release()
    assert sorted(p.name for p in (out.parent / "ann").iterdir()) == \
        sorted(p.name for p in (reference.parent / "ann").iterdir())


def _small_inputs(root: Path) -> Path:
    _photo(root / "a.jpg", 0)
    _photo(root / "b.jpg", 1)
    write_astronaut_video(root / "clip.mp4", frames=6, side=128)
    return root


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_hard_kill_drops_the_cut_row_and_ends_as_an_uninterrupted_run(fmt, model_dir, tmp_path):
    """A process killed outright leaves a cut last line and no summary: the resumed run does the last image or
    frame again. Cut points: inside the header, after the first photo, inside a row of the video, at a row's end."""
    inputs = _small_inputs(tmp_path / "in")
    reference = tmp_path / "reference" / f"rows.{fmt}"
    assert _predict(model_dir, inputs, "--output", reference, *RUN_OPTIONS) == 0
    whole = reference.read_bytes()
    lines = whole.splitlines(keepends=True)
    header = len(lines[0]) if fmt == "csv" else 0
    row = lambda n: header + sum(map(len, lines[1 if fmt == "csv" else 0:][:n]))  # noqa: E731 (the end of row n)
    for cut in sorted({max(header - 3, 1), row(1), row(4) + 40, row(5)}):
        out = tmp_path / f"cut{cut}" / f"rows.{fmt}"
        out.parent.mkdir()
        out.write_bytes(whole[:cut])
        assert _predict(model_dir, inputs, "--output", out, "--resume", *RUN_OPTIONS) == 0, cut
        assert out.read_bytes() == whole, cut
        _same_summaries(out, reference)


def test_resume_without_an_output_is_a_new_run_and_of_a_finished_run_changes_nothing(model_dir, tmp_path):
    inputs = _small_inputs(tmp_path / "in")
    out = tmp_path / "rows.csv"
    assert _predict(model_dir, inputs, "--output", out, "--resume", *RUN_OPTIONS) == 0
    whole = out.read_bytes()
    assert _predict(model_dir, inputs, "--output", out, "--resume", *RUN_OPTIONS) == 0
    assert out.read_bytes() == whole
    summary = json.loads((tmp_path / "rows.summary.json").read_text())
    assert summary["resumed_rows"] == whole.count(b"\r\n") - 1 and summary["frames"] == 6


def test_resume_refuses_an_output_another_command_wrote(model_dir, tmp_path, caplog):
    inputs = _small_inputs(tmp_path / "in")
    out = tmp_path / "rows.csv"
    assert _predict(model_dir, inputs, "--output", out) == 0
    caplog.clear()
    assert _predict(model_dir, inputs, "--output", out, "--resume", "--landmarks") == 2
    _one_error(caplog, r"--resume: .*rows\.csv has the columns \[.*\], but this run writes \[.*detection_score")
    caplog.clear()
    assert _predict(model_dir, inputs / "a.jpg", "--output", out, "--resume") == 2
    _one_error(caplog, r"--resume: .*rows\.csv holds rows for .*in/b\.jpg, which these inputs do not name")


# ----------------------------------------------------------------------------------------------------------------
# File names: never stop a run, never a formula in a spreadsheet
# ----------------------------------------------------------------------------------------------------------------

def _odd_name(folder: Path, raw: bytes) -> Path:
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))
    try:
        path.write_bytes(b"")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take file names that are not UTF-8")
    path.unlink()
    return path


def test_names_that_are_not_utf8_are_written_escaped_counted_and_stop_nothing(model_dir, tmp_path):
    inputs = tmp_path / "in"
    _photo(inputs / "normal.png")
    photo = _odd_name(inputs, b"caf\xe9 \\ 1.png")
    _photo(photo, 1)
    video = _odd_name(inputs, b"clip\xff.mp4")
    os.rename(write_astronaut_video(tmp_path / "plain.mp4", frames=3, side=128), video)  # OpenCV cannot take it
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"rows.{fmt}"
        assert _predict(model_dir, inputs, "--output", out, "--annotate", tmp_path / f"ann_{fmt}") == 0
        summary = json.loads(out.with_name("rows.summary.json").read_text())
        if fmt == "csv":
            with open(out, newline="", encoding="utf-8") as handle:
                sources = [row["source"] for row in csv.DictReader(handle)]
        else:
            sources = [json.loads(line)["source"] for line in out.read_text(encoding="utf-8").splitlines()]
        escaped_photo = str(inputs) + "/caf\\xe9 \\\\ 1.png"
        assert sources.count(escaped_photo) == 1 and sources.count(str(inputs / "normal.png")) == 1
        assert sources.count(str(inputs) + "/clip\\xff.mp4") == 3  # the video was read, all its frames
        assert name_bytes(escaped_photo) == os.fsencode(photo)  # nothing lost
        assert summary["escaped_names"] == 2 and summary["unreadable"] == [] and summary["frames"] == 3
        annotated = sorted(p.name for p in (tmp_path / f"ann_{fmt}").iterdir())
        assert annotated == ["caf\\xe9 \\\\ 1.png", "clip\\xff.mp4", "normal.png"]
        (tmp_path / "rows.summary.json").unlink()
        shutil.rmtree(tmp_path / "rows_videos")


def test_csv_cells_never_start_a_spreadsheet_formula(model_dir, tmp_path, monkeypatch):
    """OWASP's rule: text cells starting with = + - @ tab or carriage return get a leading quote; JSONL is left
    as it is (it is not opened by spreadsheets), and numbers stay numbers."""
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).png", "+1.png", "-1.png", "@SUM(1).png", "\tx.png", "\ry.png", "plain.png"]
    for i, name in enumerate(names):
        _photo(Path(name), i)
    for fmt in ("csv", "jsonl"):  # "--" ends the options: "-1.png" is a file
        assert cli_main(["predict", "--model", str(model_dir), "--output", f"{fmt}.{fmt}", "--no_progress", "--",
                         *names]) == 0
    with open("csv.csv", newline="", encoding="utf-8") as handle:
        cells = [row["source"] for row in csv.DictReader(handle)]
    assert cells == ["'" + name for name in names[:-1]] + ["plain.png"]
    assert [json.loads(line)["source"] for line in Path("jsonl.jsonl").read_text().splitlines()] == names


# ----------------------------------------------------------------------------------------------------------------
# Truncated videos are flagged
# ----------------------------------------------------------------------------------------------------------------

def _avi(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    photo = cv2.cvtColor(cv2.resize(astronaut(), (128, 128)), cv2.COLOR_RGB2BGR)
    for i in range(frames):
        writer.write(np.roll(photo, 2 * i, axis=1))
    writer.release()
    return path


def test_a_video_shorter_than_its_header_says_is_flagged(model_dir, tmp_path, caplog):
    inputs = tmp_path / "in"
    inputs.mkdir()
    whole = _avi(inputs / "whole.avi", 20).read_bytes()
    (inputs / "cut.avi").write_bytes(whole[: len(whole) // 2])  # its header still states 20 frames
    with caplog.at_level(logging.INFO):
        assert _predict(model_dir, inputs, "--output", tmp_path / "rows.csv", "--frame_stride", "3") == 0
    summary = json.loads((tmp_path / "rows.summary.json").read_text())
    videos = {Path(v["source"]).name: v for v in summary["video_summaries"]}
    assert videos["whole.avi"]["truncated"] is False and videos["whole.avi"]["frames_processed"] == 7
    cut = videos["cut.avi"]
    assert cut["truncated"] is True and cut["frames_stated"] == 20 and 0 < cut["frames_processed"] < 7
    assert summary["truncated_videos"] == [str(inputs / "cut.avi")]
    assert re.search(r"cut\.avi: only \d of the 7 frames to process could be read \(its header states 20 frames, "
                     r"--frame_stride 3\); the video seems cut short", caplog.text)
    assert "1 videos shorter than their header states" in caplog.text
    assert _predict(model_dir, inputs / "cut.avi", "--output", tmp_path / "few.csv", "--max_frames", "2") == 0
    (only,) = json.loads((tmp_path / "few.summary.json").read_text())["video_summaries"]
    assert only["truncated"] is False and only["frames_processed"] == 2  # what was asked for was read
