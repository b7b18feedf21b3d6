"""GReFELTrainer and the train_hf.py job: loss scale, training-only mixing, EMA, resume, end to end, DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_grefel_config
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import WeightedRandomSampler
from transformers import PretrainedConfig, TrainerCallback, pipeline, set_seed

import grefel_hf.training.run as run_module
import grefel_hf.training.trainer as trainer_module
from grefel_hf import GReFELForImageClassification
from grefel_hf.data.collators import GReFELEvalCollator, GReFELMixCollator
from grefel_hf.factory import build_image_processor
from grefel_hf.hub import SELECTION_FILE
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.data import attach_transforms, load_dataset_dict, prepare_training_data
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import build_model, build_trainer, run_training
from grefel_hf.training.seeding import IndexSeededCollator
from grefel_hf.training.trainer import GReFELTrainer, parameter_groups

TINY_MODEL = dict(backbone="test_vit", image_size=32, embed_dim=32, anchors_per_class=2, num_attention_heads=4,
                  primary_hidden_sizes="[32]", dropout=0.0)


def _args(output_dir, *, model=None, data=None, **training):
    """Tiny, fast, deterministic arguments on the generated expression set."""
    data_args = DataArguments(**{"max_train_samples": 32, "max_eval_samples": 32, **(data or {})})
    model_args = ModelArguments(**{**TINY_MODEL, **(model or {})})
    defaults = dict(output_dir=str(output_dir), per_device_train_batch_size=8, per_device_eval_batch_size=32,
                    num_train_epochs=1, logging_steps=1, save_strategy="no", eval_strategy="no", use_cpu=True,
                    seed=7, disable_tqdm=True, dataloader_num_workers=0)
    return model_args, data_args, GReFELTrainingArguments(**{**defaults, **training})


def _deterministic(**extra):
    """No randomness besides the data order: no augmentation, no mixing, no dropout, SGD, no clipping."""
    return dict(augment=False, mix_prob=0.0, use_ema=False, optim="sgd", learning_rate=0.5, max_grad_norm=0.0,
                warmup_steps=0, lr_scheduler_type="constant", **extra)


def _final_weights(output_dir):
    return load_file(os.path.join(output_dir, "model.safetensors"))


def _assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by {worst}"


def test_gradient_accumulation_keeps_the_loss_scale(tmp_path):
    """One step on 8 images equals one step of 2 × 4 accumulated images (LayerNorm-only backbone)."""
    run_training(*_args(tmp_path / "ga1", max_steps=1, data={"max_train_samples": 8}, **_deterministic()))
    run_training(*_args(tmp_path / "ga2", max_steps=1, data={"max_train_samples": 8},
                        per_device_train_batch_size=4, gradient_accumulation_steps=2, **_deterministic()))
    loss1 = json.loads((tmp_path / "ga1" / "train_results.json").read_text())["train_loss"]
    loss2 = json.loads((tmp_path / "ga2" / "train_results.json").read_text())["train_loss"]
    assert loss1 == pytest.approx(loss2, rel=1e-4)
    _assert_same_weights(_final_weights(tmp_path / "ga1"), _final_weights(tmp_path / "ga2"), atol=1e-5)


def test_end_to_end_with_cutmix_and_ema_reloads_through_pipeline(tmp_path):
    out = tmp_path / "run"
    results = run_training(*_args(out, max_steps=4, mix_prob=1.0, mix_switch_prob=1.0, use_ema=True,
                                  save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2))
    all_results = json.loads((out / "all_results.json").read_text())
    for key in ("eval_accuracy", "eval_ema_accuracy", "eval_macro_f1", "train_loss"):
        assert key in all_results, key
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert train_logs and all("loss_classification" in e and "loss_anchor_margin" in e for e in train_logs)
    assert (out / "checkpoint-2" / "ema" / "model.safetensors").is_file()
    selection = json.loads((out / SELECTION_FILE).read_text())
    assert selection["selected"] in ("raw", "ema") and results.selected_weights == selection["selected"]
    assert selection["raw"] == all_results["eval_accuracy"] and selection["ema"] == all_results["eval_ema_accuracy"]
    mode = selection["inference_mode"]
    assert mode in ("corrected", "primary") and results.inference_mode == mode
    assert results.validation_accuracy == selection["inference_mode_scores"][mode]
    assert str(out) in results.describe() and selection["selected"] in results.describe()
    scores = selection["inference_mode_scores"]
    assert scores[mode] >= max(scores.values())
    assert scores["corrected"] == all_results[f"eval_{'ema_' if selection['selected'] == 'ema' else ''}accuracy"]
    assert json.loads((out / "config.json").read_text())["inference_mode"] == mode
    pipe = pipeline("image-classification", model=str(out))
    face = Image.new("L", (48, 48), color=128)
    predictions = pipe(face, top_k=7)
    assert len(predictions) == 7 and sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)


def _trained_trainer(tmp_path, **training):
    model_args, data_args, training_args = _args(tmp_path, max_steps=2, use_ema=False, backbone_lr_multiplier=1.0,
                                                 **training)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    trainer = build_trainer(model, processor, attach_transforms(data, processor, {}), training_args)
    trainer.train()
    return trainer


def _accuracy_in_mode(trainer, mode):
    """Validation accuracy of the trainer's model with `mode`, computed without the Trainer's evaluation loop."""
    model = trainer.model.eval()
    saved, model.config.inference_mode = model.config.inference_mode, mode
    correct = total = 0
    try:
        with torch.no_grad():
            for batch in trainer.get_eval_dataloader():
                batch = trainer._prepare_inputs(batch)
                logits = model(pixel_values=batch["pixel_values"]).logits
                correct += int((logits.argmax(-1) == batch["labels"]).sum())
                total += len(batch["labels"])
    finally:
        model.config.inference_mode = saved
    return correct / total


@pytest.mark.parametrize("current_score, expected", [(-1.0, "primary"), (2.0, "corrected")])
def test_select_inference_mode_keeps_the_better_mode_on_validation(tmp_path, current_score, expected):
    trainer = _trained_trainer(tmp_path)
    decision = trainer.select_inference_mode({"eval_accuracy": current_score}, "raw")
    assert decision["inference_mode"] == expected and trainer.model.config.inference_mode == expected
    primary = decision["inference_mode_scores"]["primary"]
    assert primary == pytest.approx(_accuracy_in_mode(trainer, "primary"))  # really p's validation accuracy
    assert decision["inference_mode_scores"]["corrected"] == current_score


def test_select_inference_mode_needs_the_current_score_and_leaves_other_models_alone(tmp_path):
    trainer = _trained_trainer(tmp_path)
    with pytest.raises(ValueError, match="eval_ema_accuracy"):
        trainer.select_inference_mode({"eval_accuracy": 0.5}, "ema")
    trainer.model.config = PretrainedConfig()  # a model that is not GReFEL: no inference mode
    assert trainer.select_inference_mode({"eval_accuracy": 0.5}, "raw")["inference_mode"] is None


def test_the_inference_mode_stays_the_configs_when_selection_is_off(tmp_path):
    out = tmp_path / "run"
    results = run_training(*_args(out, max_steps=2, select_inference_mode=False))
    selection = json.loads((out / SELECTION_FILE).read_text())
    assert "inference_mode" not in selection and results.inference_mode is None
    assert json.loads((out / "config.json").read_text())["inference_mode"] == "corrected"


class _EvaluateSpy(TrainerCallback):
    """Records the metric names of every on_evaluate event."""

    def __init__(self):
        self.events = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.events.append(sorted(metrics))


def _with_callback(callback):
    """Make run_training's trainer carry one more callback (the library builds the trainer itself)."""
    original = run_module.build_trainer

    def build(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(callback)
        return trainer

    return build, original


def test_early_stopping_gets_raw_and_ema_metrics_in_one_event(tmp_path, monkeypatch):
    spy = _EvaluateSpy()
    build, _ = _with_callback(spy)
    monkeypatch.setattr(run_module, "build_trainer", build)
    # learning rate 0: the metric never improves, so patience 1 stops at the second evaluation
    run_training(*_args(tmp_path, max_steps=20, eval_strategy="steps", eval_steps=1, use_ema=True,
                        learning_rate=0.0, warmup_steps=0, early_stopping_patience=1, report_to=["tensorboard"]))
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert len(spy.events) >= 2
    assert all("eval_accuracy" in keys and "eval_ema_accuracy" in keys for keys in spy.events)
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*")), "no TensorBoard event file"


def test_early_stopping_needs_evaluations():
    with pytest.raises(ValueError, match="needs evaluations"):
        GReFELTrainingArguments(output_dir="unused", early_stopping_patience=2, eval_strategy="no")


def test_mixing_reaches_training_batches_only(tmp_path):
    # Build the trainer the way run_training does, then look at one batch of each loader.
    model_args, data_args, training_args = _args(tmp_path, mix_prob=1.0)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    model = build_model(model_args, data.label_names)
    data = attach_transforms(data, build_image_processor(model.config), training_args.augmentation_kwargs(), seed=1)
    trainer = build_trainer(model, build_image_processor(model.config), data, training_args)
    assert isinstance(trainer, GReFELTrainer)
    assert isinstance(trainer.train_collator, IndexSeededCollator)
    assert isinstance(trainer.train_collator.collator, GReFELMixCollator)
    assert isinstance(trainer.data_collator, GReFELEvalCollator)
    train_batch = next(iter(trainer.get_train_dataloader()))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert train_batch["labels"].dtype == torch.float32 and train_batch["labels"].shape == (8, 7)
    torch.testing.assert_close(train_batch["labels"].sum(1), torch.ones(8))
    assert eval_batch["labels"].dtype == torch.int64 and eval_batch["labels"].dim() == 1
    # the evaluation loader still uses the plain collator after a training loader was built
    assert next(iter(trainer.get_eval_dataloader()))["labels"].dtype == torch.int64


CNN_MODEL = {"backbone": "test_resnet", "image_size": 48}


def test_channels_last_reaches_the_model_and_every_batch(tmp_path):
    model_args, data_args, training_args = _args(tmp_path, model=CNN_MODEL, channels_last=True)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    trainer = build_trainer(model, processor, attach_transforms(data, processor, {}), training_args)
    conv_weights = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv_weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    for loader in (trainer.get_train_dataloader(), trainer.get_eval_dataloader()):
        batch = trainer._prepare_inputs(next(iter(loader)))
        assert batch["pixel_values"].is_contiguous(memory_format=torch.channels_last)
        assert not batch["pixel_values"].is_contiguous()  # really NHWC in memory, not a 1x1 special case


def test_channels_last_changes_the_layout_only(tmp_path):
    """Two deterministic steps of a CNN backbone give the same weights in either layout, and both save alike."""
    run_training(*_args(tmp_path / "nhwc", model=CNN_MODEL, max_steps=2, channels_last=True, **_deterministic()))
    run_training(*_args(tmp_path / "nchw", model=CNN_MODEL, max_steps=2, channels_last=False, **_deterministic()))
    nhwc, nchw = _final_weights(tmp_path / "nhwc"), _final_weights(tmp_path / "nchw")
    assert any(t.ndim == 4 for t in nhwc.values())
    _assert_same_weights(nhwc, nchw, atol=1e-4)


def test_a_training_run_leaves_the_frozen_backbone_groups_untouched(tmp_path, monkeypatch):
    seen = {}

    def build_and_record(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["trainer"] = build_trainer(model, *args, **kwargs)
        return seen["trainer"]

    monkeypatch.setattr(run_module, "build_trainer", build_and_record)
    run_training(*_args(tmp_path, model=CNN_MODEL, max_steps=2, **_deterministic(backbone_frozen_groups=2)))
    trainer = seen["trainer"]
    frozen = set(trainer.frozen_parameter_names)
    assert frozen and all(name.startswith("grefel.backbone.") for name in frozen)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    after = dict(trainer.model.named_parameters())
    for name, before in seen["before"].items():
        if name in frozen:
            assert id(after[name]) not in optimised, name
            assert torch.equal(after[name].detach(), before), name
    trained = [n for n in after if n.startswith("grefel.backbone.layer2.")]
    assert any(not torch.equal(after[n].detach(), seen["before"][n]) for n in trained)


DEPTHWISE_MODEL = {"backbone": "test_efficientnet", "image_size": 32}  # a 3x3 depthwise kernel over a 2x2 map


def test_the_cpu_speed_ups_last_for_training_only_change_only_the_speed_and_are_arguments(tmp_path, monkeypatch):
    """A trainer that only evaluates switches no layer and keeps malloc as it is. Training switches the slow
    depthwise layers (state dict unchanged), takes their per-tap weight gradient, and switches them back at the end, in
    the model and its EMA copy; two deterministic steps end at the weights PyTorch's own gradient gives. Both
    speed-ups are arguments."""
    from grefel_hf.training.depthwise import GReFELDepthwiseConv2d

    def switched(module):
        return sum(isinstance(m, GReFELDepthwiseConv2d) for m in module.modules())

    malloc_calls, during_training, taken = [], [], []
    monkeypatch.setattr(trainer_module, "reuse_freed_memory", lambda: malloc_calls.append(True) or True)
    original = GReFELDepthwiseConv2d.uses_tap_weight_grad
    monkeypatch.setattr(GReFELDepthwiseConv2d, "uses_tap_weight_grad",
                        lambda self, inputs: taken.append(original(self, inputs)) or taken[-1])

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            during_training.append(switched(model))

    weights = {}
    for on in (True, False):
        settings = {**_deterministic(), "use_ema": True, "fast_depthwise_grad": on, "keep_freed_memory": on}
        model_args, data_args, training_args = _args(tmp_path / str(on), model=DEPTHWISE_MODEL, max_steps=2,
                                                     **settings)
        data = prepare_training_data(load_dataset_dict(data_args), data_args)
        set_seed(7)
        model = build_model(model_args, data.label_names)
        initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        processor = build_image_processor(model.config)
        trainer = build_trainer(model, processor, attach_transforms(data, processor, {}), training_args)
        trainer.add_callback(Spy())
        calls_before = len(malloc_calls)
        trainer.evaluate()
        assert switched(trainer.model) == 0 and len(malloc_calls) == calls_before  # only evaluating: nothing
        trainer.train()
        assert switched(trainer.model) == 0 and switched(trainer.ema_callback.ema.module) == 0
        weights[on] = trainer.model.state_dict()
        assert weights[on].keys() == initial.keys()
    assert during_training[0] > 0 and during_training[2] == 0 and any(taken)  # switched and taken, when asked
    assert malloc_calls == [True]  # when training started, when asked
    dw_weight = "grefel.backbone.blocks.4.0.conv_dw.weight"  # the layer in the slow regime
    assert not torch.allclose(weights[True][dw_weight], initial[dw_weight], atol=1e-4)  # it trained
    _assert_same_weights(weights[True], weights[False], atol=1e-5)


def test_parameter_groups_give_backbone_and_anchors_their_own_learning_rates():
    model = GReFELForImageClassification(tiny_grefel_config("test_resnet"))
    decay = [n for n, p in model.named_parameters() if p.dim() > 1]
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 0.05, decay, backbone_lr_multiplier=0.1,
                                                     anchor_lr_multiplier=5.0, anchor_weight_decay=0.0)}
    assert list(groups)[0].startswith("head")
    assert groups["backbone_decay"]["lr"] == pytest.approx(1e-4)
    assert groups["anchors"]["lr"] == pytest.approx(5e-3) and groups["anchors"]["weight_decay"] == 0.0
    assert groups["anchors"]["params"][0] is model.grefel.anchors
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    grouped = sum(len(g["params"]) for g in groups.values())
    assert grouped == sum(1 for p in model.parameters() if p.requires_grad)


def test_trust_ramp_follows_the_global_step(tmp_path, monkeypatch):
    seen = []

    class Spy(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            seen.append((state.global_step, self.trainer.trust))

    def build(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(Spy(trainer))
        return trainer

    monkeypatch.setattr(run_module, "build_trainer", build)
    run_training(*_args(tmp_path, max_steps=4, **_deterministic()))
    # τ is set before each step from the steps already taken: 0/4, 1/4, 2/4, 3/4
    assert [trust for _, trust in seen] == pytest.approx([0.0, 0.25, 0.5, 0.75])


@pytest.mark.slow
def test_resume_after_a_crash_matches_the_uninterrupted_run(tmp_path, monkeypatch):
    settings = dict(max_steps=6, save_strategy="steps", save_steps=3, use_ema=True, mix_prob=1.0)
    full = run_training(*_args(tmp_path / "full", **settings))

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("simulated crash after checkpoint-3")

    # the crash callback runs after the EMA callback, so checkpoint-3/ema exists
    build_with_crash, original = _with_callback(Crash())
    monkeypatch.setattr(run_module, "build_trainer", build_with_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(*_args(tmp_path / "crashed", **settings))
    monkeypatch.setattr(run_module, "build_trainer", original)
    assert (tmp_path / "crashed" / "checkpoint-3" / "ema" / "model.safetensors").is_file()
    assert not (tmp_path / "crashed" / "model.safetensors").exists()
    checkpoint = str(tmp_path / "crashed" / "checkpoint-3")
    resumed = run_training(*_args(tmp_path / "crashed", resume_from_checkpoint=checkpoint, **settings))
    for key in ("eval_loss", "eval_accuracy", "eval_ema_loss", "eval_ema_accuracy"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], abs=1e-4), key
    _assert_same_weights(_final_weights(tmp_path / "full"), _final_weights(tmp_path / "crashed"), atol=1e-4)


def _launch(args, cwd, env_extra=None, processes=1):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if processes > 1:
        launcher += ["--multi_gpu", "--num_processes", str(processes)]
    else:
        launcher += ["--num_processes", "1"]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return subprocess.run([*launcher, os.path.join(REPO_ROOT, "train_hf.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _cli(output_dir, batch_size):
    return ["--output_dir", str(output_dir), "--backbone", "test_vit", "--image_size", "32", "--embed_dim", "32",
            "--anchors_per_class", "2", "--num_attention_heads", "4", "--dropout", "0.0",
            "--max_train_samples", "8", "--max_eval_samples", "16", "--max_steps", "1",
            "--per_device_train_batch_size", str(batch_size), "--augment", "false", "--mix_prob", "0",
            "--use_ema", "false", "--optim", "sgd", "--learning_rate", "0.5", "--max_grad_norm", "0",
            "--warmup_steps", "0", "--lr_scheduler_type", "constant", "--eval_strategy", "no",
            "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true", "--logging_steps", "1"]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """accelerate launch with 2 CPU processes (gloo DDP) trains the same step as 1 process, writes one model."""
    single = _launch(_cli(tmp_path / "single", 8), cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _launch(_cli(tmp_path / "ddp", 4), cwd=tmp_path, processes=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # 8 images in one step is a full epoch only if both processes took 4 (one process alone would be at 0.5)
    assert json.loads((tmp_path / "ddp" / "train_results.json").read_text())["epoch"] == pytest.approx(1.0)
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.safetensors")) == ["model.safetensors"]

    def logged_loss(run):  # the step's logged loss is gathered over processes (train_loss is rank 0's alone)
        history = json.loads((tmp_path / run / "trainer_state.json").read_text())["log_history"]
        return next(entry["loss"] for entry in history if "loss" in entry)

    assert logged_loss("ddp") == pytest.approx(logged_loss("single"), rel=1e-4)
    _assert_same_weights(_final_weights(tmp_path / "single"), _final_weights(tmp_path / "ddp"), atol=1e-5)


def test_class_balancing_by_loss_weights_and_by_sampler(tmp_path, monkeypatch):
    seen = {}

    def build_and_record(*args, **kwargs):
        seen["trainer"] = build_trainer(*args, **kwargs)
        return seen["trainer"]

    monkeypatch.setattr(run_module, "build_trainer", build_and_record)
    run_training(*_args(tmp_path, max_steps=1, data={"max_train_samples": 40}, class_balance="weights",
                        **_deterministic()))
    data_args = DataArguments(max_train_samples=40, max_eval_samples=8)
    train = prepare_training_data(load_dataset_dict(data_args), data_args).train
    counts = np.bincount(np.asarray(train["label"][:]), minlength=7)
    weights = np.asarray(seen["trainer"].objective.class_weights)
    present = counts > 0
    np.testing.assert_allclose(weights[present] * counts[present], (weights * counts)[present][0])  # ∝ 1/count
    assert weights[present].mean() == pytest.approx(1.0)
    assert "class_weights" not in json.loads((tmp_path / "config.json").read_text())  # a training setting

    model_args, _, training_args = _args(tmp_path / "sampler", class_balance="sampler")
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    loss_weights, sample_weights = run_module.class_balance_weights(data, training_args)
    assert loss_weights is None and len(sample_weights) == 40
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    trainer = build_trainer(model, processor, attach_transforms(data, processor, {}), training_args,
                            sample_weights=sample_weights)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, WeightedRandomSampler)
    mass = np.bincount(np.asarray(data.train["label"][:]), weights=sample_weights, minlength=7)
    np.testing.assert_allclose(mass[present], mass[present][0])  # every class drawn equally often on average

    training_args.class_balance_power = 0.5  # square-root balancing: a class's draws ∝ sqrt(its count)
    _, tempered = run_module.class_balance_weights(data, training_args)
    mass = np.bincount(np.asarray(data.train["label"][:]), weights=tempered, minlength=7)
    np.testing.assert_allclose(mass[present] / np.sqrt(counts[present]), mass[present][0] / np.sqrt(counts[present][0]))
    assert counts[present].min() < counts[present].max()  # so equal draws per class would fail the line above


@pytest.mark.parametrize("power", [0.0, -1.0, 1.5])
def test_class_balance_power_out_of_range_is_refused(tmp_path, power):
    with pytest.raises(ValueError, match=r"--class_balance_power must be in \(0, 1\]"):
        _args(tmp_path, class_balance="sampler", class_balance_power=power)


def test_class_balance_power_without_class_balance_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--class_balance_power 0.5 has no effect without --class_balance"):
        _args(tmp_path, class_balance_power=0.5)


def test_the_objective_comes_from_the_training_arguments(tmp_path):
    model_args, data_args, training_args = _args(tmp_path, label_smoothing_factor=0.2, path_loss_weight=2.0,
                                                 center_loss_weight=0.0)
    data = prepare_training_data(load_dataset_dict(data_args), data_args)
    model = build_model(model_args, data.label_names)
    processor = build_image_processor(model.config)
    trainer = build_trainer(model, processor, attach_transforms(data, processor, {}), training_args)
    objective = trainer.objective
    assert not hasattr(trainer.model, "objective")  # the model holds no training state
    assert (objective.label_smoothing, objective.path_loss_weight, objective.center_loss_weight) == (0.2, 2.0, 0.0)
    assert trainer.train_collator.collator.label_smoothing == 0.2  # folded into the mixed soft targets
    with pytest.raises(ValueError, match=r"--label_smoothing_factor must be in \[0, 1\), got 1.5"):
        GReFELTrainingArguments(output_dir=str(tmp_path), use_cpu=True, label_smoothing_factor=1.5)
    embedding_model, _, bad_args = _args(tmp_path, model={"primary_input": "embedding"}, branch_gradient_scale=0.0)
    with pytest.raises(ValueError, match="branch_gradient_scale=0 with primary_input='embedding'"):
        build_trainer(build_model(embedding_model, data.label_names), processor,
                      attach_transforms(data, processor, {}), bad_args)
