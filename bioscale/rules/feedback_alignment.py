"""Feedback alignment (FA) and direct feedback alignment (DFA).

FA sends the error backwards layer by layer through fixed random matrices B_l of the same shape
as W_l, used in place of W_l in the input-gradient half of each layer's backward pass.

DFA sends the output error e = ∂L/∂a_L straight to every hidden layer l through its own fixed
random matrix B_l: δ_l = (B_l e) ⊙ σ'(a_l). For a spatial (LC or conv) layer with output shape
(C, H, W), B_l has shape (C·H·W, classes) and B_l e is reshaped to (C, H, W): every unit of the
feature map gets its own random projection of the error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..layers import apply_with_feedback, glorot_, glorot_fans
from ..nets import Net
from .base import Rule, cross_entropy


class FeedbackAlignment(Rule):
    """FA: backward pass through fixed random feedback weights (buffers, never trained)."""

    name = "fa"

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8) -> None:
        super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1,
                         forward_beta2=forward_beta2, forward_eps=forward_eps)
        for layer in net.layers():
            layer.register_buffer("feedback", glorot_(torch.empty_like(layer.weight), *glorot_fans(layer)))

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        h = x
        for block in self.net.blocks:
            h = block.activation(apply_with_feedback(block.layer, h.flatten(1) if block.flatten else h, block.layer.feedback))
        out = self.net.output
        logits = apply_with_feedback(out, h.flatten(1) if self.net.flatten_output_input else h, out.feedback)
        return cross_entropy(logits, y)


class DirectFeedbackAlignment(Rule):
    """DFA: the output error broadcast to every hidden layer through fixed random matrices."""

    name = "dfa"

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8) -> None:
        super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1,
                         forward_beta2=forward_beta2, forward_eps=forward_eps)
        n_classes = net.n_classes
        like = next(net.parameters())  # feedback lives on the net's device, in its dtype
        with torch.no_grad():
            for block, h in zip(net.blocks, net.activities(like.new_zeros(1, *net.input_shape))[1:]):
                units = h[0].numel()
                block.layer.register_buffer("direct_feedback", glorot_(like.new_empty(units, n_classes), n_classes, units))

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        pre_activations = []
        h = x
        for block in self.net.blocks:
            a = block.pre_activation(h.detach())  # no gradient flows from one layer into another
            pre_activations.append(a)
            h = block.activation(a)
        logits = self.net.output_logits(h.detach())
        loss = cross_entropy(logits, y)
        with torch.no_grad():
            e = torch.softmax(logits, 1)
            e[torch.arange(len(y), device=e.device), y] -= 1
            e /= len(y)  # ∂(mean loss)/∂logits
        # Surrogate whose gradient w.r.t. each hidden layer's parameters is δ_l·∂a_l/∂θ_l.
        surrogate = loss
        for block, a in zip(self.net.blocks, pre_activations):
            with torch.no_grad():
                delta = (e @ block.layer.direct_feedback.t()).view_as(a) * block.activation.derivative(a)
            surrogate = surrogate + (a * delta).sum()
        return _ReportedLoss.apply(surrogate, loss.detach())


class _ReportedLoss(torch.autograd.Function):
    """Backpropagates through `surrogate` but reports the task loss's value."""

    @staticmethod
    def forward(surrogate: Tensor, loss: Tensor) -> Tensor:
        return loss.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None
