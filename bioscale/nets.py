"""Networks: the paper's architecture presets, a spec grammar for custom stacks, and `Net`.

Spec grammar: comma-separated hidden layers, applied in order, each followed by the activation;
a linear softmax output layer is always added.

    fc:UNITS                 fully connected layer (flattens a spatial input first)
    lc:KERNEL:CHANNELS[:STRIDE]    locally connected (no weight sharing), zero-padded
    conv:KERNEL:CHANNELS[:STRIDE]  convolution with the same geometry
    N*LAYER                  LAYER repeated N times, e.g. 5*fc:256

Example, the paper's MNIST LC net: "lc:3:32:2,lc:3:64:2,fc:1024".

A `Net` holds K members (one per seed; a single network is K = 1): every weight has a leading
member dimension, an input batch (B, C, H, W) is shared by every member, and the logits are
(K, B, classes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from collections.abc import Sequence

from torch import Tensor, nn

from . import datasets, population
from .errors import UsageError
from .layers import ACTIVATIONS, Activation, Conv2d, Linear, LocallyConnected2d, MemberLayer

PRESET_NAMES = ("fc", "lc", "conv")


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer of a spec: kind is 'fc', 'lc' or 'conv'."""

    kind: str
    size: int  # units for fc, output channels otherwise
    kernel_size: int = 0
    stride: int = 1

    def __str__(self) -> str:
        if self.kind == "fc":
            return f"fc:{self.size}"
        return f"{self.kind}:{self.kernel_size}:{self.size}:{self.stride}"


_LAYER = re.compile(r"^(?:(\d+)\*)?(fc:\d+|(?:lc|conv):\d+:\d+(?::\d+)?)$")


def preset(dataset: str, name: str) -> str:
    """The spec string of a preset architecture ('fc', 'lc' or 'conv') for a dataset."""
    return datasets.get(dataset).preset(name)


def parse_spec(spec: str) -> list[LayerSpec]:
    """Parse a spec string into layer specs; bad specs raise UsageError naming the grammar."""
    layers: list[LayerSpec] = []
    for token in (t.strip() for t in spec.split(",")):
        match = _LAYER.match(token)
        if not match:
            raise UsageError(
                f"bad layer {token!r} in architecture {spec!r}: use fc:UNITS, lc:KERNEL:CHANNELS[:STRIDE], "
                f"conv:KERNEL:CHANNELS[:STRIDE], optionally N*LAYER, comma-separated, or a preset: {', '.join(PRESET_NAMES)}")
        repeat = int(match.group(1) or 1)
        parts = match.group(2).split(":")
        if parts[0] == "fc":
            layer = LayerSpec("fc", int(parts[1]))
        else:
            layer = LayerSpec(parts[0], int(parts[2]), int(parts[1]), int(parts[3]) if len(parts) > 3 else 1)
        if layer.size < 1 or repeat < 1 or layer.stride < 1 or (layer.kind != "fc" and layer.kernel_size % 2 == 0):
            raise UsageError(f"bad layer {token!r} in architecture {spec!r}: sizes and strides must be positive, kernels odd")
        layers.extend([layer] * repeat)
    return layers


def resolve_arch(arch: str, dataset: str) -> str:
    """A preset name or a spec string -> a spec string."""
    if arch in PRESET_NAMES:
        return preset(dataset, arch)
    parse_spec(arch)
    return arch


def arch_family(arch: str) -> str:
    """'fc', 'lc', 'conv' or 'mixed' for a preset name or spec string."""
    if arch in PRESET_NAMES:
        return arch
    kinds = {layer.kind for layer in parse_spec(arch) if layer.kind != "fc"}
    return kinds.pop() if len(kinds) == 1 else ("fc" if not kinds else "mixed")


class Block(nn.Module):
    """One hidden layer: an optional flatten, the layer, then the activation."""

    def __init__(self, layer: nn.Module, activation: Activation, flatten: bool) -> None:
        super().__init__()
        self.layer, self.activation, self.flatten = layer, activation, flatten

    def pre_activation(self, x: Tensor) -> Tensor:
        """a = W x + b, the layer's output before its nonlinearity."""
        return self.layer(x.flatten(2) if self.flatten else x)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.pre_activation(x))

    def extra_repr(self) -> str:
        return f"activation={self.activation.name}, flatten={self.flatten}"


class Net(nn.Module):
    """K members of one stack of hidden blocks and a linear output layer producing logits (softmax in the loss).

    Member k is initialised from `seeds[k]` alone (Glorot-uniform weights, zero biases), so it
    starts exactly as a net of one member with that seed.
    """

    def __init__(self, spec: str, input_shape: tuple[int, int, int], n_classes: int, activation: str = "tanh", *,
                 seeds: Sequence[int] = (0,)) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UsageError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if not len(seeds):
            raise UsageError("a net needs at least one member (one seed)")
        self.spec, self.input_shape, self.n_classes = spec, tuple(input_shape), n_classes
        self.seeds = tuple(int(s) for s in seeds)
        self.activation = Activation(activation)
        members = len(self.seeds)
        blocks: list[Block] = []
        shape = tuple(input_shape)  # (C, H, W) while spatial, (units,) after a fc layer
        for layer_spec in parse_spec(spec):
            layer, flatten, shape = _make_layer(layer_spec, shape, members)
            blocks.append(Block(layer, self.activation, flatten))
        self.blocks = nn.ModuleList(blocks)
        self.flatten_output_input = len(shape) > 1
        self.output = Linear(math.prod(shape), n_classes, members)
        generators = population.generators(self.seeds, population.INIT)
        for layer in self.layers():
            layer.reset_parameters(generators)

    @property
    def members(self) -> int:
        """K, the number of members."""
        return len(self.seeds)

    def member_input(self, x: Tensor) -> Tensor:
        """A shared batch (B, C, H, W) as every member's input (K, B, C, H, W), a view; member inputs pass unchanged."""
        return x.expand(self.members, *x.shape) if x.dim() == len(self.input_shape) + 1 else x

    def output_logits(self, h: Tensor) -> Tensor:
        """Logits (K, B, classes) from the last hidden activity."""
        return self.output(h.flatten(2) if self.flatten_output_input else h)

    def forward(self, x: Tensor) -> Tensor:
        x = self.member_input(x)
        for block in self.blocks:
            x = block(x)
        return self.output_logits(x)

    def activities(self, x: Tensor) -> list[Tensor]:
        """[h_0 = x, h_1, ..., h_{L-1}]: the input and every hidden activity, each (K, B, ...)."""
        hs = [self.member_input(x)]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs

    def layers(self) -> list[MemberLayer]:
        """Every weight layer, hidden ones first, the output layer last."""
        return [b.layer for b in self.blocks] + [self.output]


def _make_layer(spec: LayerSpec, shape: tuple[int, ...], members: int) -> tuple[MemberLayer, bool, tuple[int, ...]]:
    if spec.kind == "fc":
        return Linear(math.prod(shape), spec.size, members), len(shape) > 1, (spec.size,)
    if len(shape) != 3:
        raise UsageError(f"layer {spec} cannot follow a fully connected layer: put lc/conv layers first")
    channels, height, width = shape
    if spec.kind == "lc":
        layer = LocallyConnected2d(channels, spec.size, spec.kernel_size, (height, width), stride=spec.stride, members=members)
        return layer, False, (spec.size, *layer.output_size)
    layer = Conv2d(channels, spec.size, spec.kernel_size, stride=spec.stride, members=members)
    return layer, False, (spec.size, *layer.output_size((height, width)))


def build_net(arch: str, dataset: str, input_shape: tuple[int, int, int], n_classes: int, activation: str = "tanh", *,
              seeds: Sequence[int] = (0,)) -> Net:
    """A network of one member per seed for a dataset, from a preset name ('fc', 'lc', 'conv') or a spec string."""
    return Net(resolve_arch(arch, dataset), input_shape, n_classes, activation, seeds=seeds)
