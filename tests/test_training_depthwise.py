"""The per-tap weight gradient of depthwise convolutions (grefel_hf/training/depthwise.py)."""

import copy

import pytest
import timm
import torch
from torch import nn
from torch.nn import functional as F

from grefel_hf.training.depthwise import (
    GReFELDepthwiseConv2d,
    depthwise_weight_grad,
    is_depthwise_conv,
    use_fast_depthwise_weight_grad,
)

# (channels, height, width, kernel, stride, padding, dilation): kernels larger than the map, equal to it and smaller,
# strided, dilated, asymmetric
SHAPES = [
    (8, 3, 3, 5, 1, 2, 1),
    (8, 2, 2, 3, 1, 1, 1),
    (6, 3, 5, 5, 1, 2, 1),
    (4, 5, 5, 5, 2, 2, 1),
    (4, 4, 4, 7, 1, 3, 1),
    (5, 9, 7, 3, 2, 1, 1),
    (3, 4, 4, 3, 1, 2, 2),
    (4, 6, 6, (3, 5), 1, (1, 2), 1),
]


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_weight_grad_matches_autograd(shape, channels_last):
    channels, height, width, kernel, stride, padding, dilation = shape
    kernel, stride, padding, dilation = map(_pair, (kernel, stride, padding, dilation))
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3, channels, height, width, generator=generator)
    weight = torch.randn(channels, 1, *kernel, generator=generator, requires_grad=True)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(inputs, weight, None, stride, padding, dilation, groups=channels)
    grad_output = torch.randn(out.shape, generator=generator)
    (expected,) = torch.autograd.grad(out, weight, grad_output)
    got = depthwise_weight_grad(inputs, grad_output, kernel, stride, padding, dilation)
    assert got.shape == weight.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _conv_pair(channels, kernel, padding, bias):
    reference = nn.Conv2d(channels, channels, kernel, padding=padding, groups=channels, bias=bias)
    fast = copy.deepcopy(reference)
    fast.__class__ = GReFELDepthwiseConv2d
    return reference, fast


@pytest.mark.parametrize("bias", [False, True])
def test_layer_in_the_slow_regime_gives_nn_conv2d_values_and_gradients(bias):
    reference, fast = _conv_pair(16, 5, 2, bias)
    inputs = torch.randn(4, 16, 3, 3)
    assert fast.uses_tap_weight_grad(inputs)  # 5x5 kernel over a 3x3 map
    grads = []
    for layer in (reference, fast):
        x = inputs.clone().requires_grad_()
        out = layer(x)
        out.pow(2).sum().backward()
        grads.append((out.detach(), x.grad, *(p.grad for p in layer.parameters())))
    for expected, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_layer_takes_the_tap_gradient_only_where_pytorchs_is_slow():
    _, fast = _conv_pair(8, 5, 2, False)
    small, large = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 5, 5)
    assert fast.uses_tap_weight_grad(small)
    assert not fast.uses_tap_weight_grad(large)  # the kernel fits the map: PyTorch's own gradient is fine
    assert fast.uses_tap_weight_grad(torch.randn(2, 8, 5, 2))  # too narrow in one dimension is enough
    with torch.no_grad():
        assert not fast.uses_tap_weight_grad(small)  # evaluation
    fast.weight.requires_grad_(False)
    assert not fast.uses_tap_weight_grad(small)  # a frozen layer needs no weight gradient


def test_only_plain_depthwise_convolutions_are_switched():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3),  # dense
        nn.Conv2d(8, 8, 5, padding=2, groups=8),  # depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=2),  # grouped, not depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect"),  # not zero padding
        nn.Conv2d(8, 8, 3, padding="same", groups=8),  # string padding
        timm.layers.Conv2dSame(8, 8, 3, stride=2, groups=8),  # its own forward (TF "same" padding)
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert [is_depthwise_conv(m) for m in model] == [False, True, False, False, False, False]
    assert use_fast_depthwise_weight_grad(model) == 1
    assert [type(m).__name__ for m in model] == ["Conv2d", "GReFELDepthwiseConv2d", "Conv2d", "Conv2d", "Conv2d",
                                                 "Conv2dSame"]
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_efficientnet_training_step_gives_the_same_gradients():
    """A timm EfficientNet on an input small enough that its depthwise kernels exceed the late feature maps."""
    torch.manual_seed(0)
    reference = timm.create_model("test_efficientnet", num_classes=3).train()
    fast = copy.deepcopy(reference)
    assert use_fast_depthwise_weight_grad(fast) > 0
    taken = []
    for module in fast.modules():
        if isinstance(module, GReFELDepthwiseConv2d):
            module.register_forward_pre_hook(lambda m, args: taken.append(m.uses_tap_weight_grad(args[0])))
    inputs = torch.randn(4, 3, 24, 24).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([0, 1, 2, 1])
    for model in (reference, fast):
        model.to(memory_format=torch.channels_last)
        F.cross_entropy(model(inputs), labels).backward()
    assert any(taken), "the input was meant to put at least one layer in the slow regime"
    fast_params = dict(fast.named_parameters())
    for name, param in reference.named_parameters():
        torch.testing.assert_close(fast_params[name].grad, param.grad, rtol=1e-4, atol=1e-6, msg=name)
