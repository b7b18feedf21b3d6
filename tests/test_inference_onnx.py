"""`grefel-hf export-onnx`: dynamic batch, parity with PyTorch, and `predict --backend onnx`."""

import csv
import logging
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from inference_support import astronaut, chelsea, save_tiny_model, write_astronaut_video
from PIL import Image

from grefel_hf import GReFELForImageClassification, GReFELImageProcessor
from grefel_hf.cli import main as cli_main
from grefel_hf.inference.backends import OnnxModelForImageClassification
from grefel_hf.inference.onnx_export import export_onnx, real_format_images


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    folder = save_tiny_model(root / "model", reliability_variant="enhanced")
    return folder, export_onnx(folder, root / "model.onnx")


def test_export_passes_its_parity_check_at_several_batch_sizes(exported):
    _, report = exported
    assert report.path.is_file()
    assert {check.batch_size for check in report.checks} == {1, 3, 4}
    assert report.max_abs_diff < 1e-4


def test_onnx_matches_pytorch_on_random_and_real_format_inputs(exported):
    folder, report = exported
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    processor = GReFELImageProcessor.from_pretrained(folder)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    photo = astronaut()
    batches = [torch.randn(5, 3, 48, 48, generator=torch.Generator().manual_seed(3)),
               processor([photo, chelsea(), photo[150:300, 150:300], *real_format_images(64)],
                         return_tensors="pt")["pixel_values"]]
    for pixels in batches:
        with torch.no_grad():
            expected = model(pixel_values=pixels)
        probs, reliability = session.run(None, {"pixel_values": pixels.numpy()})
        assert probs.shape == (len(pixels), 7)
        assert np.abs(probs - expected.logits.exp().numpy()).max() < 1e-4
        assert np.abs(reliability - expected.reliability.numpy()).max() < 1e-4


def test_export_command_keeps_an_existing_file_unless_overwrite_and_a_failed_export_keeps_it(exported, tmp_path,
                                                                                             caplog):
    folder, _ = exported
    output = tmp_path / "model.onnx"
    output.write_bytes(b"an earlier export")
    base = ["export-onnx", "--model", str(folder)]
    for argv, message in ((["--output", str(output)], r"model\.onnx already exists; give --overwrite to replace it"),
                          (["--output", str(tmp_path / "model.bin")], r"model\.bin: expected a \.onnx file name"),
                          (["--output", str(output), "--overwrite", "--tolerance", "0"], "failed its parity check")):
        caplog.clear()
        assert cli_main([*base, *argv]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and re.search(message, errors[0]), errors
        assert output.read_bytes() == b"an earlier export" and sorted(tmp_path.iterdir()) == [output]
    assert cli_main([*base, "--output", str(output), "--overwrite"]) == 0
    assert OnnxModelForImageClassification.from_onnx(output).config.num_labels == 7


def _labels(path):
    with open(path, newline="") as f:
        return [(row["source"], row["frame"], row["label"], row["box_x"]) for row in csv.DictReader(f)]


def test_predict_with_the_onnx_backend_gives_the_same_labels(exported, tmp_path):
    folder, report = exported
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    Image.fromarray(chelsea()).save(tmp_path / "c.png")
    write_astronaut_video(tmp_path / "v.mp4", frames=3)
    common = [str(tmp_path / "a.png"), str(tmp_path / "c.png"), str(tmp_path / "v.mp4"), "--no_progress"]
    assert cli_main(["predict", *common, "--model", str(folder), "--output", str(tmp_path / "t.csv")]) == 0
    assert cli_main(["predict", *common, "--model", str(report.path), "--backend", "onnx",
                     "--output", str(tmp_path / "o.csv")]) == 0
    torch_rows, onnx_rows = _labels(tmp_path / "t.csv"), _labels(tmp_path / "o.csv")
    assert torch_rows == onnx_rows and len(torch_rows) == 5


def test_export_command_fails_above_the_tolerance_and_removes_the_file(exported, tmp_path, caplog):
    folder, _ = exported
    output = tmp_path / "strict.onnx"
    assert cli_main(["export-onnx", "--model", str(folder), "--output", str(output), "--tolerance", "0"]) == 2
    assert "failed its parity check" in caplog.text and not output.exists()
    assert list(tmp_path.iterdir()) == []  # nor a partial file
    assert cli_main(["export-onnx", "--model", str(tmp_path / "nowhere"), "--output", str(output)]) == 2
    assert cli_main(["predict", str(tmp_path), "--model", str(folder / "config.json"), "--backend", "onnx",
                     "--output", str(tmp_path / "r.csv"), "--no_progress"]) == 2
