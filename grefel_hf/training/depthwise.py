"""A fast weight gradient for depthwise convolutions whose kernel is larger than their input map, on CPU.

PyTorch's CPU weight gradient of a depthwise convolution (oneDNN, and the native fallback alike) becomes pathological
when the kernel is larger than the feature map it slides over, which is where EfficientNet's last stages run on FER's
small faces: the 5x5 depthwise kernels of EfficientNet-Lite0's 1152-channel stage see 3x3 maps at 80 px and 2x2 maps at
64 px. Measured on a 2-core AMD EPYC (AVX2), batch 64, channels-last: 82 ms for the weight gradient of one such layer
where its forward pass and its input gradient take 0.7 ms each, and 9.5 ms for the per-tap weight gradient below.
Replacing it makes a whole training step 0.52x to 0.77x as long (`benchmarks/cpu_step_speedups.py`).

The weight gradient of a depthwise convolution is, for each kernel tap, a sum over batch and output positions of the
output gradient times the input shifted by that tap. Computed that way (one multiply-and-reduce per tap) it costs
about as much as the forward pass. `GReFELDepthwiseConv2d` uses it only in the pathological regime: training on CPU,
kernel larger than the input in some dimension. Everywhere else (larger maps, evaluation, GPUs) it is exactly
`nn.Conv2d`. The result is the same gradient up to float rounding (the tests compare it with autograd's).

`use_fast_depthwise_weight_grad(model)` switches a model's depthwise `nn.Conv2d` layers over in place, and
`use_native_depthwise_weight_grad(model)` switches them back. Neither changes a parameter, buffer or state-dict key, so
checkpoints and saved models are unaffected. `GReFELTrainer` switches them for the duration of `train()` only, when the
training argument `--fast_depthwise_grad` is on (the default) and training runs on CPU.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)


def depthwise_weight_grad(inputs: torch.Tensor, grad_output: torch.Tensor, kernel_size: tuple[int, int],
                          stride: tuple[int, int], padding: tuple[int, int],
                          dilation: tuple[int, int]) -> torch.Tensor:
    """The gradient of a depthwise convolution's weight (C, 1, kH, kW), one multiply-and-reduce per kernel tap.

    `inputs` is the convolution's input (B, C, H, W), `grad_output` the gradient of its output (B, C, Ho, Wo).
    """
    (k_h, k_w), (s_h, s_w), (d_h, d_w) = kernel_size, stride, dilation
    out_h, out_w = grad_output.shape[-2:]
    padded = F.pad(inputs, (padding[1], padding[1], padding[0], padding[0]))
    grad_weight = inputs.new_empty(inputs.shape[1], k_h, k_w)
    for row in range(k_h):
        top = row * d_h
        for col in range(k_w):
            left = col * d_w
            window = padded[:, :, top:top + s_h * (out_h - 1) + 1:s_h, left:left + s_w * (out_w - 1) + 1:s_w]
            grad_weight[:, row, col] = (window * grad_output).sum(dim=(0, 2, 3))
    return grad_weight.unsqueeze(1)


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """conv2d(groups=C) whose backward takes the input gradient from PyTorch and the weight gradient per tap."""

    @staticmethod
    def forward(ctx, inputs, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(inputs, weight)
        ctx.conv = (stride, padding, dilation)
        ctx.has_bias = bias is not None
        return F.conv2d(inputs, weight, bias, stride, padding, dilation, groups=inputs.shape[1])

    @staticmethod
    def backward(ctx, grad_output):
        inputs, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad_output, inputs, weight, None, list(stride), list(padding), list(dilation), False, [0, 0],
                inputs.shape[1], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = depthwise_weight_grad(inputs, grad_output, weight.shape[-2:], stride, padding, dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=(0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None, None


class GReFELDepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d` for depthwise layers, with the per-tap weight gradient where PyTorch's CPU one is pathological.

    Same parameters, state-dict keys and forward values as `nn.Conv2d`; see the module docstring.
    """

    def uses_tap_weight_grad(self, inputs: torch.Tensor) -> bool:
        """Whether this forward pass takes the per-tap weight gradient (training on CPU, kernel larger than the
        input map in some dimension)."""
        if not (torch.is_grad_enabled() and self.weight.requires_grad and inputs.device.type == "cpu"):
            return False
        span_h = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        span_w = self.dilation[1] * (self.kernel_size[1] - 1) + 1
        return span_h > inputs.shape[-2] or span_w > inputs.shape[-1]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.uses_tap_weight_grad(inputs):
            return super().forward(inputs)
        return _DepthwiseConv2dFunction.apply(inputs, self.weight, self.bias, self.stride, self.padding,
                                              self.dilation)


def is_depthwise_conv(module: nn.Module) -> bool:
    """An exact `nn.Conv2d` (not a subclass with its own forward) that convolves each channel on its own, with
    numeric zero padding."""
    return (type(module) is nn.Conv2d and module.groups > 1 and module.groups == module.in_channels
            == module.out_channels and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def use_fast_depthwise_weight_grad(model: nn.Module) -> int:
    """Switch every depthwise `nn.Conv2d` of `model` to `GReFELDepthwiseConv2d`, in place; return how many.

    Only the class changes: the modules keep their parameters, buffers, hooks and state-dict keys.
    """
    count = 0
    for module in model.modules():
        if is_depthwise_conv(module):
            module.__class__ = GReFELDepthwiseConv2d
            count += 1
    logger.info("%d depthwise convolutions use the per-tap weight gradient where their kernel exceeds the map", count)
    return count


def use_native_depthwise_weight_grad(model: nn.Module) -> int:
    """Switch every `GReFELDepthwiseConv2d` of `model` back to `nn.Conv2d`, in place; return how many."""
    count = 0
    for module in model.modules():
        if type(module) is GReFELDepthwiseConv2d:
            module.__class__ = nn.Conv2d
            count += 1
    return count


__all__ = ["GReFELDepthwiseConv2d", "depthwise_weight_grad", "is_depthwise_conv", "use_fast_depthwise_weight_grad",
           "use_native_depthwise_weight_grad"]
