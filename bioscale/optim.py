"""Adam over member-stacked parameters: one optimizer for K members, each with its own lr, β1, β2 and ε.

Every parameter it trains has a leading member dimension; its moments have the same shape, so
all members step together in one set of elementwise operations and none reads another's values.
The arithmetic follows `torch.optim.Adam` (single-tensor form). A member that is stopped (it
diverged, or a pruner ended its trial) keeps its weights exactly where they are. A tensor `tie`d
to a parameter takes that parameter's update too (Kolen-Pollack's B_l takes W_l's: a second Adam
on the same gradient would hold the same moments and compute the same update again).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .population import per_member


class Adam(nn.Module):
    """Adam for member-stacked parameters; `lr`, `beta1`, `beta2`, `eps` are (K,) tensors. Moments are buffers."""

    def __init__(self, params: Iterable[nn.Parameter], *, lr: Tensor, beta1: Tensor, beta2: Tensor, eps: Tensor) -> None:
        super().__init__()
        self.params = list(params)
        members = len(lr)
        if any(p.shape[0] != members for p in self.params):
            raise ValueError(f"every parameter needs a leading member dimension of {members}")
        for name, value in (("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps)):
            self.register_buffer(name, value.clone())
        self.register_buffer("active", torch.ones(members, dtype=torch.bool, device=lr.device))
        for i, p in enumerate(self.params):
            self.register_buffer(f"exp_avg_{i}", torch.zeros_like(p, memory_format=torch.preserve_format))
            self.register_buffer(f"exp_avg_sq_{i}", torch.zeros_like(p, memory_format=torch.preserve_format))
        self.steps = 0
        self._all_active = True
        self._tied: dict[int, list[Tensor]] = {}  # parameter index -> tensors that take its update too

    def tie(self, param: nn.Parameter, follower: Tensor) -> None:
        """From now on `follower` (a tensor of `param`'s shape, not trained here) takes each of `param`'s updates too."""
        index = next((i for i, p in enumerate(self.params) if p is param), None)
        if index is None:
            raise ValueError("tie: the parameter is not one this optimizer trains")
        if follower.shape != param.shape:
            raise ValueError(f"tie: a follower of shape {tuple(follower.shape)} for a parameter of {tuple(param.shape)}")
        self._tied.setdefault(index, []).append(follower)

    def tensors(self) -> list[Tensor]:
        """Every tensor a step moves: the parameters and the tensors tied to them."""
        return [*self.params, *(follower for followers in self._tied.values() for follower in followers)]

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def stop(self, members: Iterable[int]) -> None:
        """Freeze `members`: their weights no longer change."""
        for member in members:
            self.active[member] = False
        self._all_active = bool(self.active.all())

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every active member's parameters (and their tied tensors) from their gradients."""
        self.steps += 1
        # The members' factors, (K,) each, once per step; each parameter then takes in-place passes over one
        # weight-sized temporary (g², then the denominator, then the update), rounding at each step where the
        # allocating form did, so that it gives the same bits. (addcmul_ would save two more passes, but it
        # rounds a·b + c once where that form rounded twice; addcdiv's c + a / b cannot fuse, so it is used.)
        factors = (1 - self.beta1, 1 - self.beta2, self.beta2, (1 - self.beta2 ** self.steps).sqrt(), self.eps,
                   self.lr / (1 - self.beta1 ** self.steps), ~self.active)
        shaped: dict[int, tuple[Tensor, ...]] = {}  # the factors as (K, 1, ..., 1) views, once per parameter rank
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if grad.dim() not in shaped:
                shaped[grad.dim()] = tuple(per_member(factor, grad) for factor in factors)
            one_minus_beta1, one_minus_beta2, beta2, bias_correction2_sqrt, eps, step_size, stopped = shaped[grad.dim()]
            exp_avg, exp_avg_sq = self._buffers[f"exp_avg_{i}"], self._buffers[f"exp_avg_sq_{i}"]
            exp_avg.lerp_(grad, one_minus_beta1)
            scratch = torch.mul(grad, grad).mul_(one_minus_beta2)
            exp_avg_sq.mul_(beta2).add_(scratch)
            root = torch.sqrt(exp_avg_sq, out=scratch)
            denom = torch.addcdiv(eps, root, bias_correction2_sqrt, out=root)
            update = torch.div(exp_avg, denom, out=denom).mul_(step_size)
            if not self._all_active:
                update.masked_fill_(stopped, 0)
            p.sub_(update)
            for follower in self._tied.get(i, ()):
                follower.sub_(update)

    def get_extra_state(self) -> dict[str, int]:
        """The step count, which the bias corrections need: a checkpoint carries it beside the moments."""
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore the step count (`load_state_dict` calls this after the buffers are in)."""
        self.steps = int(state["steps"])
        self._all_active = bool(self.active.all())
