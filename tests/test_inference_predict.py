"""`grefel-hf predict`: the command on a mixed folder, and its pieces (inputs, batching, rows, summaries)."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from inference_support import ASTRONAUT_FACE, astronaut, chelsea, save_tiny_model, write_astronaut_video
from PIL import Image
from transformers import pipeline

from grefel_hf.cli import main as cli_main
from grefel_hf.face_detection_grefel import LANDMARK_NAMES, FaceBox, box_iou
from grefel_hf.inference.sources import expand_inputs
from grefel_hf.inference.summaries import VideoTimeline
from grefel_hf.inference.writers import (
    BASE_COLUMNS,
    NO_FACE,
    RowWriter,
    columns,
    output_format,
    prediction_rows,
)
from grefel_hf.pipeline_grefel import ImageFaces, PreparedImage, batched_chunks

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("predict") / "model")


def _mixed_inputs(root):
    """Good images, a truncated JPEG, a text file named .jpg, an unsupported file and a short video."""
    (root / "nested").mkdir(parents=True)
    Image.fromarray(astronaut()).save(root / "astronaut.jpg")
    Image.fromarray(chelsea()).save(root / "nested" / "chelsea.png")
    data = (root / "astronaut.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.jpg").write_text("this is not an image")
    (root / "readme.txt").write_text("not an input")
    write_astronaut_video(root / "clip.mp4", frames=6)
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_on_a_mixed_folder_writes_every_row_counts_failures_and_exits_0(folder, tmp_path):
    inputs = _mixed_inputs(tmp_path / "inputs")
    out = tmp_path / "out" / "results.csv"
    code = cli_main(["predict", str(inputs), "--model", str(folder), "--output", str(out), "--frame_stride", "2",
                     "--batch_size", "3", "--annotate", str(tmp_path / "annotated"), "--no_progress"])
    assert code == 0
    rows = _rows(out)
    assert list(rows[0]) == columns(LABELS)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"].rsplit("/", 1)[-1], []).append(row)
    assert set(by_source) == {"astronaut.jpg", "chelsea.png", "clip.mp4"}
    (face,) = by_source["astronaut.jpg"]
    assert face["frame"] == "" and face["label"] in LABELS
    box = FaceBox(*(int(face[k]) for k in ("box_x", "box_y", "box_w", "box_h")))
    assert box_iou(box, ASTRONAUT_FACE) >= 0.5
    probs = [float(face[f"prob_{label}"]) for label in LABELS]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5) and float(face["score"]) == pytest.approx(max(probs))
    (cat,) = by_source["chelsea.png"]
    assert cat["label"] == NO_FACE and all(cat[k] == "" for k in BASE_COLUMNS[2:6] + ("score", "reliability"))
    assert [row["frame"] for row in by_source["clip.mp4"]] == ["0", "2", "4"]
    assert all(row["label"] in LABELS for row in by_source["clip.mp4"])

    summary = json.loads((tmp_path / "out" / "results.summary.json").read_text())
    assert (summary["images"], summary["frames"], summary["videos"]) == (2, 3, 1)
    assert (summary["faces"], summary["without_face"]) == (4, 1)
    assert sorted(u["file"].rsplit("/", 1)[-1] for u in summary["unreadable"]) == ["corrupt.jpg", "notes.jpg"]
    assert [u.rsplit("/", 1)[-1] for u in summary["unsupported"]] == ["readme.txt"]
    video = json.loads((tmp_path / "out" / "results_videos" / "clip.summary.json").read_text())
    assert video["frames_processed"] == 3 and video["faces"] == 3
    assert sum(video["label_shares"].values()) == pytest.approx(1.0)
    assert video["dominant_label"] == max(video["label_shares"], key=video["label_shares"].get)
    assert (tmp_path / "out" / "results_videos" / "clip.emotions.png").stat().st_size > 0

    annotated = tmp_path / "annotated"
    assert Image.open(annotated / "astronaut.jpg").size == (512, 512)
    assert Image.open(annotated / "chelsea.png").size == (451, 300)
    capture = cv2.VideoCapture(str(annotated / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    capture.release()


def test_predict_with_nothing_readable_exits_2_and_jsonl_keeps_no_face_rows(folder, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    assert cli_main(["predict", str(bad), "--model", str(folder), "--output", str(tmp_path / "r.csv"),
                     "--no_progress"]) == 2
    Image.fromarray(chelsea()).save(tmp_path / "cat.png")
    out = tmp_path / "r2.jsonl"  # not r.jsonl: r.summary.json is the first run's, and is not written over
    assert cli_main(["predict", str(tmp_path / "*.png"), str(tmp_path / "missing.png"), "--model", str(folder),
                     "--output", str(out), "--max_frames", "1", "--no_progress"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["label"] == NO_FACE and row["frame"] is None and row["box_x"] is None and row["prob_happy"] is None
    assert json.loads((tmp_path / "r2.summary.json").read_text())["missing"] == [str(tmp_path / "missing.png")]


def _two_faces(tmp_path):
    """A photo with the astronaut twice, the right copy larger."""
    path = tmp_path / "two.png"
    photo = Image.fromarray(astronaut())
    canvas = Image.new("RGB", (1300, 700), (120, 120, 120))
    canvas.paste(photo.resize((400, 400)), (20, 150))
    canvas.paste(photo.resize((700, 700)), (560, 0))
    canvas.save(path)
    return path


def test_predict_pipeline_and_explain_give_the_same_faces_and_labels(folder, tmp_path):
    photos = [tmp_path / "a.png", _two_faces(tmp_path)]
    Image.fromarray(astronaut()).save(photos[0])
    out = tmp_path / "rows.csv"
    assert cli_main(["predict", *map(str, photos), "--model", str(folder), "--output", str(out), "--no_progress",
                     "--num_workers", "0"]) == 0
    rows = _rows(out)
    fer = pipeline("facial-expression-recognition", model=str(folder))
    expected = [(str(path), face) for path in photos for face in fer(str(path), top_k=None)]
    assert [(r["source"], [int(r[k]) for k in ("box_x", "box_y", "box_w", "box_h")], r["label"]) for r in rows] == \
        [(source, list(face["box"].values()), face["label"]) for source, face in expected]
    assert [float(r["score"]) for r in rows] == pytest.approx([face["score"] for _, face in expected], abs=1e-5)
    assert cli_main(["explain", str(photos[1]), "--model", str(folder), "--output_dir", str(tmp_path / "x")]) == 0
    explained = json.loads((tmp_path / "x" / "two_explanation.json").read_text())["faces"]
    assert [(f["box"], f["label"]) for f in explained] == [(face["box"], face["label"]) for _, face in expected[1:]]


def test_landmark_columns_max_faces_and_workers(folder, tmp_path):
    photo = _two_faces(tmp_path)
    runs = {}
    for name, extra in (("all", ["--landmarks"]), ("largest", ["--max_faces", "1"]),
                        ("workers", ["--landmarks", "--num_workers", "2", "--batch_size", "1"])):
        out = tmp_path / f"{name}.csv"
        assert cli_main(["predict", str(photo), "--model", str(folder), "--output", str(out), "--no_progress",
                         *extra]) == 0
        runs[name] = _rows(out)
    assert list(runs["all"][0]) == columns(LABELS, landmarks=True) and len(runs["all"]) == 2
    for row in runs["all"]:
        x, y, w, h = (int(row[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
        points = [(float(row[f"{name}_x"]), float(row[f"{name}_y"])) for name in LANDMARK_NAMES]
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in points)
        assert 0.6 <= float(row["detection_score"]) <= 1
    (largest,) = runs["largest"]
    assert list(largest) == columns(LABELS) and int(largest["box_w"]) == max(int(r["box_w"]) for r in runs["all"])
    for row, other in zip(runs["workers"], runs["all"], strict=True):  # workers and batches change only the speed
        assert {k: v for k, v in row.items() if not k.startswith(("prob_", "score", "reliability"))} == \
            {k: v for k, v in other.items() if not k.startswith(("prob_", "score", "reliability"))}
        assert [float(row[k]) for k in columns(LABELS)[7:]] == \
            pytest.approx([float(other[k]) for k in columns(LABELS)[7:]], abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--batch_size", "0"], "--batch_size"),
    (["--frame_stride", "0"], "--frame_stride"),
    (["--output", "x.parquet"], "cannot tell the format"),
    (["--tta_views", "9"], "TTA views"),
])
def test_bad_options_are_one_line_and_exit_2(folder, tmp_path, caplog, args, message):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    base = ["predict", str(tmp_path / "a.png"), "--model", str(folder), "--no_progress"]
    output = [] if "--output" in args else ["--output", str(tmp_path / "r.csv")]
    assert cli_main(base + output + args) == 2
    assert message in caplog.text and "Traceback" not in caplog.text


def test_inputs_expand_folders_recursively_globs_and_count_the_rest(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/b/y.PNG", "a/b/z.mp4", "a/b/notes.txt", "solo.weird"):
        (tmp_path / name).write_bytes(b"")
    found = expand_inputs([str(tmp_path / "a"), str(tmp_path / "a" / "*.jpg"), str(tmp_path / "solo.weird"),
                           str(tmp_path / "nothing*.jpg"), str(tmp_path / "gone.jpg")])
    assert [(s.path.relative_to(tmp_path).as_posix(), s.kind) for s in found.sources] == [
        ("a/b/y.PNG", "image"), ("a/b/z.mp4", "video"), ("a/x.jpg", "image"), ("solo.weird", "image")]
    assert [p.name for p in found.unsupported] == ["notes.txt"]
    assert found.missing == [str(tmp_path / "nothing*.jpg"), str(tmp_path / "gone.jpg")]


def test_chunks_batch_across_images_in_order_and_never_exceed_the_batch_size():
    counts = [2, 0, 3, 1, 0, 4]
    images, value = [], 0.0
    for key, count in enumerate(counts):
        pixels = torch.arange(value, value + count).reshape(count, 1, 1, 1).expand(count, 3, 2, 2).float()
        value += count
        faces = [FaceBox(i, 0, 1, 1) for i in range(count)]
        images.append(PreparedImage(key, 8, 8, faces, pixels if count else None))
    batches = list(batched_chunks(iter(images), batch_size=4))
    assert [len(b["is_last"]) for b in batches] == [4, 4, 4]  # 10 faces and 2 face-less chunks
    assert [b["pixel_values"].shape[0] for b in batches] == [3, 3, 4]  # face-less chunks send no pixels
    assert [info["key"] for b in batches for info in b["info"]] == [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 5, 5]
    assert [b["has_face"].tolist() for b in batches][0] == [True, True, False, True]
    flat = torch.cat([b["pixel_values"][:, 0, 0, 0] for b in batches])
    assert flat.tolist() == list(range(10))
    assert [b["is_last"] for b in batches][0] == [False, True, True, False]


def _faces(*probabilities):
    probs = np.array(probabilities, dtype=np.float32).reshape(len(probabilities), 3)
    boxes = [FaceBox(10 * i, 0, 10 + 10 * i, 10 + 10 * i) for i in range(len(probabilities))]
    return ImageFaces(None, 100, 100, boxes, probs, np.full(len(probabilities), 0.5, dtype=np.float32))


def test_rows_and_writers(tmp_path):
    labels = ["a", "b", "c"]
    rows = prediction_rows("x.jpg", 7, _faces([0.2, 0.7, 0.1]), labels) + prediction_rows("y.jpg", None, _faces(),
                                                                                          labels)
    assert rows[0] == {"source": "x.jpg", "frame": 7, "box_x": 0, "box_y": 0, "box_w": 10, "box_h": 10,
                       "label": "b", "score": pytest.approx(0.7), "reliability": 0.5, "prob_a": pytest.approx(0.2),
                       "prob_b": pytest.approx(0.7), "prob_c": pytest.approx(0.1)}
    assert rows[1]["label"] == NO_FACE and rows[1]["box_x"] is None
    for name in ("rows.csv", "rows.jsonl"):
        with RowWriter(tmp_path / name, labels) as writer:
            writer.write(rows)
        assert writer.rows_written == 2
    text = (tmp_path / "rows.csv").read_text().splitlines()
    assert text[0] == ",".join(columns(labels)) and text[2] == "y.jpg,,,,,,no_face,,,,,"
    second = json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[1])
    assert list(second) == columns(labels) and second["score"] is None
    assert output_format("r.JSONL") == "jsonl" and output_format("rows", "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        output_format("r.csv", "xml")


def test_video_timeline_summary_follows_the_main_face(tmp_path):
    timeline = VideoTimeline("clip.mp4", fps=10.0, labels=["a", "b", "c"])
    timeline.add(0, _faces([0.6, 0.3, 0.1], [0.1, 0.1, 0.8]))  # the second face is larger: the main face
    timeline.add(5, _faces())
    timeline.add(10, _faces([0.2, 0.2, 0.6]))
    summary = timeline.summary()
    assert timeline.times == [0.0, 0.5, 1.0]
    assert (summary.frames_processed, summary.frames_without_face, summary.faces) == (3, 1, 3)
    assert summary.label_shares == pytest.approx({"a": 1 / 3, "b": 0.0, "c": 2 / 3})
    assert summary.dominant_label == "c"
    assert summary.mean_probabilities == pytest.approx({"a": 0.15, "b": 0.15, "c": 0.7})
    assert timeline.plot(tmp_path / "t.png").stat().st_size > 0
    empty = VideoTimeline("v.mp4", 25.0, ["a", "b"])
    empty.add(0, ImageFaces(None, 5, 5, [], np.zeros((0, 2)), np.zeros(0)))
    assert empty.summary().dominant_label is None and empty.summary().mean_probabilities is None
