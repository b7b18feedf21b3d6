"""Model checks in the spirit of transformers' test mixins: round trip, batch independence, dict == tuple,
gradients, numerical safety, label-count changes."""

import json
import os

import pytest
import torch
from conftest import tiny_grefel_config

from grefel_hf import GReFELConfig, GReFELForImageClassification, GReFELModel
from grefel_hf.losses import GReFELObjective

BACKBONES = ["test_vit", "test_resnet", "test_efficientnet"]
VARIANTS = [
    {},
    {"geometry_variant": "enhanced", "reliability_variant": "enhanced", "diversity_loss_weight": 0.1,
     "reliability_loss_weight": 0.1},
    {"primary_input": "backbone", "primary_hidden_sizes": [], "reliability_variant": "enhanced",
     "reliability_loss_weight": 0.1},
]
VARIANT_IDS = ["basic", "enhanced", "primary-on-backbone"]


OBJECTIVE_FIELDS = set(GReFELObjective.__dataclass_fields__)


def _model(backbone="test_resnet", seed=0, **overrides):
    """A tiny GReFEL in eval mode; keyword arguments that are `GReFELObjective` fields are left to `_loss`."""
    torch.manual_seed(seed)
    config = {k: v for k, v in overrides.items() if k not in OBJECTIVE_FIELDS}
    return GReFELForImageClassification(tiny_grefel_config(backbone, **config)).eval()


def _loss(model, pixels, labels, trust=None, **settings):
    """(outputs, loss, parts) as GReFELTrainer computes them: the forward pass with the objective's gradient routing,
    then `GReFELObjective(**settings)` on the outputs; keyword arguments that are not objective fields are ignored."""
    objective = GReFELObjective(**{k: v for k, v in settings.items() if k in OBJECTIVE_FIELDS})
    out = model(pixels, **objective.model_kwargs())
    loss, parts = objective.loss(model, out, labels, trust=trust)
    return out, loss, parts


def _pixels(batch=4, seed=1):
    return torch.randn(batch, 3, 48, 48, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_and_reload_give_identical_outputs(backbone, tmp_path):
    model = _model(backbone)
    model.save_pretrained(tmp_path)
    reloaded = GReFELForImageClassification.from_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    x = _pixels()
    with torch.no_grad():
        before, after = model(x), reloaded(x)
    for name in ("logits", "reliability", "primary_probs", "corrected_probs", "confidences", "embeddings"):
        assert torch.equal(before[name], after[name]), name
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("backbone", ["test_vit", "test_resnet"])
def test_batched_prediction_equals_one_by_one(backbone, variant):
    model = _model(backbone, **variant)
    x = _pixels(batch=5)
    with torch.no_grad():
        batched = model(x)
        singles = [model(x[i : i + 1]) for i in range(len(x))]
    for name in ("logits", "reliability", "confidences"):
        stacked = torch.cat([s[name] for s in singles])
        torch.testing.assert_close(batched[name], stacked, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_eval_is_deterministic_and_dict_equals_tuple(variant):
    model = _model("test_resnet", **variant)
    x = _pixels()
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        first, second = model(x, labels=labels), model(x, labels=labels)
        as_tuple = model(x, labels=labels, return_dict=False)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.reliability, second.reliability)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(first.to_tuple())
    for key, tuple_value in zip(first.keys(), as_tuple, strict=True):
        if isinstance(tuple_value, dict):
            assert tuple_value.keys() == first[key].keys()
        else:
            assert torch.equal(first[key], tuple_value), key


def test_outputs_are_distributions_with_reliability_in_unit_interval():
    out = _model()(_pixels())
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(4))
    torch.testing.assert_close(out.primary_probs.sum(-1), torch.ones(4))
    torch.testing.assert_close(out.corrected_probs.sum(-1), torch.ones(4))
    assert out.reliability.shape == (4,) and out.confidences.shape == (4, 3)
    assert ((out.reliability >= 0) & (out.reliability <= 1)).all()
    assert ((out.confidences >= 0) & (out.confidences <= 1)).all()
    assert out.loss is None and out.loss_parts is None


@pytest.mark.parametrize("backbone", ["test_resnet", "test_vit"])
def test_the_backbone_features_come_under_the_names_transformers_uses(backbone):
    model = _model(backbone)
    x = _pixels()
    with torch.no_grad():
        base, plain = model.grefel(x, output_hidden_states=True), model.grefel(x)
        out = model(x, output_hidden_states=True)
        backbone_module = model.grefel.backbone
        torch.testing.assert_close(base.last_hidden_state, backbone_module.forward_features(x))
        torch.testing.assert_close(base.pooler_output, backbone_module(x))  # timm's pooled pre-logits features
    pyramid = backbone_module.feature_info
    assert [h.shape[1] for h in base.hidden_states] == [level["num_chs"] for level in pyramid]
    assert [h.shape for h in out.hidden_states] == [h.shape for h in base.hidden_states]
    assert "hidden_states" not in plain and "hidden_states" not in model(x)  # only when asked for
    torch.testing.assert_close(plain.embeddings, base.embeddings)  # asking changes nothing else
    torch.testing.assert_close(out.logits, model(x).logits)


def test_inference_mode_primary_returns_the_primary_distribution():
    model = _model(inference_mode="primary")
    out = model(_pixels())
    torch.testing.assert_close(out.logits.exp(), out.primary_probs)
    assert not torch.allclose(out.primary_probs, out.corrected_probs)


def test_the_trust_ramp_sets_the_distribution_the_classification_term_scores():
    model = _model(dropout=0.0).train()
    labels = torch.tensor([0, 1, 2, 6])
    out = model(_pixels())
    rows = torch.arange(4)
    for trust in (0.0, 0.25, 1.0):  # the training blend (1 - τ)·p + τ·q
        _, parts = GReFELObjective(label_smoothing=0.0).loss(model, out, labels, trust=trust)
        blend = (1 - trust) * out.primary_probs + trust * out.corrected_probs
        torch.testing.assert_close(parts["classification"], -blend[rows, labels].log().mean())
    _, parts = GReFELObjective(label_smoothing=0.0).loss(model, out, labels)  # no τ: the model's own distribution
    torch.testing.assert_close(parts["classification"], -out.corrected_probs[rows, labels].log().mean())
    torch.testing.assert_close(out.logits.exp(), out.corrected_probs)  # training mode predicts as evaluation does


def test_attentive_path_with_shared_prototypes_equals_projecting_every_token():
    """Shared anchors take the factored projections (B + C rows); per-sample anchors project all B·C tokens. With the
    same anchors given both ways, t and every gradient must agree."""
    model = _model(dropout=0.0, num_attention_heads=2).train()
    balancing = model.reliability
    with torch.no_grad():  # a LayerNorm affine away from its (1, 0) init, so the factoring's γ and β are exercised
        balancing.token_norm.weight.uniform_(0.5, 1.5)
        balancing.token_norm.bias.normal_(0.0, 0.3)
    x = (3.0 * torch.randn(5, model.config.embed_dim)).requires_grad_()
    anchors = model.grefel.anchors.flatten(0, 1)
    parameters = [x, model.grefel.anchors, *balancing.parameters()]
    weights = torch.rand(5, model.config.num_labels)
    results = []
    for given in (anchors, anchors.expand(5, -1, -1)):
        t = balancing.attentive_path(x, given)
        results.append((t.detach(), torch.autograd.grad((weights * t).sum(), parameters, allow_unused=True)))
    (t_shared, grads_shared), (t_per_sample, grads_per_sample) = results
    torch.testing.assert_close(t_shared, t_per_sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t_shared.sum(dim=-1), torch.ones(5))
    for shared, per_sample in zip(grads_shared, grads_per_sample, strict=True):
        if shared is None or per_sample is None:
            assert shared is None and per_sample is None
            continue
        torch.testing.assert_close(shared, per_sample, rtol=1e-4, atol=1e-6)
    assert grads_shared[0].abs().sum() > 0 and grads_shared[1].abs().sum() > 0


def _primary_head_gradients(model, out, parts, labels):
    """Gradients of the primary head's classifier from the blend's cross-entropy and from p's own cross-entropy."""
    classifier = list(model.primary_head.classifier.parameters())
    blend = torch.autograd.grad(parts["classification"], classifier, retain_graph=True, allow_unused=True)
    own = -out.primary_probs[torch.arange(len(labels)), labels].log().mean()
    return blend, torch.autograd.grad(own, classifier, allow_unused=True)


@pytest.mark.parametrize("variant", VARIANTS[::2], ids=VARIANT_IDS[::2])
def test_blend_trains_primary_off_keeps_predictions_and_stops_only_the_blends_gradient_into_p(variant):
    x, labels = _pixels(), torch.tensor([0, 1, 2, 6])
    runs = {}
    for blend_trains_primary in (True, False):
        model = _model(dropout=0.0, **variant).train()
        out, loss, parts = _loss(model, x, labels, trust=0.5, blend_trains_primary=blend_trains_primary, **variant)
        runs[blend_trains_primary] = (out, loss, parts, *_primary_head_gradients(model, out, parts, labels))
    (out_on, loss_on, _, blend_on, own_on), (out_off, loss_off, parts_off, blend_off, own_off) = runs[True], runs[False]
    torch.testing.assert_close(loss_off, loss_on)  # same weights: same values
    for name in ("logits", "primary_probs", "corrected_probs", "confidences"):
        torch.testing.assert_close(out_off[name], out_on[name], msg=name)
    assert all(g is not None and g.abs().sum() > 0 for g in blend_on)  # end to end, the blend trains p
    assert all(g is None for g in blend_off)  # ... and no longer does
    for off, on in zip(own_off, own_on, strict=True):  # p's own cross-entropy still reaches it unchanged
        torch.testing.assert_close(off, on)
    assert loss_off.requires_grad and parts_off["classification"].requires_grad  # r, c still learn


def _branch_and_primary_gradients(scale):
    """Backbone gradients of a branch-only objective (the anchor path g and the center loss) and of a primary-only
    one (p's cross-entropy), for a model whose primary head reads the backbone."""
    x, labels = _pixels(), torch.tensor([0, 1, 2, 6])
    model = _model(dropout=0.0, primary_input="backbone", primary_hidden_sizes=[]).train()
    out, _, parts = _loss(model, x, labels, branch_gradient_scale=scale)
    branch_objective = -out.anchor_probs[torch.arange(4), labels].log().mean() + parts["center"]
    primary_objective = -out.primary_probs[torch.arange(4), labels].log().mean()
    backbone = [p for p in model.grefel.backbone.parameters() if p.requires_grad]
    projections = list(model.grefel.level_projections.parameters())
    branch = torch.autograd.grad(branch_objective, backbone + projections, retain_graph=True, allow_unused=True)
    primary = torch.autograd.grad(primary_objective, backbone, allow_unused=True)
    zeros = [torch.zeros_like(p) for p in backbone + projections]
    branch = [z if gr is None else gr for z, gr in zip(zeros, branch, strict=True)]
    primary = [z if gr is None else gr for z, gr in zip(zeros[: len(backbone)], primary, strict=True)]
    return out.logits.detach(), branch[: len(backbone)], branch[len(backbone):], primary


def test_branch_gradient_scale_scales_only_what_the_branch_sends_into_the_backbone():
    runs = {scale: _branch_and_primary_gradients(scale) for scale in (1.0, 0.5, 0.0)}
    logits_full, branch_full, projections_full, primary_full = runs[1.0]
    assert sum(g.abs().sum() for g in branch_full) > 0  # end to end, the branch reaches the backbone
    for scale in (0.5, 0.0):
        logits, branch, projections, primary = runs[scale]
        torch.testing.assert_close(logits, logits_full)  # same weights (same seed): same predictions
        for got, full in zip(branch, branch_full, strict=True):
            torch.testing.assert_close(got, scale * full, rtol=1e-4, atol=1e-7)
        for got, full in zip(projections, projections_full, strict=True):  # the branch itself still learns fully
            torch.testing.assert_close(got, full)
        assert sum(g.abs().sum() for g in projections) > 0
        for got, full in zip(primary, primary_full, strict=True):  # the primary head's route is untouched
            torch.testing.assert_close(got, full)


@pytest.mark.parametrize("backbone", ["test_resnet", "test_vit"])
def test_primary_input_backbone_classifies_the_pooled_backbone_features(backbone, tmp_path):
    model = _model(backbone, dropout=0.0, primary_input="backbone")
    first = model.primary_head.hidden[0] if len(model.primary_head.hidden) else model.primary_head.classifier
    assert first.in_features == model.grefel.backbone.num_features != model.config.embed_dim
    x = _pixels()
    with torch.no_grad():
        out = model(x)
        pooled = model.grefel(x).pooler_output
        expected = torch.softmax(model.primary_head.classifier(model.primary_head.hidden(pooled)), dim=-1)
        torch.testing.assert_close(pooled, model.grefel.backbone(x))  # timm's own pooled pre-logits features
    torch.testing.assert_close(out.primary_probs, expected)
    # p's gradient reaches the backbone directly, and never the fusion
    p = model(x).primary_probs
    fusion_grad = torch.autograd.grad(p[:, 0].sum(), model.grefel.fusion.proj.weight, allow_unused=True,
                                      retain_graph=True)[0]
    backbone_grad = torch.autograd.grad(p[:, 0].sum(), model.grefel.backbone.parameters(), allow_unused=True)
    assert fusion_grad is None and any(g is not None and g.abs().sum() > 0 for g in backbone_grad)
    model.save_pretrained(tmp_path)
    reloaded = GReFELForImageClassification.from_pretrained(tmp_path)
    assert reloaded.config.primary_input == "backbone"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, out.logits)
    with pytest.raises(ValueError, match="primary_input must be one of"):
        GReFELConfig(primary_input="pooled")


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_trainable_parameter_gets_a_finite_gradient(backbone, variant):
    model = _model(backbone, **variant).train()
    _, loss, _ = _loss(model, _pixels(), torch.tensor([0, 1, 2, 6]), trust=0.5, **variant)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:10]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:10]}"


def test_soft_labels_give_a_loss_and_match_equivalent_hard_labels():
    model = _model()
    x = _pixels()
    hard = torch.tensor([0, 1, 2, 3])
    soft = torch.nn.functional.one_hot(hard, 7).float()
    with torch.no_grad():
        torch.testing.assert_close(_loss(model, x, hard, label_smoothing=0.0)[1],
                                   _loss(model, x, soft, label_smoothing=0.0)[1])
        smoothed = torch.full((4, 7), 0.11 / 7) + 0.89 * soft  # the default loss smooths hard labels by 0.11
        torch.testing.assert_close(model(x, labels=hard).loss, model(x, labels=smoothed).loss)
    mixed = torch.full((4, 7), 1 / 7)
    assert torch.isfinite(model(x, labels=mixed).loss)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_no_nan_for_extreme_but_valid_inputs(variant):
    model = _model("test_resnet", **variant)
    batch = torch.stack([
        torch.full((3, 48, 48), -1.0),  # black image after (x - 0.5) / 0.5
        torch.full((3, 48, 48), 1.0),  # white image
        torch.zeros(3, 48, 48),  # flat grey
        (torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(3)) > 0.5).float() * 2 - 1,  # salt & pepper
        torch.full((3, 48, 48), 50.0),  # far outside the normalised range
    ])
    with torch.no_grad():
        out = model(batch, labels=torch.tensor([0, 1, 2, 3, 4]))
    for name in ("loss", "logits", "reliability", "primary_probs", "corrected_probs", "confidences", "embeddings"):
        assert torch.isfinite(out[name]).all(), name


def test_num_labels_change_through_from_pretrained(tmp_path):
    _model().save_pretrained(tmp_path)
    ferplus = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    id2label = dict(enumerate(ferplus))
    label2id = {name: i for i, name in id2label.items()}
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        GReFELForImageClassification.from_pretrained(tmp_path, id2label=id2label, label2id=label2id)
    model = GReFELForImageClassification.from_pretrained(
        tmp_path, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
    )
    assert model.config.num_labels == 8 and model.config.id2label[7] == "contempt"
    assert model.config.label2id["contempt"] == 7
    assert model.grefel.anchors.shape[0] == 8
    out = model(_pixels(), labels=torch.tensor([7, 0, 1, 2]))
    assert out.logits.shape == (4, 8) and torch.isfinite(out.loss)
    # re-initialised heads are real draws, not uninitialised memory
    assert torch.isfinite(model.primary_head.classifier.weight).all()
    assert 0.005 < model.primary_head.classifier.weight.std().item() < 0.05


def test_base_model_loads_from_classification_checkpoint(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    base = GReFELModel.from_pretrained(tmp_path)
    x = _pixels()
    with torch.no_grad():
        torch.testing.assert_close(base(x).embeddings, model(x).embeddings)


def test_timm_backbone_weights_survive_construction():
    """transformers' default init would reset timm weights; ours leaves the backbone's own init alone."""
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    torch.manual_seed(0)
    model = GReFELModel(tiny_grefel_config("test_resnet"))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.backbone.state_dict()[key]), key


def test_bad_inputs_get_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match=r"pixel_values must be a float tensor of shape \(batch, 3"):
        model(torch.randn(2, 1, 48, 48))
    with pytest.raises(ValueError, match="class ids in"):
        model(_pixels(), labels=torch.tensor([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="sum to 1"):
        model(_pixels(), labels=torch.full((4, 7), 0.5))
    with pytest.raises(ValueError, match="Unknown timm backbone 'no_such_net'"):
        GReFELModel(tiny_grefel_config("no_such_net"))
    with pytest.raises(ValueError, match="feature_levels entry 9 is out of range"):
        GReFELModel(tiny_grefel_config("test_resnet", feature_levels=[9]))


def test_config_documents_every_field_and_validates():
    doc = GReFELConfig.__doc__
    own_fields = [name for name in GReFELConfig.__annotations__ if not name.startswith("_")]
    undocumented = [name for name in own_fields if f"    {name} (" not in doc]
    assert not undocumented, f"undocumented config fields: {undocumented}"
    config = GReFELConfig()
    assert config.id2label[0] == "angry" and config.label2id["neutral"] == 6 and config.num_labels == 7
    with pytest.raises(ValueError, match="geometry_variant"):
        GReFELConfig(geometry_variant="fancy")
    with pytest.raises(ValueError, match="divisible"):
        GReFELConfig(embed_dim=30, num_attention_heads=4)
    with pytest.raises(ValueError, match=r"id2label must have the ids 0..6 without gaps, got \[0, 1, 2, 3, 4, 5, 9\]"):
        GReFELConfig(id2label={**{i: f"c{i}" for i in range(6)}, 9: "c9"})
    with pytest.raises(ValueError, match=r"id2label names a class more than once: \['happy'\]"):
        GReFELConfig(id2label={0: "happy", 1: "sad", 2: "happy"})
    with pytest.raises(ValueError, match=r"backbone_kwargs may only hold .* refused \['checkpoint_path'\]"):
        GReFELConfig(backbone_kwargs={"checkpoint_path": "/etc/passwd"})
    assert GReFELConfig(backbone_kwargs={"drop_path_rate": 0.1}).backbone_kwargs == {"drop_path_rate": 0.1}


def test_config_drops_the_retired_training_fields_with_a_warning_saying_where_each_went(caplog):
    with caplog.at_level("WARNING"):
        config = GReFELConfig(label_smoothing=0.2, branch_gradient_scale=0.0, detach_confidences=True)
    for name in ("label_smoothing", "branch_gradient_scale", "detach_confidences"):
        assert not hasattr(config, name) and name in caplog.text
    assert "label_smoothing_factor" in caplog.text  # the warning says where the setting went
    assert not {"label_smoothing", "branch_gradient_scale", "detach_confidences"} & set(config.to_dict())
    with pytest.raises(ValueError, match="saved with primary_pool_grid=2"):
        GReFELConfig(primary_pool_grid=2)


def test_a_config_keeps_a_key_it_does_not_know_as_pretrained_config_does(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        GReFELConfig(backbone="test_resnet", my_note="from a fork", my_level=3).save_pretrained(tmp_path)
    assert "keeping fields it does not use: ['my_level', 'my_note']" in caplog.text  # a misspelt field shows
    reloaded = GReFELConfig.from_pretrained(tmp_path)
    assert (reloaded.my_note, reloaded.my_level) == ("from a fork", 3)
    assert json.loads((tmp_path / "config.json").read_text())["my_note"] == "from a fork"


def test_the_default_config_is_the_bundled_models_architecture():
    from grefel_hf import pretrained_model_path

    bundled = GReFELConfig.from_pretrained(pretrained_model_path()).to_dict()
    default = GReFELConfig().to_dict()
    for name in GReFELConfig.__annotations__:
        # the calibration is fitted to the bundled weights; its default is the identity, so that folders saved
        # before it existed predict as they did
        if not name.startswith(("_", "calibration_")):
            assert default[name] == bundled[name], name
    assert (default["calibration_temperature"], default["calibration_bias"]) == (1.0, None)
    assert (default["backbone"], default["image_size"], default["embed_dim"]) == ("tf_efficientnet_lite0", 112, 256)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_pixel_values_of_another_float_dtype_are_cast_to_the_weights(dtype):
    model = _model(dropout=0.0)
    x = _pixels()
    with torch.no_grad():
        expected = model(x, output_hidden_states=True)
        got = model(x.to(dtype), output_hidden_states=True)
    assert got.logits.dtype == torch.float32
    torch.testing.assert_close(got.logits, model(x.to(dtype).float()).logits)  # the cast is all that happens
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.logits, expected.logits, atol=tolerance, rtol=tolerance)
    with pytest.raises(ValueError, match=r"got torch.uint8 of shape \(4, 3, 48, 48\)"):
        model(torch.zeros(4, 3, 48, 48, dtype=torch.uint8))


def test_a_config_saved_before_the_architecture_only_config_loads_into_the_same_network(caplog):
    """`tests/fixtures/grefel_saved_at_0459afd` was written by `save_pretrained` at commit 0459afd, when the config
    still held the training settings (loss weights, label smoothing, class weights, gradient routing)."""
    folder = os.path.join(os.path.dirname(__file__), "fixtures", "grefel_saved_at_0459afd")
    with caplog.at_level("WARNING"):
        config = GReFELConfig.from_pretrained(folder)
    for retired in ("label_smoothing", "class_weights", "branch_gradient_scale", "path_loss_weight"):
        assert retired in caplog.text and not hasattr(config, retired)
    assert (config.primary_input, config.inference_mode, config.embed_dim) == ("backbone", "primary", 32)
    with open(os.path.join(folder, "state_dict_shapes.json")) as f:
        saved_shapes = json.load(f)
    model = GReFELForImageClassification(config)
    assert {name: list(t.shape) for name, t in model.state_dict().items()} == saved_shapes


def test_a_folder_saved_before_the_defaults_became_the_bundled_models_loads_into_the_same_network(caplog):
    """`tests/fixtures/grefel_saved_at_6688011` is the config.json that `save_pretrained` wrote at commit 6688011 for
    `GReFELConfig(backbone="test_resnet")`, every other field at that commit's default (224 px, a 512-d embedding, the
    primary head an MLP of 256 on the embedding, dropout 0.1): saved configs carry every field, so it loads as it was
    saved, whatever today's defaults."""
    folder = os.path.join(os.path.dirname(__file__), "fixtures", "grefel_saved_at_6688011")
    with caplog.at_level("WARNING"):
        config = GReFELConfig.from_pretrained(folder)
    assert not caplog.text  # nothing retired, nothing unknown
    assert (config.image_size, config.embed_dim, config.primary_input, config.primary_hidden_sizes, config.dropout) \
        == (224, 512, "embedding", [256], 0.1)
    with open(os.path.join(folder, "state_dict_shapes.json")) as f:
        saved_shapes = json.load(f)
    model = GReFELForImageClassification(config)
    assert {name: list(t.shape) for name, t in model.state_dict().items()} == saved_shapes
