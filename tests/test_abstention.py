"""Abstention (issue 34): `min_score` / `min_reliability` turn faces into `uncertain` answers in the pipeline, the
rows of `grefel-hf predict` (probabilities kept), its annotated copies and its run and video summaries."""

import csv
import json

import numpy as np
import pytest
from inference_support import astronaut, save_tiny_model, write_astronaut_video
from PIL import Image

from grefel_hf.cli import main as cli_main
from grefel_hf.face_detection_grefel import FaceBox
from grefel_hf.inference.annotate import BOX_COLOUR, UNCERTAIN_COLOUR, draw_faces
from grefel_hf.inference.backends import face_pipeline, load_model
from grefel_hf.inference.summaries import VideoTimeline
from grefel_hf.inference.writers import prediction_rows
from grefel_hf.pipeline_grefel import UNCERTAIN, ImageFaces, abstentions

LABELS = ["a", "b", "c"]


def _faces(probabilities, reliability, uncertain=None):
    probs = np.array(probabilities, dtype=np.float32)
    boxes = [FaceBox(30 * i, 20, 20, 20) for i in range(len(probs))]
    return ImageFaces(None, 100, 100, boxes, probs, np.array(reliability, dtype=np.float32), uncertain=uncertain)


def test_a_face_is_uncertain_when_its_score_or_its_reliability_is_below_the_threshold():
    probs, reliability = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.8, 0.1, 0.1]]), np.array([0.9, 0.9, 0.2])
    assert abstentions(probs, reliability) is None
    assert abstentions(probs, reliability, min_score=0.5).tolist() == [False, True, False]
    assert abstentions(probs, reliability, min_reliability=0.5).tolist() == [False, False, True]
    assert abstentions(probs, reliability, 0.5, 0.5).tolist() == [False, True, True]
    assert abstentions(probs, reliability, min_score=0.4).tolist() == [False, False, False]  # at the threshold: kept
    result = _faces(probs, reliability, abstentions(probs, reliability, 0.5, 0.5))
    assert result.face_labels(LABELS) == ["a", UNCERTAIN, UNCERTAIN]


def test_uncertain_rows_keep_their_scores_and_probabilities():
    result = _faces([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], [0.9, 0.6], np.array([False, True]))
    rows = prediction_rows("x.jpg", None, result, LABELS)
    assert [row["label"] for row in rows] == ["a", UNCERTAIN]
    assert rows[1]["score"] == pytest.approx(0.4) and rows[1]["reliability"] == pytest.approx(0.6)
    assert [rows[1][f"prob_{label}"] for label in LABELS] == pytest.approx([0.4, 0.35, 0.25])


def test_a_video_summary_counts_uncertain_faces_apart():
    timeline = VideoTimeline("clip.mp4", 10.0, LABELS)
    timeline.add(0, _faces([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], [0.9, 0.9], np.array([False, True])))
    timeline.add(1, _faces([[0.5, 0.3, 0.2]], [0.9], np.array([True])))
    timeline.add(2, _faces([[0.1, 0.8, 0.1]], [0.9], np.array([False])))
    summary = timeline.summary()
    assert (summary.faces, summary.uncertain_faces) == (4, 2) and summary.uncertain_share == pytest.approx(0.5)
    assert summary.label_shares == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.0})
    assert summary.dominant_label == "a"  # a tie between a and b goes to the first label; uncertain never wins
    unsure = VideoTimeline("all.mp4", 10.0, LABELS)
    unsure.add(0, _faces([[0.4, 0.3, 0.3]], [0.9], np.array([True])))
    assert unsure.summary().dominant_label is None and unsure.summary().uncertain_faces == 1


def test_an_annotated_uncertain_face_is_grey():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    drawn = draw_faces(image, _faces([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], [0.9, 0.9], np.array([False, True])),
                       LABELS)
    assert tuple(drawn[39, 10]) == BOX_COLOUR and tuple(drawn[39, 40]) == UNCERTAIN_COLOUR  # the boxes' bottom edges


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("abstention") / "model")


def test_the_pipeline_labels_faces_below_the_thresholds_uncertain_and_keeps_their_scores(folder):
    pipe = face_pipeline(load_model(folder), face_detector="none")
    images = [np.ascontiguousarray(image) for image in (astronaut(), astronaut()[::-1], astronaut()[:, ::-1],
                                                         astronaut()[100:400, 50:450])]
    plain = [faces[0] for faces in pipe(images, top_k=None)]
    scores = sorted(face["score"] for face in plain)
    threshold = (scores[1] + scores[2]) / 2  # two faces below, two above
    abstaining = [faces[0] for faces in pipe(images, top_k=None, min_score=threshold)]
    for before, after in zip(plain, abstaining, strict=True):
        assert after["label"] == (UNCERTAIN if before["score"] < threshold else before["label"])
        assert after["score"] == before["score"] and after["top_k"] == before["top_k"]
        assert after["reliability"] == before["reliability"]
    assert [face["label"] for face in abstaining].count(UNCERTAIN) == 2
    reliable = [faces[0] for faces in pipe(images, min_reliability=1.0)]
    assert all(face["label"] == UNCERTAIN for face in reliable)
    with pytest.raises(ValueError, match=r"min_score must be a number in \[0, 1\]"):
        pipe(images[0], min_score=1.5)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_uncertain_rows_with_their_probabilities_and_counts_them(folder, tmp_path):
    Image.fromarray(astronaut()).save(tmp_path / "astronaut.png")
    write_astronaut_video(tmp_path / "clip.mp4", frames=4)
    inputs = [str(tmp_path / "astronaut.png"), str(tmp_path / "clip.mp4")]
    common = ["--model", str(folder), "--face_detector", "none", "--no_progress"]
    assert cli_main(["predict", *inputs, "--output", str(tmp_path / "plain.csv"), *common]) == 0
    plain = _rows(tmp_path / "plain.csv")
    threshold = float(np.median([float(row["score"]) for row in plain]))
    assert cli_main(["predict", *inputs, "--output", str(tmp_path / "unsure.csv"), "--min_score", str(threshold),
                     "--summary_dir", str(tmp_path / "videos"), *common]) == 0
    unsure = _rows(tmp_path / "unsure.csv")
    below = [float(row["score"]) < threshold for row in plain]
    assert 0 < sum(below) < len(plain)
    for before, after, low in zip(plain, unsure, below, strict=True):
        assert after["label"] == (UNCERTAIN if low else before["label"])
        assert {k: v for k, v in after.items() if k != "label"} == {k: v for k, v in before.items() if k != "label"}
    run = json.loads((tmp_path / "unsure.summary.json").read_text())
    assert run["uncertain"] == sum(below) and run["faces"] == len(plain)
    video = json.loads((tmp_path / "videos" / "clip.summary.json").read_text())
    assert video["uncertain_faces"] == sum(low for row, low in zip(plain, below, strict=True) if row["frame"])
    assert sum(video["label_shares"].values()) + video["uncertain_share"] == pytest.approx(1.0)
    assert cli_main(["predict", *inputs, "--output", str(tmp_path / "bad.csv"), "--min_reliability", "2",
                     *common]) == 2
