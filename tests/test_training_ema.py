"""Tests for grefel_hf.training.ema: EMA math, weight swapping and the Trainer callback."""

import json
import os

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, Trainer, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from grefel_hf.training.ema import GReFELEMACallback, GReFELModelEMA, swap_weights, unwrap_model


def tiny_bn_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def train_a_little(model: nn.Module, steps: int = 3) -> None:
    """Change parameters and BatchNorm statistics (including num_batches_tracked)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_decay_warmup_values():
    ema = GReFELModelEMA(nn.Linear(2, 2), decay=0.999, warmup_gamma=1.0, warmup_power=2 / 3)
    assert ema.get_decay(0) == 0.0
    assert ema.get_decay(1) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema.get_decay(9) == pytest.approx(1 - 10 ** (-2 / 3))
    assert ema.get_decay(10**9) == 0.999  # clamped to the final decay
    decays = [ema.get_decay(step) for step in range(0, 5000, 50)]
    assert decays == sorted(decays)
    gamma = GReFELModelEMA(nn.Linear(2, 2), decay=0.9999, warmup_gamma=10.0, warmup_power=0.75)
    assert gamma.get_decay(30) == pytest.approx(1 - 4 ** (-0.75))
    floor = GReFELModelEMA(nn.Linear(2, 2), decay=0.99, min_decay=0.5)
    assert floor.get_decay(1) == 0.5
    fixed = GReFELModelEMA(nn.Linear(2, 2), decay=0.95, use_warmup=False)
    assert fixed.get_decay(0) == fixed.get_decay(1000) == 0.95


def test_update_matches_hand_computation():
    model = tiny_bn_model()
    ema = GReFELModelEMA(model, decay=0.9, use_warmup=False)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    train_a_little(model)
    assert model[1].num_batches_tracked.item() == 3
    ema.update(model, step=3)
    after, current = ema.module.state_dict(), model.state_dict()
    for key, value in after.items():
        if value.is_floating_point():
            expected = before[key] + 0.1 * (current[key] - before[key])
            torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
            assert not torch.equal(value, current[key])
        else:
            assert torch.equal(value, current[key])  # num_batches_tracked is copied, not averaged
    assert after["1.num_batches_tracked"].item() == 3
    assert ema.step == 3


def test_update_uses_the_warmup_decay_of_each_step():
    model = tiny_bn_model()
    ema = GReFELModelEMA(model, decay=0.9999)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)  # step defaults to 1
    weight = 1 - ema.get_decay(1)
    torch.testing.assert_close(ema.module[0].weight, start + weight * 1.0)
    ema.update(model)
    assert ema.step == 2


def test_ema_copy_is_independent_eval_and_frozen():
    model = tiny_bn_model()
    ema = GReFELModelEMA(model)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        model[0].weight.zero_()
    assert ema.module[0].weight.abs().sum() > 0


def test_unwraps_data_parallel_and_ddp(tmp_path):
    model = tiny_bn_model()
    assert unwrap_model(nn.DataParallel(model)) is model
    ema = GReFELModelEMA(nn.DataParallel(model), decay=0.5, use_warmup=False)
    assert isinstance(ema.module, nn.Sequential)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert unwrap_model(ddp) is model
        with torch.no_grad():
            model[3].bias.fill_(2.0)
        ema_bias_before = ema.module[3].bias.clone()
        ema.update(ddp, step=1)
        torch.testing.assert_close(ema.module[3].bias, (ema_bias_before + 2.0) / 2)
    finally:
        dist.destroy_process_group()


def test_structure_mismatch_is_rejected():
    ema = GReFELModelEMA(tiny_bn_model())
    with pytest.raises(ValueError, match="does not match"):
        ema.update(nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)))
    with pytest.raises(ValueError, match="structure differs"):
        ema.update(nn.Linear(3, 4))


def test_swap_weights_restores_originals_even_on_error():
    model = tiny_bn_model(seed=0)
    ema = GReFELModelEMA(tiny_bn_model(seed=1))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    parameter_ids = [id(p) for p in model.parameters()]
    with swap_weights(model, ema):
        for key, value in model.state_dict().items():
            assert torch.equal(value, ema.module.state_dict()[key])
        assert not torch.equal(model[0].weight, original["0.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])
    with pytest.raises(RuntimeError, match="boom"), swap_weights(model, ema.module):
        raise RuntimeError("boom")
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])
    assert [id(p) for p in model.parameters()] == parameter_ids


def test_state_dict_round_trip():
    model = tiny_bn_model()
    ema = GReFELModelEMA(model, decay=0.99)
    train_a_little(model)
    ema.update(model, step=7)
    clone = GReFELModelEMA(tiny_bn_model(seed=5), decay=0.99)
    clone.load_state_dict(ema.state_dict())
    assert clone.step == 7
    for key, value in clone.module.state_dict().items():
        assert torch.equal(value, ema.module.state_dict()[key])


# ----------------------------------------------------------------------------------------------------------
# The callback in real (tiny, CPU) Trainer runs
# ----------------------------------------------------------------------------------------------------------


class TinyConfig(PreTrainedConfig):
    model_type = "grefel_ema_test_tiny"
    hidden_size: int = 8


class TinyModel(PreTrainedModel):
    config_class = TinyConfig
    main_input_name = "pixel_values"

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.encoder = nn.Linear(4, config.hidden_size)
        self.norm = nn.BatchNorm1d(config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
    ) -> SequenceClassifierOutput:
        logits = self.classifier(torch.relu(self.norm(self.encoder(pixel_values))))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def tiny_dataset(count: int = 24) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(count, 4, generator=generator)
    return [{"pixel_values": features[i], "labels": int(i % 3)} for i in range(count)]


def run_trainer(
    output_dir, max_steps: int, callback: GReFELEMACallback, resume: str | None = None
) -> Trainer:
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(num_labels=3))
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=0.05,
        lr_scheduler_type="constant",  # so a 2-step run + resume matches a 3-step run exactly
        save_strategy="steps",
        save_steps=1,
        logging_steps=1,
        use_cpu=True,
        report_to=[],
        dataloader_pin_memory=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=tiny_dataset(), callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_callback_saves_and_restores_ema_checkpoints(tmp_path):
    callback = GReFELEMACallback(decay=0.99)
    trainer = run_trainer(tmp_path, max_steps=3, callback=callback)
    ema_state = callback.ema.module.state_dict()
    assert callback.ema.step == 3
    # The EMA followed the model but is not the model.
    assert not torch.equal(ema_state["encoder.weight"], trainer.model.encoder.weight)
    for step in (1, 2, 3):
        ema_dir = tmp_path / f"checkpoint-{step}" / "ema"
        assert (ema_dir / "model.safetensors").is_file()
        assert (ema_dir / "config.json").is_file()
        saved = json.loads((ema_dir / "ema_state.json").read_text())
        assert saved["step"] == step
        assert saved["decay"] == 0.99
    final = load_file(tmp_path / "checkpoint-3" / "ema" / "model.safetensors")
    for key, value in final.items():
        assert torch.equal(value, ema_state[key])

    restored = GReFELEMACallback(decay=0.99)
    restored.ema = GReFELModelEMA(TinyModel(TinyConfig(num_labels=3)), decay=0.99)
    restored.load_from_checkpoint(str(tmp_path / "checkpoint-3"))
    assert restored.ema.step == 3
    for key, value in restored.ema.module.state_dict().items():
        assert torch.equal(value, ema_state[key])
    # The saved folder is also a loadable transformers model.
    reloaded = TinyModel.from_pretrained(tmp_path / "checkpoint-3" / "ema")
    torch.testing.assert_close(reloaded.encoder.weight, ema_state["encoder.weight"], rtol=0, atol=0)


def test_resumed_training_continues_the_same_ema(tmp_path):
    uninterrupted = GReFELEMACallback(decay=0.99)
    run_trainer(tmp_path / "full", max_steps=3, callback=uninterrupted)

    run_trainer(tmp_path / "split", max_steps=2, callback=GReFELEMACallback(decay=0.99))
    resumed = GReFELEMACallback(decay=0.99)
    # No explicit path: the callback finds checkpoint-<global_step>/ema in output_dir by itself.
    run_trainer(
        tmp_path / "split", max_steps=3, callback=resumed, resume=str(tmp_path / "split" / "checkpoint-2")
    )
    assert resumed.ema.step == 3
    expected = uninterrupted.ema.module.state_dict()
    for key, value in resumed.ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)


def test_load_from_checkpoint_errors(tmp_path):
    callback = GReFELEMACallback()
    with pytest.raises(ValueError, match="before on_train_begin"):
        callback.load_from_checkpoint(str(tmp_path))
    callback.ema = GReFELModelEMA(TinyModel(TinyConfig(num_labels=3)))
    with pytest.raises(FileNotFoundError, match="no EMA folder"):
        callback.load_from_checkpoint(str(tmp_path))
    os.makedirs(tmp_path / "ema")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        callback.load_from_checkpoint(str(tmp_path))


def test_update_pairs_the_tensors_once_per_model(monkeypatch):
    import grefel_hf.training.ema as ema_module

    calls = []
    original = ema_module._paired_tensors
    monkeypatch.setattr(ema_module, "_paired_tensors", lambda *a: calls.append(1) or original(*a))
    model = tiny_bn_model()
    ema = GReFELModelEMA(model, decay=0.5, use_warmup=False)
    expected = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for _ in range(3):
        train_a_little(model, steps=1)  # parameters and BatchNorm statistics change in place
        ema.update(model)
        for key, value in model.state_dict().items():
            expected[key] = expected[key] + 0.5 * (value - expected[key]) if value.is_floating_point() else value.clone()
    assert len(calls) == 1  # paired at the first update only
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-7)
    ema.update(tiny_bn_model(seed=1))  # another model object: paired afresh
    assert len(calls) == 2
