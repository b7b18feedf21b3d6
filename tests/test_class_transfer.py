"""Fine-tuning on another label set: class heads start from the saved heads of the same emotions."""

import logging

import pytest
import torch
from conftest import tiny_grefel_config

from grefel_hf import BaselineConfig, BaselineForImageClassification, GReFELForImageClassification
from grefel_hf.pretrained import pretrained_model_path
from grefel_hf.training.class_transfer import match_classes, with_target_classes
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import TrainingSetupError, build_model

FERPLUS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
FER2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
RAFDB = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


def _labels(names):
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}


def _grefel(names, seed=0, **config):
    torch.manual_seed(seed)
    return GReFELForImageClassification(tiny_grefel_config(**_labels(names), **config)).eval()


def _baseline(names, seed=0):
    torch.manual_seed(seed)
    return BaselineForImageClassification(BaselineConfig(backbone="test_resnet", image_size=48,
                                                         classifier_hidden_sizes=[16], **_labels(names))).eval()


def test_match_classes_folds_synonyms_and_leaves_unknown_classes_unmatched():
    assert match_classes(FERPLUS, FER2013) == [4, 5, 6, 1, 3, 2, 0]
    assert match_classes(FER2013, RAFDB) == [5, 2, 1, 3, 4, 0, 6]
    assert match_classes(FERPLUS, ["Angry ", "pain"]) == [4, None]
    with pytest.raises(ValueError, match="'angry' and 'anger' name the same emotion"):
        match_classes(["angry", "anger"], FER2013)


@pytest.mark.parametrize("build", [_grefel, _baseline])
def test_class_indexed_parameters_are_exactly_the_tensors_sized_by_the_class_count(build):
    seven, eight = build(FER2013).state_dict(), build(FERPLUS).state_dict()
    sized_by_classes = {name for name in seven if seven[name].shape != eight[name].shape}
    assert sized_by_classes == set(build(FER2013).class_indexed_parameters())
    for name in sized_by_classes:
        assert (seven[name].shape[0], eight[name].shape[0]) == (7, 8), name


@pytest.mark.parametrize("build", [_grefel, _baseline])
def test_reordered_classes_predict_what_the_saved_model_predicts_for_each_emotion(build):
    source = build(FER2013, seed=1)
    target = with_target_classes(source, RAFDB).eval()
    pixels = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = source(pixel_values=pixels).logits, target(pixel_values=pixels).logits
    rows = match_classes(FER2013, RAFDB)
    assert torch.allclose(got, expected[:, rows], atol=1e-5)
    assert target.config.id2label == dict(enumerate(RAFDB)) and target.config.label2id["anger"] == 5


def test_fewer_and_new_classes_copy_matched_rows_and_keep_fresh_ones(caplog):
    source = _grefel(FERPLUS, seed=2, calibration_temperature=0.5, calibration_bias=[0.1] * 8)
    names = [*FER2013, "pain"]
    with caplog.at_level(logging.INFO, logger="grefel_hf.training.class_transfer"):
        target = with_target_classes(source, names)
    assert "7 of 8 class heads start from the saved model's" in caplog.text and "(pain)" in caplog.text
    rows = match_classes(FERPLUS, names)
    for name in target.class_indexed_parameters():
        saved, built = source.state_dict()[name], target.state_dict()[name]
        for target_row, source_row in enumerate(rows):
            if source_row is None:
                if built[target_row].dim():  # a fresh bias is 0 like the saved ones; weights and anchors differ
                    assert not any(torch.equal(built[target_row], row) for row in saved), name
            else:
                assert torch.equal(built[target_row], saved[source_row]), name
    shared = set(source.state_dict()) - set(target.class_indexed_parameters())
    assert shared and all(torch.equal(source.state_dict()[k], target.state_dict()[k]) for k in shared)
    # The saved calibration belongs to the old classes: the relabelled model starts uncalibrated.
    assert target.config.calibration_bias is None and target.config.calibration_temperature == 1.0
    assert source.config.num_labels == 8 and target.config.num_labels == 8


def test_same_classes_keep_the_loaded_model():
    source = _grefel(FER2013)
    assert with_target_classes(source, list(FER2013)) is source


def test_fine_tuning_from_a_folder_maps_heads_by_emotion(tmp_path):
    source = _grefel(FERPLUS, seed=3)
    source.save_pretrained(tmp_path / "ferplus")
    model = build_model(ModelArguments(model_name_or_path=str(tmp_path / "ferplus")), FER2013)
    saved = source.primary_head.classifier.weight
    assert torch.equal(model.primary_head.classifier.weight, saved[[4, 5, 6, 1, 3, 2, 0]])
    assert torch.equal(model.grefel.anchors[6], source.grefel.anchors[0])  # neutral
    _grefel(["angry", "anger"]).save_pretrained(tmp_path / "ambiguous")
    with pytest.raises(TrainingSetupError, match="ambiguous'.*'angry' and 'anger' name the same emotion"):
        build_model(ModelArguments(model_name_or_path=str(tmp_path / "ambiguous")), FER2013)


def test_a_bundled_model_is_fine_tuned_by_name_with_its_heads_mapped():
    model = build_model(ModelArguments(model_name_or_path="grefel-ferplus"), RAFDB)
    bundled = GReFELForImageClassification.from_pretrained(pretrained_model_path("grefel-ferplus"))
    rows = match_classes(FERPLUS, RAFDB)
    assert torch.equal(model.primary_head.classifier.weight, bundled.primary_head.classifier.weight[rows])
    assert model.config.id2label == dict(enumerate(RAFDB)) and model.config.calibration_bias is None
