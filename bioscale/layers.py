"""Layers with a member axis: linear, locally connected and convolutional maps of K members at once.

Every weight has a leading member dimension K and every activity has shape (K, batch, ...); a
single network is K = 1. Each layer family is three pure functions of (input, weights): the map,
its input gradient (the transpose map) and its weight gradient, batched over members so that no
operation mixes two members. One autograd Function runs a layer's map with its weight and sends
the input gradient back through another matrix (`apply_with_feedback`): backprop passes the
weight itself, the feedback-alignment family its own matrices. Target propagation's inverses
(bioscale.inverses) reuse the transpose maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import population
from .values import CHOICES


def same_padding(kernel_size: int) -> int:
    """Zero padding that keeps the spatial shape at stride 1 (odd kernels)."""
    return (kernel_size - 1) // 2


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial size of a convolution's output along one axis."""
    return (size + 2 * padding - kernel_size) // stride + 1


# -- linear ------------------------------------------------------------------------------------

def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (K, B, in) -> (K, B, out) with weight (K, out, in), bias (K, out)."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def linear_weight(members: int, out_features: int, in_features: int) -> Tensor:
    """An uninitialised (K, out, in) weight for `linear` under autograd, laid out in memory as its (K, in, out) transpose.

    Autograd's gradient of `linear` for such a weight is a transposed matmul result; in this
    layout it is kept as it comes instead of copied into a contiguous one at every step (a
    strided copy of the whole weight). The numbers are the same to the bit.
    """
    return torch.empty(members, in_features, out_features).transpose(1, 2)


def linear_input_grad(grad_out: Tensor, weight: Tensor) -> Tensor:
    """Vector-Jacobian product of `linear` with respect to its input (Wᵀ per member)."""
    return torch.bmm(grad_out, weight)


def linear_weight_grad(grad_out: Tensor, x: Tensor) -> Tensor:
    """Gradient of `linear` with respect to its weight, summed over the batch."""
    return torch.bmm(grad_out.transpose(1, 2), x)


# -- locally connected ---------------------------------------------------------------------------

def lc2d_patches(x: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """The input's patches as one (K·locations, B, in·k·k) tensor: the only unfolded copy made."""
    x = F.pad(x, (padding,) * 4)
    p = x.unfold(3, kernel_size, stride).unfold(4, kernel_size, stride)  # (K, B, C, oh, ow, k, k), a view
    members, batch, channels, oh, ow = p.shape[:5]
    return p.permute(0, 3, 4, 1, 2, 5, 6).reshape(members * oh * ow, batch, channels * kernel_size**2)


def lc2d(x: Tensor, weight: Tensor, bias: Tensor | None, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Locally connected 2-D map of x (K, B, C, H, W): weight (K, locations, out, in·k·k), bias (K, out, oh, ow)."""
    members, batch = x.shape[:2]
    oh = conv_output_size(x.shape[3], kernel_size, stride, padding)
    ow = conv_output_size(x.shape[4], kernel_size, stride, padding)
    out_channels = weight.shape[2]
    patches, w_t = lc2d_patches(x, kernel_size, stride, padding), weight.flatten(0, 1).transpose(1, 2)
    if bias is None:
        out = torch.bmm(patches, w_t)  # (K·L, B, out)
    else:
        out = torch.baddbmm(bias.flatten(2).transpose(1, 2).reshape(-1, 1, out_channels), patches, w_t)
    return out.view(members, oh * ow, batch, out_channels).permute(0, 2, 3, 1).reshape(members, batch, out_channels, oh, ow)


def lc2d_input_grad(grad_out: Tensor, weight: Tensor, input_shape: torch.Size, kernel_size: int, stride: int,
                    padding: int) -> Tensor:
    """Vector-Jacobian product of `lc2d` with respect to its input (the transpose map Wᵀ); input_shape is (K, B, C, H, W)."""
    members, batch, out_channels, oh, ow = grad_out.shape
    channels, height, width = input_shape[2:]
    g = grad_out.reshape(members, batch, out_channels, oh * ow).permute(0, 3, 1, 2).reshape(-1, batch, out_channels)
    cols = torch.bmm(g, weight.flatten(0, 1)).view(members, oh, ow, batch, channels, kernel_size, kernel_size)
    grad = grad_out.new_zeros(members, batch, channels, height + 2 * padding, width + 2 * padding)
    # Fold by kernel offset: k*k strided adds instead of a second unfolded-sized buffer.
    for i in range(kernel_size):
        for j in range(kernel_size):
            grad[..., i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[..., i, j].permute(0, 3, 4, 1, 2)
    return grad[..., padding:padding + height, padding:padding + width]


def lc2d_weight_grad(grad_out: Tensor, x: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Gradient of `lc2d` with respect to its weight, summed over the batch."""
    members, batch, out_channels = grad_out.shape[:3]
    g = grad_out.reshape(members, batch, out_channels, -1).permute(0, 3, 2, 1).reshape(-1, out_channels, batch)
    patches = lc2d_patches(x, kernel_size, stride, padding)
    return torch.bmm(g, patches).view(members, -1, out_channels, patches.shape[-1])


# -- convolutional: K members as K groups of one grouped convolution ------------------------------

def _grouped(x: Tensor) -> Tensor:
    """(K, B, C, H, W) -> (B, K·C, H, W)."""
    return x.transpose(0, 1).flatten(1, 2)


def _members(y: Tensor, members: int) -> Tensor:
    """(B, K·C, H, W) -> (K, B, C, H, W)."""
    return y.view(y.shape[0], members, -1, *y.shape[2:]).transpose(0, 1)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int) -> Tensor:
    """Convolution of x (K, B, C, H, W) with weight (K, out, C, k, k), bias (K, out)."""
    members = weight.shape[0]
    y = F.conv2d(_grouped(x), weight.flatten(0, 1), None if bias is None else bias.flatten(),
                 stride=stride, padding=padding, groups=members)
    return _members(y, members)


def conv2d_input_grad(grad_out: Tensor, weight: Tensor, input_shape: torch.Size, stride: int, padding: int) -> Tensor:
    """Vector-Jacobian product of `conv2d` with respect to its input (a transposed convolution per member)."""
    members, batch, channels, height, width = input_shape
    grad = torch.nn.grad.conv2d_input((batch, members * channels, height, width), weight.flatten(0, 1),
                                      _grouped(grad_out), stride=stride, padding=padding, groups=members)
    return _members(grad, members)


def conv2d_weight_grad(grad_out: Tensor, x: Tensor, weight_shape: torch.Size, stride: int, padding: int) -> Tensor:
    """Gradient of `conv2d` with respect to its weight, summed over the batch."""
    members = weight_shape[0]
    grad = torch.nn.grad.conv2d_weight(_grouped(x), (members * weight_shape[1], *weight_shape[2:]), _grouped(grad_out),
                                       stride=stride, padding=padding, groups=members)
    return grad.view(weight_shape)


def conv2d_grads(grad_out: Tensor, x: Tensor, weight: Tensor, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    """`conv2d`'s input gradient through `weight` and its weight gradient from one backward convolution call.

    The weight gradient does not read the weight, so `weight` may be a feedback matrix; the two
    are the same numbers as `conv2d_input_grad` and `conv2d_weight_grad` give, for less than their cost.
    """
    members = weight.shape[0]
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        _grouped(grad_out), _grouped(x), weight.flatten(0, 1), None, [stride] * 2, [padding] * 2, [1, 1], False, [0],
        members, (True, True, False))
    return _members(grad_x, members), grad_w.view(weight.shape)


# -- modules -------------------------------------------------------------------------------------

class MemberLayer(nn.Module):
    """A weight layer of K members: `weight` (K, ...) and `bias` (K, ...), and its three pure maps."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    @property
    def members(self) -> int:
        """K, the number of members."""
        return self.weight.shape[0]

    def map(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The layer's map with the given weights."""
        raise NotImplementedError

    def input_grad(self, grad_out: Tensor, weight: Tensor, input_shape: torch.Size) -> Tensor:
        """The input gradient of `map` taken through `weight`."""
        raise NotImplementedError

    def weight_grad(self, grad_out: Tensor, x: Tensor) -> Tensor:
        """The weight gradient of `map`, summed over the batch."""
        raise NotImplementedError

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        """The bias gradient of `map`, summed over the batch (and shared locations)."""
        return grad_out.sum(1)

    def grads(self, grad_out: Tensor, weight: Tensor, x: Tensor, input_needed: bool,
              weight_needed: bool) -> tuple[Tensor | None, Tensor | None]:
        """`input_grad` through `weight` and `weight_grad`, each only where needed (a family may do both at once)."""
        return (self.input_grad(grad_out, weight, x.shape) if input_needed else None,
                self.weight_grad(grad_out, x) if weight_needed else None)

    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) for Glorot initialisation."""
        raise NotImplementedError

    def reset_parameters(self, member_generators: list[torch.Generator] | None = None) -> None:
        """Glorot-uniform weights, one generator per member (fresh ones from seed 0 if none), zero bias."""
        gens = member_generators or population.generators(range(self.members), population.INIT)
        glorot_(self.weight, *self.fans(), gens)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return apply_with_feedback(self, x, self.weight)


class Linear(MemberLayer):
    """A fully connected layer of K members: weight (K, out, in), bias (K, out)."""

    def __init__(self, in_features: int, out_features: int, members: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features)) if bias else None
        self.reset_parameters()

    def map(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return linear(x, weight, bias)

    def input_grad(self, grad_out: Tensor, weight: Tensor, input_shape: torch.Size) -> Tensor:
        return linear_input_grad(grad_out, weight)

    def weight_grad(self, grad_out: Tensor, x: Tensor) -> Tensor:
        return linear_weight_grad(grad_out, x)

    def fans(self) -> tuple[int, int]:
        return self.in_features, self.out_features

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, members={self.members}, bias={self.bias is not None}"


class Conv2d(MemberLayer):
    """A convolution of K members (zero padding keeps the shape at stride 1 by default): weight (K, out, in, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, members: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride = stride
        self.padding = same_padding(kernel_size) if padding is None else padding
        self.weight = nn.Parameter(torch.empty(members, out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(members, out_channels)) if bias else None
        self.reset_parameters()

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Spatial output size for a spatial input size."""
        return tuple(conv_output_size(s, self.kernel_size, self.stride, self.padding) for s in input_size)

    def map(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return conv2d(x, weight, bias, self.stride, self.padding)

    def input_grad(self, grad_out: Tensor, weight: Tensor, input_shape: torch.Size) -> Tensor:
        return conv2d_input_grad(grad_out, weight, input_shape, self.stride, self.padding)

    def weight_grad(self, grad_out: Tensor, x: Tensor) -> Tensor:
        return conv2d_weight_grad(grad_out, x, self.weight.shape, self.stride, self.padding)

    def grads(self, grad_out: Tensor, weight: Tensor, x: Tensor, input_needed: bool,
              weight_needed: bool) -> tuple[Tensor | None, Tensor | None]:
        if input_needed and weight_needed:
            return conv2d_grads(grad_out, x, weight, self.stride, self.padding)
        return super().grads(grad_out, weight, x, input_needed, weight_needed)

    def bias_grad(self, grad_out: Tensor) -> Tensor:
        return grad_out.sum((1, 3, 4))

    def fans(self) -> tuple[int, int]:
        k2 = self.kernel_size**2
        return self.in_channels * k2, self.out_channels * k2

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, members={self.members}, bias={self.bias is not None}")


class LocallyConnected2d(MemberLayer):
    """A 2-D convolution's geometry without weight sharing: every output location has its own filter.

    The input's spatial size must be given, since the number of filters depends on it. Padding
    defaults to the zero padding that keeps the shape at stride 1. Weight (K, locations, out, in·k·k).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: tuple[int, int],
                 stride: int = 1, padding: int | None = None, members: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride = stride
        self.padding = same_padding(kernel_size) if padding is None else padding
        self.input_size = tuple(input_size)
        self.output_size = tuple(conv_output_size(s, kernel_size, stride, self.padding) for s in self.input_size)
        locations = self.output_size[0] * self.output_size[1]
        self.weight = nn.Parameter(torch.empty(members, locations, out_channels, in_channels * kernel_size**2))
        self.bias = nn.Parameter(torch.empty(members, out_channels, *self.output_size)) if bias else None
        self.reset_parameters()

    @property
    def geometry(self) -> tuple[int, int, int]:
        """(kernel_size, stride, padding), the arguments of the functional form."""
        return (self.kernel_size, self.stride, self.padding)

    def map(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return lc2d(x, weight, bias, *self.geometry)

    def input_grad(self, grad_out: Tensor, weight: Tensor, input_shape: torch.Size) -> Tensor:
        return lc2d_input_grad(grad_out, weight, input_shape, *self.geometry)

    def weight_grad(self, grad_out: Tensor, x: Tensor) -> Tensor:
        return lc2d_weight_grad(grad_out, x, *self.geometry)

    def fans(self) -> tuple[int, int]:
        k2 = self.kernel_size**2  # the equivalent convolution's fans
        return self.in_channels * k2, self.out_channels * k2

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, input_size={self.input_size}, members={self.members}, "
                f"bias={self.bias is not None}")


class _WithFeedback(torch.autograd.Function):
    """A layer's map whose input gradient goes through `backward_weight`; keeps only the input, not its unfolded copy."""

    # forward takes ctx rather than a separate setup_context: torch binds a setup_context Function's
    # arguments through inspect.signature at every call (about 20 µs, paid by every layer of every step).
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, backward_weight: Tensor,
                layer: MemberLayer) -> Tensor:
        ctx.save_for_backward(x, backward_weight)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        return layer.map(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, backward_weight = ctx.saved_tensors
        layer = ctx.layer
        grad_x, grad_w = layer.grads(grad_out, backward_weight, x, *ctx.needs_input_grad[:2])
        grad_b = layer.bias_grad(grad_out) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None


def apply_with_feedback(layer: MemberLayer, x: Tensor, feedback: Tensor) -> Tensor:
    """Run `layer` on `x`; in the backward pass its input gradient uses `feedback` in place of its weight."""
    if not isinstance(layer, MemberLayer):
        raise TypeError(f"no feedback path for {type(layer).__name__}")
    return _WithFeedback.apply(x, layer.weight, layer.bias, feedback, layer)


class Scratch:
    """Working tensors kept from one step to the next, by key, instead of a fresh weight-sized allocation per step.

    On the CPU every fresh large tensor costs page faults, and on a GPU the caching allocator's
    bookkeeping; a rule whose step needs the same working shape each time (sign(W_l), a magnitude
    draw, a gradient's first term) asks for it here. A tensor that no longer matches (members
    dropped by `keep`, a move by `to`) is replaced by a new one. Its contents are only what the
    last user wrote: it is not state, so it is not in any `state_dict`.
    """

    def __init__(self) -> None:
        self._held: dict[object, Tensor] = {}

    def __call__(self, key: object, like: Tensor) -> Tensor:
        """An uninitialised contiguous tensor of `like`'s shape, dtype and device, the same one each call while they last."""
        held = self._held.get(key)
        if held is None or held.shape != like.shape or held.dtype != like.dtype or held.device != like.device:
            held = self._held[key] = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        return held


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """b of Glorot (Xavier) uniform initialisation, U(-b, b)."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def glorot_(weight: Tensor, fan_in: int, fan_out: int, member_generators: list[torch.Generator]) -> Tensor:
    """Glorot (Xavier) uniform initialisation in place, each member from its own generator."""
    return population.uniform_(weight, glorot_bound(fan_in, fan_out), member_generators)


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity and its derivative written in terms of its output."""

    name: str

    def __call__(self, a: Tensor) -> Tensor:
        return torch.tanh(a) if self.name == "tanh" else torch.relu(a)

    def derivative(self, h: Tensor) -> Tensor:
        """σ'(a) from the output h = σ(a): 1 − h² (tanh), h > 0 (ReLU)."""
        if self.name == "tanh":
            return 1 - h ** 2
        return (h > 0).to(h.dtype)


ACTIVATIONS = CHOICES["activation"]
