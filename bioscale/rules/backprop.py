"""Backpropagation: exact gradients through every layer by autograd."""

from __future__ import annotations

from torch import Tensor

from .base import GradientRule, cross_entropy


class Backprop(GradientRule):
    """BP: the reference every other rule is measured against."""

    name = "bp"

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return cross_entropy(self.net(x), y)
