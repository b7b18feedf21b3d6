"""The baseline model: the plain head by default, the attention neck, multi-scale fusion and the BatchNorm MLP
classifier as options; transformers' model checks (round trip, batch independence, dict == tuple, gradients); Auto
classes, pipeline, and remote code in a process where grefel_hf cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.layers import EcaModule, SEModule
from timm.layers.cbam import CbamModule
from timm.layers.coord_attn import CoordAttn
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline

from grefel_hf import (
    BaselineConfig,
    BaselineForImageClassification,
    BaselineModel,
    BaselineObjective,
    build_image_processor,
    save_grefel_folder,
)
from grefel_hf.modeling_baseline import baseline_loss

FULL = dict(attention_blocks=["se", "cbam", "eca", "coord"], fusion_levels=[2, -2], classifier_hidden_sizes=[16],
            classifier_dropout=0.2)
"""Every option at once."""


def _model(backbone="test_efficientnet", seed=0, **fields):
    torch.manual_seed(seed)
    return BaselineForImageClassification(BaselineConfig(backbone=backbone, image_size=32, **fields)).eval()


def _pixels(batch=4, seed=1):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_default_is_the_plain_head_the_backbones_pooled_features_and_one_linear_layer():
    model = _model("test_resnet")
    (linear,) = model.classifier
    assert isinstance(linear, nn.Linear) and linear.in_features == model.baseline.backbone.num_features
    x = _pixels()
    with torch.no_grad():
        pooled = model.baseline.backbone(x)  # timm's own pooled features (num_classes=0)
        expected = torch.log_softmax(linear(pooled), dim=-1)
        output = model(x)
    torch.testing.assert_close(output.logits, expected)
    torch.testing.assert_close(output.logits.exp().sum(-1), torch.ones(4))
    entropy = -(expected.exp() * expected).sum(-1) / np.log(7)
    torch.testing.assert_close(output.reliability, 1 - entropy)
    assert set(model.parameter_parts().values()) == {"backbone", "primary_head"}
    assert model.get_backbone() is model.baseline.backbone


def test_the_options_build_timm_attention_blocks_fusion_and_a_batchnorm_mlp():
    model = _model(**FULL)
    pyramid = model.baseline.backbone.feature_info
    assert model.baseline.fusion_levels == [2, len(pyramid) - 2]
    for neck in (*model.baseline.level_necks, model.baseline.final_neck):
        assert [type(block) for block in neck] == [SEModule, CbamModule, EcaModule, CoordAttn]
    widths = [pyramid[2]["num_chs"], pyramid[len(pyramid) - 2]["num_chs"], model.baseline.backbone.num_features]
    assert model.baseline.num_features == sum(widths)
    assert [type(m) for m in model.classifier] == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout,
                                                   nn.Linear]
    with torch.no_grad():
        features = model.baseline(_pixels()).pooler_output
    assert features.shape == (4, sum(widths))
    parts = model.parameter_parts()
    assert all(parts[name] == "primary_head" for name, _ in model.named_parameters() if "neck" in name)


@pytest.mark.parametrize("fields", [{}, FULL], ids=["plain", "full"])
def test_save_reload_batched_equals_one_by_one_and_dict_equals_tuple(fields, tmp_path):
    model = _model(**fields)
    model.save_pretrained(tmp_path)
    reloaded = BaselineForImageClassification.from_pretrained(tmp_path).eval()
    x = _pixels(batch=5)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]).logits for i in range(5)])
        as_tuple = model(x, return_dict=False)
        after = reloaded(x)
    torch.testing.assert_close(batched.logits, single, atol=1e-5, rtol=1e-5)
    assert torch.equal(batched.logits, after.logits) and torch.equal(batched.reliability, after.reliability)
    assert torch.equal(as_tuple[0], batched.logits) and torch.equal(as_tuple[1], batched.reliability)


@pytest.mark.parametrize("fields", [{}, FULL], ids=["plain", "full"])
def test_every_parameter_gets_a_finite_gradient(fields):
    model = _model(**fields).train()
    model(_pixels(), labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_the_loss_is_cross_entropy_with_smoothing_soft_labels_and_class_weights():
    model = _model("test_resnet")
    x, labels = _pixels(), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        outputs = model(x)
        log_probs = outputs.logits
        assert model(x, labels=labels).loss == pytest.approx(nn.functional.nll_loss(log_probs, labels).item())
        smoothed = nn.functional.cross_entropy(log_probs, labels, label_smoothing=0.1)
        loss, parts = BaselineObjective(label_smoothing=0.1).loss(model, outputs, labels)
        assert loss.item() == pytest.approx(smoothed.item(), rel=1e-5) and parts == {}
        soft = nn.functional.one_hot(labels, 7).float()
        assert model(x, labels=soft).loss == pytest.approx(model(x, labels=labels).loss.item(), rel=1e-6)
    weights = [1.0, 2.0, 0.5, 3.0, 1.0, 1.0, 1.0]
    expected = nn.functional.nll_loss(log_probs, labels, weight=torch.tensor(weights))
    actual = baseline_loss(log_probs, labels, BaselineObjective(class_weights=weights))
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="class_weights has 2 entries but the model has 7 labels"):
        BaselineObjective(class_weights=[1.0, 2.0]).check(model.config)


def test_timm_modules_keep_their_own_initialisation():
    torch.manual_seed(0)
    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    model = _model("test_resnet", seed=0)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.baseline.backbone.state_dict()[key]), key


def test_the_config_documents_every_field_and_refuses_impossible_values():
    doc = BaselineConfig.__doc__
    undocumented = [name for name in BaselineConfig.__annotations__ if f"    {name} (" not in doc]
    assert not undocumented, undocumented
    config = BaselineConfig()
    assert config.attention_blocks == [] and config.label2id["happy"] == 3
    with pytest.raises(ValueError, match=r"attention_blocks must be distinct names from .*got \['se', 'nope'\]"):
        BaselineConfig(attention_blocks=["se", "nope"])
    with pytest.raises(ValueError, match="classifier_dropout must be in"):
        BaselineConfig(classifier_dropout=1.0)
    with pytest.raises(ValueError, match=r"backbone_kwargs may only hold .* refused \['checkpoint_path'\]"):
        BaselineConfig(backbone_kwargs={"checkpoint_path": "/etc/passwd"})
    with pytest.raises(ValueError, match=r"fusion_levels \[9\] is out of range"):
        _model("test_resnet", fusion_levels=[9])
    with pytest.raises(ValueError, match=r"attention blocks need a convolutional feature map"):
        _model("test_vit", attention_blocks=["se"])(_pixels())
    with pytest.raises(ValueError, match=r"pixel_values must be a float tensor of shape \(batch, 3"):
        _model("test_resnet")(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"got torch.uint8 of shape \(2, 3, 32, 32\)"):
        _model("test_resnet")(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    model = _model(**FULL)
    folder = save_grefel_folder(model, build_image_processor(model.config), tmp_path_factory.mktemp("baseline"))
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8), "L")
    return folder, model, face


def test_auto_classes_and_pipeline_load_the_folder_in_process(saved_folder):
    folder, model, face = saved_folder
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModel"] == "modeling_baseline.BaselineModel"
    assert isinstance(AutoConfig.from_pretrained(folder), BaselineConfig)
    assert isinstance(AutoModel.from_pretrained(folder), BaselineModel)
    loaded = AutoModelForImageClassification.from_pretrained(folder)
    assert isinstance(loaded, BaselineForImageClassification)
    result = pipeline("image-classification", model=str(folder))(face, top_k=7)
    pixels = build_image_processor(model.config)(face, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pixels).logits.exp()[0]
    for entry in result:
        assert entry["score"] == pytest.approx(probs[model.config.label2id[entry["label"]]].item(), abs=1e-5)


_REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["grefel_hf"] = None  # grefel_hf cannot be imported in this process
    import json
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    folder, out_dir = sys.argv[1], sys.argv[2]
    face = Image.open(f"{out_dir}/face.png")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    pixels = processor(face, return_tensors="pt")["pixel_values"]
    output = classifier(pixels)
    save_file({"pixels": pixels, "logits": output.logits.detach(), "reliability": output.reliability,
               "pooled": base(pixels).pooler_output.detach()}, f"{out_dir}/remote.safetensors")
    scores = pipeline("image-classification", model=folder, trust_remote_code=True)(face, top_k=config.num_labels)
    info = {"config_module": type(config).__module__, "model_module": type(classifier).__module__,
            "base_class": type(base).__name__, "pipeline": scores, "grefel_hf": sys.modules["grefel_hf"] is not None}
    with open(f"{out_dir}/remote.json", "w") as f:
        json.dump(info, f)
    """
)


def test_the_folder_loads_through_remote_code_without_grefel_hf(saved_folder, tmp_path):
    folder, model, face = saved_folder
    face.save(tmp_path / "face.png")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", _REMOTE_SCRIPT, str(folder), str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((tmp_path / "remote.json").read_text())
    remote = load_file(tmp_path / "remote.safetensors")
    assert not info["grefel_hf"] and info["base_class"] == "BaselineModel"
    assert info["config_module"].startswith("transformers_modules.")
    assert info["model_module"].startswith("transformers_modules.")
    with torch.no_grad():
        expected = model(remote["pixels"])
        pooled = model.baseline(remote["pixels"]).pooler_output
    torch.testing.assert_close(remote["logits"], expected.logits)
    torch.testing.assert_close(remote["reliability"], expected.reliability)
    torch.testing.assert_close(remote["pooled"], pooled)
    scores = {entry["label"]: entry["score"] for entry in info["pipeline"]}
    for idx, name in model.config.id2label.items():
        assert scores[name] == pytest.approx(expected.logits.exp()[0, idx].item(), abs=1e-5)
