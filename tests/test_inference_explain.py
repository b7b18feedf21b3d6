"""`grefel-hf explain`: nearest class anchors from GReFEL's geometry and saliency overlays."""

import json

import pytest
import torch
from inference_support import astronaut, chelsea, save_tiny_model
from PIL import Image

from grefel_hf import GReFELForImageClassification
from grefel_hf.cli import main as cli_main
from grefel_hf.inference.explain import explain_face, explain_image, grad_cam, nearest_anchors


def test_explain_a_photo_with_a_cnn_backbone_uses_grad_cam(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    assert cli_main(["explain", str(tmp_path / "a.png"), "--model", str(folder), "--output_dir",
                     str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "a_explanation.json").read_text())
    (face,) = data["faces"]
    assert data["no_face"] is False and face["saliency_method"] == "grad_cam"
    overlay = Image.open(face["saliency_file"])
    side = max(face["box"]["w"], face["box"]["h"])  # the square crop around the box (no margin by default)
    assert overlay.mode == "RGB" and abs(overlay.width - side) <= 2 and overlay.width == overlay.height
    assert len(face["nearest_anchors"]) == 5 and len(face["class_distances"]) == 7
    distances = [n["distance"] for n in face["nearest_anchors"]]
    assert distances == sorted(distances)
    assert distances[0] == pytest.approx(min(face["class_distances"].values()))


def test_nearest_anchors_are_the_rms_closest():
    anchors = torch.zeros(3, 2, 4)
    anchors[1, 1] = 1.0  # class 1, anchor 1 sits at the embedding
    anchors[2, 0] = 3.0
    neighbours, by_class = nearest_anchors(torch.ones(4), anchors, {0: "x", 1: "y", 2: "z"}, count=3)
    assert [(n.label, n.anchor) for n in neighbours[:1]] == [("y", 1)]
    assert neighbours[0].distance == pytest.approx(0.0, abs=1e-5)
    assert by_class == pytest.approx({"x": 1.0, "y": 0.0, "z": 1.0}, abs=1e-5)


def test_grad_cam_points_at_the_cell_whose_features_raise_the_score():
    feature_map = torch.zeros(1, 2, 4, 4)
    feature_map[0, 0, 1, 2] = 1.0
    feature_map.grad = torch.zeros_like(feature_map)
    feature_map.grad[0, 0] = 1.0  # channel 0 raises the score, channel 1 does not matter
    cam = grad_cam(feature_map, 8, 8)
    assert cam.shape == (8, 8) and cam.max() == pytest.approx(1.0)
    row, col = divmod(int(cam.argmax()), 8)
    assert row in (2, 3) and col in (4, 5)


def test_vit_backbone_falls_back_to_input_gradients_and_a_cat_has_no_face(tmp_path):
    folder = save_tiny_model(tmp_path / "vit", backbone="test_vit")
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    *_, saliency, method = explain_face(model, torch.randn(1, 3, 48, 48))
    assert method == "input_gradients" and saliency.shape == (48, 48) and saliency.max() == pytest.approx(1.0)
    Image.fromarray(chelsea()).save(tmp_path / "cat.png")
    report = explain_image(tmp_path / "cat.png", folder, tmp_path / "out")
    assert report.faces == [] and json.loads(report.json_file.read_text())["no_face"] is True
