"""Inverse (feedback) layers for target propagation: g_l(h_l; λ_l) = σ(V_l h_l + c_l).

An inverse maps a layer's output space back to its input space with its own trainable weights
V_l and biases c_l (never the forward ones), followed by the net's activation. Each layer family
has its transposed geometry:

- linear: V has the shape of Wᵀ (a plain linear map);
- locally connected: V has the forward weight's shape and the sparsity of Wᵀ, applied as the
  vector-Jacobian product of an LC map (`lc2d_input_grad`: a batched matmul, then a fold);
  c has one bias per unit of the layer's input;
- convolutional: a transposed convolution with its own shared weights and one bias per channel.

The maps are pure functions of (input, weights), each testable on its own; the modules only hold
the weights and the geometry.
`inverse_of(layer, input_shape, activation)` builds the right inverse by the forward layer's type.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Activation, LocallyConnected2d, glorot_, glorot_fans, lc2d_input_grad


def linear_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """V h + c for a linear layer; `weight` is (input units, output units), the output is reshaped."""
    return F.linear(h.flatten(1), weight, bias).view(len(h), *output_shape)


def lc_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, int, int],
               kernel_size: int, stride: int, padding: int) -> Tensor:
    """V h + c for a locally connected layer: `weight` shaped like the forward one, used transposed."""
    return lc2d_input_grad(h, weight, (len(h), *output_shape), kernel_size, stride, padding) + bias


def conv_inverse(h: Tensor, weight: Tensor, bias: Tensor, output_shape: tuple[int, int, int],
                 stride: int, padding: int) -> Tensor:
    """V h + c for a convolution: a transposed convolution sized to give back the input's shape."""
    kernel = weight.shape[-2:]
    output_padding = tuple(size - ((h.shape[2 + i] - 1) * stride - 2 * padding + kernel[i])
                           for i, size in enumerate(output_shape[1:]))
    return F.conv_transpose2d(h, weight, bias, stride=stride, padding=padding, output_padding=output_padding)


class Inverse(nn.Module):
    """g(h) = σ(V h + c) from a layer's output space to its input space (`output_shape`)."""

    def __init__(self, weight_shape: tuple[int, ...], bias_shape: tuple[int, ...], fans: tuple[int, int],
                 activation: Activation, output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.activation, self.output_shape, self.fans = activation, tuple(output_shape), fans
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(bias_shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform V (the forward layer's fans, which Glorot treats symmetrically); zero c."""
        glorot_(self.weight, *self.fans)
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

    def __init__(self, in_units: int, output_shape: tuple[int, ...], activation: Activation) -> None:
        units = math.prod(output_shape)
        super().__init__((units, in_units), (units,), (in_units, units), activation, output_shape)

    def pre_activation(self, h: Tensor) -> Tensor:
        return linear_inverse(h, self.weight, self.bias, self.output_shape)


class LocallyConnectedInverse(Inverse):
    """Inverse of a locally connected layer: the sparsity of Wᵀ with its own weights."""

    def __init__(self, layer: LocallyConnected2d, activation: Activation) -> None:
        self.geometry = layer.geometry
        shape = (layer.in_channels, *layer.input_size)
        super().__init__(tuple(layer.weight.shape), shape, glorot_fans(layer), activation, shape)

    def pre_activation(self, h: Tensor) -> Tensor:
        return lc_inverse(h, self.weight, self.bias, self.output_shape, *self.geometry)


class ConvInverse(Inverse):
    """Inverse of a convolution: a transposed convolution with its own shared weights."""

    def __init__(self, layer: nn.Conv2d, input_shape: tuple[int, int, int], activation: Activation) -> None:
        self.stride, self.padding = layer.stride[0], layer.padding[0]
        super().__init__(tuple(layer.weight.shape), (layer.in_channels,), glorot_fans(layer), activation, input_shape)

    def pre_activation(self, h: Tensor) -> Tensor:
        return conv_inverse(h, self.weight, self.bias, self.output_shape, self.stride, self.padding)


def inverse_of(layer: nn.Module, input_shape: tuple[int, ...], activation: Activation) -> Inverse:
    """The inverse of forward `layer`, whose input has shape `input_shape` (without the batch)."""
    if isinstance(layer, nn.Linear):
        return LinearInverse(layer.out_features, tuple(input_shape), activation)
    if isinstance(layer, LocallyConnected2d):
        return LocallyConnectedInverse(layer, activation)
    if isinstance(layer, nn.Conv2d):
        return ConvInverse(layer, tuple(input_shape), activation)
    raise TypeError(f"no inverse for {type(layer).__name__}")


class RandomFeatures(nn.Module):
    """z = tanh(R h): fixed random features (Glorot, no bias), a buffer that is never trained."""

    def __init__(self, in_units: int, size: int) -> None:
        super().__init__()
        self.register_buffer("weight", glorot_(torch.empty(size, in_units), in_units, size))

    def forward(self, h: Tensor) -> Tensor:
        return torch.tanh(F.linear(h.flatten(1), self.weight))

    def extra_repr(self) -> str:
        return f"in_units={self.weight.shape[1]}, size={self.weight.shape[0]}"
