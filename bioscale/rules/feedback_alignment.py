"""Gradients through other feedback weights: feedback alignment (FA), sign-symmetry and direct FA (DFA).

FA sends the error backwards layer by layer through fixed random matrices B_l of the same shape
as W_l, used in place of W_l in the input-gradient half of each layer's backward pass.
Sign-symmetry (Liao, Leibo and Poggio 2016) does the same through sign(W_l): the signs of the
forward weights, none of their magnitudes. Its variants (named as in biotorch) give the signs
random magnitudes: `sign-symmetry-frsf` B_l = |M_l| ∘ sign(W_l) with M_l drawn once (fixed
random-magnitude sign-concordant feedback), `sign-symmetry-brsf` with M_l redrawn at every
minibatch from each member's noise stream (batchwise random magnitudes). M_l is drawn as FA's
B_l (Glorot-uniform), so |M_l| is uniform on [0, Glorot bound].

DFA sends the output error e = ∂L/∂a_L straight to every hidden layer l through its own fixed
random matrix B_l: δ_l = (B_l e) ⊙ σ'(a_l). For a spatial (LC or conv) layer with output shape
(C, H, W), B_l has shape (C·H·W, classes) and B_l e is reshaped to (C, H, W): every unit of the
feature map gets its own random projection of the error.

The random matrices are the rule's state (`rule.state[l]`, buffers, one per member), never the net's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..layers import MemberLayer, apply_with_feedback, glorot_, glorot_bound
from ..population import per_member
from .base import GradientRule, cross_entropy


class FixedMatrices(nn.Module):
    """Fixed matrices held as buffers, indexed like a list: they move with `.to()` and are never trained."""

    def __init__(self, matrices: Iterable[Tensor]) -> None:
        super().__init__()
        for i, matrix in enumerate(matrices):
            self.register_buffer(str(i), matrix)

    def __getitem__(self, index: int) -> Tensor:
        return self._buffers[str(range(len(self))[index])]

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self._buffers.values())

    def __len__(self) -> int:
        return len(self._buffers)


def random_feedback(layers: Iterable[MemberLayer], generators: list[torch.Generator]) -> list[Tensor]:
    """B_l for every layer: Glorot-uniform, the shape of W_l, each member's from its own generator."""
    return [glorot_(torch.empty(layer.weight.shape), *layer.fans(), generators) for layer in layers]


class FeedbackAlignment(GradientRule):
    """FA: each layer's input gradient goes through a fixed random B_l in place of W_l."""

    name = "fa"

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """B_l for every layer, output layer included: Glorot-uniform, the shape of W_l."""
        return FixedMatrices(random_feedback(self.net.layers(), generators))

    def feedback_weight(self, index: int, layer: MemberLayer) -> Tensor:
        """What layer `index` (of `net.layers()`) sends the error back through in place of its weight."""
        return self.state[index]

    def unread_feedback(self, index: int, layer: MemberLayer) -> Tensor:
        """What layer `index` runs with in place of its feedback when nothing takes its input's gradient (never read)."""
        return layer.weight.detach()

    def layer_output(self, index: int, layer: MemberLayer, x: Tensor) -> Tensor:
        """Layer `index` on x, its input gradient through its feedback weight.

        The first layer's input is the data, which takes no gradient: its feedback is not made.
        """
        feedback = self.feedback_weight(index, layer) if x.requires_grad else self.unread_feedback(index, layer)
        return apply_with_feedback(layer, x, feedback)

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.net.member_input(x)
        for i, block in enumerate(self.net.blocks):
            h = block.activation(self.layer_output(i, block.layer, h.flatten(2) if block.flatten else h))
        h = h.flatten(2) if self.net.flatten_output_input else h
        return cross_entropy(self.layer_output(len(self.net.blocks), self.net.output, h), y)


class SignSymmetry(FeedbackAlignment):
    """Sign-symmetry: the error goes back through sign(W_l), read from the current weights at each step."""

    name = "sign-symmetry"

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        return nn.Module()  # nothing fixed to hold

    def feedback_weight(self, index: int, layer: MemberLayer) -> Tensor:
        return torch.sign(layer.weight.detach(), out=self.scratch(("sign", index), layer.weight))


class SignSymmetryFixedMagnitudes(SignSymmetry):
    """frSF: B_l = |M_l| ∘ sign(W_l), the magnitudes |M_l| drawn once (as FA's B_l) and held fixed."""

    name = "sign-symmetry-frsf"

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        return FixedMatrices(m.abs() for m in random_feedback(self.net.layers(), generators))

    def feedback_weight(self, index: int, layer: MemberLayer) -> Tensor:
        return super().feedback_weight(index, layer).mul_(self.state[index])


class SignSymmetryBatchMagnitudes(SignSymmetry):
    """brSF: B_l = |M_l| ∘ sign(W_l), the magnitudes redrawn at every minibatch from each member's noise stream."""

    name = "sign-symmetry-brsf"

    def magnitudes(self, index: int, layer: MemberLayer) -> Tensor:
        """|M_l| for this minibatch, each member's from its own noise stream."""
        magnitudes = self.scratch(("magnitudes", index), layer.weight)
        bound = glorot_bound(*layer.fans())  # |U(-b, b)| = U(0, b): the magnitudes of FA's B_l
        for member, generator in zip(magnitudes, self.noise_generators, strict=True):
            member.uniform_(0, bound, generator=generator)  # the same bits as U(0, 1)·b, in one pass
        return magnitudes

    def feedback_weight(self, index: int, layer: MemberLayer) -> Tensor:
        return self.magnitudes(index, layer).mul_(super().feedback_weight(index, layer))

    def unread_feedback(self, index: int, layer: MemberLayer) -> Tensor:
        """The first layer's magnitudes are drawn all the same, so that every later layer's draws stay as they were."""
        self.magnitudes(index, layer)
        return super().unread_feedback(index, layer)


class DirectFeedbackAlignment(GradientRule):
    """DFA: the output error broadcast to every hidden layer through fixed random matrices."""

    name = "dfa"

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """B_l of shape (units of h_l, classes) for every hidden layer, Glorot-uniform."""
        net, n_classes = self.net, self.net.n_classes
        with torch.no_grad():
            probe = next(net.parameters()).new_zeros(1, *net.input_shape)
            units = [h[0, 0].numel() for h in net.activities(probe)[1:]]
        return FixedMatrices(glorot_(torch.empty(len(generators), n, n_classes), n_classes, n, generators) for n in units)

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        pre_activations, outputs, deltas = [], [], []
        h = self.net.member_input(x)
        for block in self.net.blocks:
            a = block.pre_activation(h)  # on an input without a graph: no gradient flows from one layer into another
            with torch.no_grad():
                h = block.activation(a)
            pre_activations.append(a)
            outputs.append(h)
        logits = self.net.output_logits(h)
        loss = cross_entropy(logits, y)
        with torch.no_grad():
            e = torch.softmax(logits, 2)
            e[:, torch.arange(len(y), device=e.device), y] -= 1
            e /= len(y)  # ∂(each member's mean loss)/∂logits
            for feedback, block, a, h in zip(self.state, self.net.blocks, pre_activations, outputs):
                deltas.append(torch.bmm(e, feedback.transpose(1, 2)).view_as(a).mul_(block.activation.derivative(h)))
        return _Broadcast.apply(loss, deltas, *pre_activations)


class _Broadcast(torch.autograd.Function):
    """Reports the task loss; its backward pass also sends δ_l into each hidden layer's pre-activation a_l.

    As the gradient of the surrogate loss + Σ_l ⟨a_l, δ_l⟩ would, without that surrogate's graph.
    """

    @staticmethod
    def forward(ctx, loss: Tensor, deltas: list[Tensor], *pre_activations: Tensor) -> Tensor:  # ctx: see layers._WithFeedback
        ctx.deltas = deltas
        return loss.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None, *(delta * per_member(grad, delta) for delta in ctx.deltas)
