"""Layers: locally connected 2-D layers, feedback paths, and the pure maths they share.

The locally connected map and the two halves of its backward pass are pure functions of
(input, weights): `lc2d`, `lc2d_input_grad`, `lc2d_weight_grad`. For each layer family (linear,
locally connected, convolutional) an autograd Function runs the forward map with the layer's
weight and the input gradient with another matrix; `apply_with_feedback` picks the one for a
layer. Rules reuse them: the feedback-alignment family swaps the weights used for the input
gradient, and target propagation's inverses (bioscale.inverses) are built on `lc2d_input_grad`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .values import CHOICES


def same_padding(kernel_size: int) -> int:
    """Zero padding that keeps the spatial shape at stride 1 (odd kernels)."""
    return (kernel_size - 1) // 2


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial size of a convolution's output along one axis."""
    return (size + 2 * padding - kernel_size) // stride + 1


def _patches(x: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """The input's patches as one (locations, batch, in*k*k) tensor: the only unfolded copy made."""
    x = F.pad(x, (padding,) * 4)
    p = x.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)  # (B, C, oh, ow, k, k), a view
    batch, channels, oh, ow = p.shape[:4]
    return p.permute(2, 3, 0, 1, 4, 5).reshape(oh * ow, batch, channels * kernel_size**2)


def lc2d(x: Tensor, weight: Tensor, bias: Tensor | None, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Locally connected 2-D map: weight (locations, out, in*k*k), bias (out, oh, ow)."""
    batch = x.shape[0]
    oh = conv_output_size(x.shape[2], kernel_size, stride, padding)
    ow = conv_output_size(x.shape[3], kernel_size, stride, padding)
    patches, w_t = _patches(x, kernel_size, stride, padding), weight.transpose(1, 2)
    if bias is None:
        out = torch.bmm(patches, w_t)  # (L, B, out)
    else:
        out = torch.baddbmm(bias.flatten(1).t().unsqueeze(1), patches, w_t)
    return out.permute(1, 2, 0).reshape(batch, weight.shape[1], oh, ow)


def lc2d_input_grad(grad_out: Tensor, weight: Tensor, input_shape: torch.Size, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Vector-Jacobian product of `lc2d` with respect to its input (the transpose map W^T)."""
    batch, out_channels, oh, ow = grad_out.shape
    channels, height, width = input_shape[1:]
    g = grad_out.reshape(batch, out_channels, oh * ow).permute(2, 0, 1)  # (L, B, out)
    cols = torch.bmm(g, weight).view(oh, ow, batch, channels, kernel_size, kernel_size)
    grad = grad_out.new_zeros(batch, channels, height + 2 * padding, width + 2 * padding)
    # Fold by kernel offset: k*k strided adds instead of a second unfolded-sized buffer.
    for i in range(kernel_size):
        for j in range(kernel_size):
            grad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[..., i, j].permute(2, 3, 0, 1)
    return grad[:, :, padding:padding + height, padding:padding + width]


def lc2d_weight_grad(grad_out: Tensor, x: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Gradient of `lc2d` with respect to its weight, summed over the batch."""
    batch, out_channels = grad_out.shape[:2]
    g = grad_out.reshape(batch, out_channels, -1).permute(2, 1, 0)  # (L, out, B)
    return torch.bmm(g, _patches(x, kernel_size, stride, padding))


class _LocallyConnected(torch.autograd.Function):
    """`lc2d` with a hand-written backward that keeps only the input, not its unfolded copy."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, backward_weight: Tensor, geometry: tuple[int, int, int]) -> Tensor:
        return lc2d(x, weight, bias, *geometry)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, backward_weight, geometry = inputs
        ctx.save_for_backward(x, backward_weight)
        ctx.geometry = geometry
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, backward_weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = lc2d_input_grad(grad_out, backward_weight, x.shape, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            grad_w = lc2d_weight_grad(grad_out, x, *ctx.geometry)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(0)
        return grad_x, grad_w, grad_b, None, None


class _Linear(torch.autograd.Function):
    """`F.linear` whose input gradient goes through `backward_weight` instead of the weight."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, backward_weight: Tensor) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, backward_weight = inputs
        ctx.save_for_backward(x, backward_weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, backward_weight = ctx.saved_tensors
        grad_x = grad_out @ backward_weight if ctx.needs_input_grad[0] else None
        grad_w = grad_out.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class _Conv2d(torch.autograd.Function):
    """`F.conv2d` whose input gradient goes through `backward_weight` instead of the weight."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, backward_weight: Tensor, geometry: tuple[int, int]) -> Tensor:
        stride, padding = geometry
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, backward_weight, geometry = inputs
        ctx.save_for_backward(x, backward_weight)
        ctx.geometry = geometry
        ctx.weight_shape = weight.shape
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, backward_weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, backward_weight, grad_out, stride=stride, padding=padding)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, ctx.weight_shape, grad_out, stride=stride, padding=padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def apply_with_feedback(layer: nn.Module, x: Tensor, feedback: Tensor) -> Tensor:
    """Run `layer` on `x`; in the backward pass its input gradient uses `feedback` in place of its weight."""
    if isinstance(layer, nn.Linear):
        return _Linear.apply(x, layer.weight, layer.bias, feedback)
    if isinstance(layer, LocallyConnected2d):
        return _LocallyConnected.apply(x, layer.weight, layer.bias, feedback, layer.geometry)
    if isinstance(layer, nn.Conv2d):
        return _Conv2d.apply(x, layer.weight, layer.bias, feedback, (layer.stride[0], layer.padding[0]))
    raise TypeError(f"no feedback path for {type(layer).__name__}")


def glorot_(weight: Tensor, fan_in: int, fan_out: int) -> Tensor:
    """Glorot (Xavier) uniform initialisation in place, with explicit fans."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class LocallyConnected2d(nn.Module):
    """A 2-D convolution's geometry without weight sharing: every output location has its own filter.

    The input's spatial size must be given, since the number of filters depends on it. Padding
    defaults to the zero padding that keeps the shape at stride 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: tuple[int, int],
                 stride: int = 1, padding: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride = stride
        self.padding = same_padding(kernel_size) if padding is None else padding
        self.input_size = tuple(input_size)
        self.output_size = tuple(conv_output_size(s, kernel_size, stride, self.padding) for s in self.input_size)
        locations = self.output_size[0] * self.output_size[1]
        self.weight = nn.Parameter(torch.empty(locations, out_channels, in_channels * kernel_size**2))
        self.bias = nn.Parameter(torch.empty(out_channels, *self.output_size)) if bias else None
        self.reset_parameters()

    @property
    def geometry(self) -> tuple[int, int, int]:
        """(kernel_size, stride, padding), the arguments of the functional form."""
        return (self.kernel_size, self.stride, self.padding)

    def reset_parameters(self) -> None:
        """Glorot-uniform weights with the fans of the equivalent convolution; zero bias."""
        reset_glorot(self)

    def forward(self, x: Tensor) -> Tensor:
        return _LocallyConnected.apply(x, self.weight, self.bias, self.weight, self.geometry)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, input_size={self.input_size}, bias={self.bias is not None}")


def glorot_fans(layer: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a linear, convolutional or locally connected layer."""
    if isinstance(layer, LocallyConnected2d):
        k2 = layer.kernel_size**2
        return layer.in_channels * k2, layer.out_channels * k2
    receptive = layer.weight[0, 0].numel() if layer.weight.dim() > 2 else 1
    return layer.weight.shape[1] * receptive, layer.weight.shape[0] * receptive


def reset_glorot(layer: nn.Module) -> None:
    """Glorot-uniform weights and zero bias for a linear, convolutional or locally connected layer."""
    glorot_(layer.weight, *glorot_fans(layer))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity and its derivative written in terms of its output."""

    name: str

    def __call__(self, a: Tensor) -> Tensor:
        return torch.tanh(a) if self.name == "tanh" else torch.relu(a)

    def derivative(self, a: Tensor) -> Tensor:
        """σ'(a) at pre-activation `a`."""
        if self.name == "tanh":
            return 1 - torch.tanh(a) ** 2
        return (a > 0).to(a.dtype)


ACTIVATIONS = CHOICES["activation"]
