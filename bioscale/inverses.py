"""Inverse (feedback) layers for target propagation: g_l(h_l; λ_l) = σ(V_l h_l + c_l), K members at once.

An inverse maps a layer's output space back to its input space with its own trainable weights
V_l and biases c_l (never the forward ones), followed by the net's activation. Each layer family
has its transposed geometry:

- linear: V has the shape of Wᵀ (a plain linear map);
- locally connected: V has the forward weight's shape and the sparsity of Wᵀ, applied as the
  vector-Jacobian product of an LC map (`lc2d_input_grad`: a batched matmul, then a fold);
  c has one bias per unit of the layer's input;
- convolutional: a transposed convolution with its own shared weights and one bias per channel.

Like the forward layers, every weight has a leading member dimension and every activity is
(K, batch, ...). The maps are pure functions of (input, weights), each testable on its own; the
modules only hold the weights and the geometry. `inverse_of(layer, input_shape, activation,
generators)` builds the right inverse by the forward layer's type.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (Activation, Conv2d, Linear, LocallyConnected2d, MemberLayer, _grouped, _members, glorot_, lc2d,
                     lc2d_input_grad, lc2d_patches, linear, linear_weight)


def linear_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """V h + c for a linear layer; `weight` is (K, input units, output units), the output is reshaped."""
    return linear(h.flatten(2), weight, bias).view(*h.shape[:2], *output_shape)


class _LcTranspose(torch.autograd.Function):
    """V h, the transpose map of a locally connected layer, with its vector-Jacobian products written out.

    Autograd through the map's fold would build one zero tensor of the unfolded size per kernel
    offset; the products are the forward maps instead: for h the LC map of the output gradient,
    for V the batched matmul of h's columns with the output gradient's patches, taken with the
    operands' layout autograd gives that matmul, so that the gradient is the same to the bit.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, output_shape: tuple[int, ...], kernel_size: int, stride: int,
                padding: int) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.geometry = (kernel_size, stride, padding)
        return lc2d_input_grad(h, weight, output_shape, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, weight = ctx.saved_tensors
        grad_h = lc2d(grad, weight, None, *ctx.geometry) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            members, batch, out_channels = h.shape[:3]
            columns = h.reshape(members, batch, out_channels, -1).permute(0, 3, 1, 2).reshape(-1, batch, out_channels)
            patches = lc2d_patches(grad, *ctx.geometry)
            grad_weight = torch.bmm(columns.transpose(1, 2), patches).view(weight.shape)
        return grad_h, grad_weight, None, None, None, None


def lc_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, int, int],
               kernel_size: int, stride: int, padding: int) -> Tensor:
    """V h + c for a locally connected layer: `weight` shaped like the forward one, used transposed."""
    shape = (*h.shape[:2], *output_shape)
    return _LcTranspose.apply(h, weight, shape, kernel_size, stride, padding) + bias.unsqueeze(1)


def conv_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, int, int],
                 stride: int, padding: int) -> Tensor:
    """V h + c for a convolution: a transposed convolution (one group per member) sized to give back the input's shape."""
    members, kernel = weight.shape[0], weight.shape[-2:]
    output_padding = tuple(size - ((h.shape[3 + i] - 1) * stride - 2 * padding + kernel[i])
                           for i, size in enumerate(output_shape[1:]))
    out = F.conv_transpose2d(_grouped(h), weight.flatten(0, 1), bias.flatten(), stride=stride, padding=padding,
                             output_padding=output_padding, groups=members)
    return _members(out, members)


class Inverse(nn.Module):
    """g(h) = σ(V h + c) from a layer's output space to its input space (`output_shape`)."""

    def __init__(self, weight: Tensor, bias_shape: tuple[int, ...], fans: tuple[int, int],
                 activation: Activation, output_shape: tuple[int, ...], generators: list[torch.Generator]) -> None:
        super().__init__()
        self.activation, self.output_shape, self.fans = activation, tuple(output_shape), fans
        self.weight = nn.Parameter(weight)  # uninitialised: reset_parameters draws it
        self.bias = nn.Parameter(torch.empty(bias_shape))
        self.reset_parameters(generators)

    def reset_parameters(self, generators: list[torch.Generator]) -> None:
        """Glorot-uniform V (the forward layer's fans, which Glorot treats symmetrically); zero c."""
        glorot_(self.weight, *self.fans, generators)
        nn.init.zeros_(self.bias)

    def pre_activation(self, h: Tensor) -> Tensor:
        """V h + c."""
        raise NotImplementedError

    def forward(self, h: Tensor) -> Tensor:
        return self.activation(self.pre_activation(h))

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, output_shape={self.output_shape}, activation={self.activation.name}"


class LinearInverse(Inverse):
    """Inverse of a fully connected layer (or of the output layer): V has Wᵀ's shape."""

    def __init__(self, in_units: int, output_shape: tuple[int, ...], activation: Activation,
                 generators: list[torch.Generator]) -> None:
        units = math.prod(output_shape)
        members = len(generators)
        super().__init__(linear_weight(members, units, in_units), (members, units), (in_units, units), activation,
                         output_shape, generators)

    def pre_activation(self, h: Tensor) -> Tensor:
        return linear_inverse(h, self.weight, self.bias, self.output_shape)


class LocallyConnectedInverse(Inverse):
    """Inverse of a locally connected layer: the sparsity of Wᵀ with its own weights."""

    def __init__(self, layer: LocallyConnected2d, activation: Activation, generators: list[torch.Generator]) -> None:
        self.geometry = layer.geometry
        shape = (layer.in_channels, *layer.input_size)
        super().__init__(torch.empty(layer.weight.shape), (layer.members, *shape), layer.fans(), activation, shape, generators)

    def pre_activation(self, h: Tensor) -> Tensor:
        return lc_inverse(h, self.weight, self.bias, self.output_shape, *self.geometry)


class ConvInverse(Inverse):
    """Inverse of a convolution: a transposed convolution with its own shared weights."""

    def __init__(self, layer: Conv2d, input_shape: tuple[int, int, int], activation: Activation,
                 generators: list[torch.Generator]) -> None:
        self.stride, self.padding = layer.stride, layer.padding
        super().__init__(torch.empty(layer.weight.shape), (layer.members, layer.in_channels), layer.fans(), activation,
                         input_shape, generators)

    def pre_activation(self, h: Tensor) -> Tensor:
        return conv_inverse(h, self.weight, self.bias, self.output_shape, self.stride, self.padding)


def inverse_of(layer: MemberLayer, input_shape: tuple[int, ...], activation: Activation,
               generators: list[torch.Generator]) -> Inverse:
    """The inverse of forward `layer`, whose input has shape `input_shape` (without members and batch)."""
    if isinstance(layer, Linear):
        return LinearInverse(layer.out_features, tuple(input_shape), activation, generators)
    if isinstance(layer, LocallyConnected2d):
        return LocallyConnectedInverse(layer, activation, generators)
    if isinstance(layer, Conv2d):
        return ConvInverse(layer, tuple(input_shape), activation, generators)
    raise TypeError(f"no inverse for {type(layer).__name__}")


class DirectFeedback(nn.Module):
    """Q e: a linear map (no bias, no activation) from the output's `in_units` straight to a layer of shape `output_shape`.

    DDTP's feedback: Q (K, units, in_units), Glorot-uniform, trainable.
    """

    def __init__(self, in_units: int, output_shape: tuple[int, ...], generators: list[torch.Generator]) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        units = math.prod(output_shape)
        self.weight = nn.Parameter(glorot_(linear_weight(len(generators), units, in_units), in_units, units, generators))

    def forward(self, e: Tensor) -> Tensor:
        return linear_inverse(e, self.weight, None, self.output_shape)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, output_shape={self.output_shape}"


class RandomFeatures(nn.Module):
    """z = tanh(R h): fixed random features (Glorot, no bias, one R per member), a buffer that is never trained."""

    def __init__(self, in_units: int, size: int, generators: list[torch.Generator]) -> None:
        super().__init__()
        self.register_buffer("weight", glorot_(torch.empty(len(generators), size, in_units), in_units, size, generators))

    def forward(self, h: Tensor) -> Tensor:
        return torch.tanh(linear(h.flatten(2), self.weight, None))

    def extra_repr(self) -> str:
        return f"in_units={self.weight.shape[2]}, size={self.weight.shape[1]}, members={self.weight.shape[0]}"
