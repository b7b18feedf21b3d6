"""Test-time augmentation of the Trainer's evaluations (`--eval_tta_views`), with grefel_hf.tta_grefel's views:
one view is plain evaluation; identity and flip give the mean of the two distributions and reliabilities."""

import pytest
import torch

from grefel_hf.data.collators import GReFELEvalCollator
from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments
from grefel_hf.training.model_arguments import ModelArguments
from grefel_hf.training.run import prepare_run


def _trainer(tmp_path, views, model_type):
    model_args = ModelArguments(model_type=model_type, backbone="test_resnet", image_size=32,
                                **({"embed_dim": 32, "num_attention_heads": 4} if model_type == "grefel" else {}))
    training_args = GReFELTrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, eval_tta_views=views, use_ema=False,
        eval_strategy="no", save_strategy="no", use_cpu=True, disable_tqdm=True, report_to=[],
        dataloader_num_workers=0)
    return prepare_run(model_args, DataArguments(max_train_samples=8, max_eval_samples=10), training_args)


@pytest.mark.parametrize("model_type", ["grefel", "baseline"])
def test_evaluation_with_one_view_is_plain_and_with_a_flip_the_mean_of_both(model_type, tmp_path):
    plain, flipped = _trainer(tmp_path / "one", 1, model_type), _trainer(tmp_path / "two", 2, model_type)
    model = plain.model.eval()
    batch = GReFELEvalCollator()([plain.eval_dataset[i] for i in range(len(plain.eval_dataset))])
    with torch.no_grad():
        probs = model(pixel_values=batch["pixel_values"]).logits.exp()
        mirrored = model(pixel_values=batch["pixel_values"].flip(-1)).logits.exp()
    one = plain.predict(plain.eval_dataset)
    flipped.model.load_state_dict(model.state_dict())
    two = flipped.predict(flipped.eval_dataset)
    torch.testing.assert_close(torch.from_numpy(one.predictions["logits"]).exp(), probs, atol=1e-5, rtol=1e-4)
    mean = (probs + mirrored) / 2
    torch.testing.assert_close(torch.from_numpy(two.predictions["logits"]).exp(), mean, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # the reliability: the mean of the model's own over the two views
        reliability = (model(pixel_values=batch["pixel_values"]).reliability
                       + model(pixel_values=batch["pixel_values"].flip(-1)).reliability) / 2
    torch.testing.assert_close(torch.from_numpy(two.predictions["reliability"]), reliability, atol=1e-5, rtol=1e-4)
    assert two.metrics["test_loss"] == pytest.approx(one.metrics["test_loss"], rel=1e-5)  # the loss: images as they are
    assert not torch.allclose(mean, probs)  # the flip changed the answer, so the test can tell the two apart


def test_the_number_of_views_is_checked():
    with pytest.raises(ValueError, match="--eval_tta_views: the number of TTA views must be in 1..6, got 7"):
        GReFELTrainingArguments(output_dir="x", eval_tta_views=7)
