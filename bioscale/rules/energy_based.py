"""Energy-based rules: equilibrium propagation (EP) with symmetric nudging, and contrastive Hebbian learning (CHL).

The network's layers hold states s_1 .. s_L (s_0 = x, the input, fixed) that settle, by
fixed-point iteration, towards a fixed point of the primitive function

    Φ(s, θ, β) = Σ_n ⟨W_n s_{n−1} + b_n, s_n⟩ − β·L(s, y)

with each step setting s_n ← ρ(∂Φ/∂s_n) = ρ(W_n s_{n−1} + b_n + γ W_{n+1}ᵀ s_{n+1} − β ∂L/∂s_n)
(Scellier and Bengio 2017; Laborieux et al. 2021). W_n s_{n−1} is the layer's map and W_{n+1}ᵀ s_{n+1}
its transpose map (bioscale.layers), so fc, lc and conv layers all take part. ρ is the net's
activation on the hidden states (tanh or ReLU) or the papers' hard sigmoid clamp(u, 0, 1)
(`state_activation`); the output state s_L is linear, as the net's logits are. Each phase starts
from the state it continues: the free phase from one feedforward pass (only a start; the fixed
point does not depend on it), the nudged phases from the free fixed point.

    ep   free phase: `t_free` steps at β = 0, stopped early once no state moves by more than
         `tolerance` in one step (member by member: a settled member's state stays put). Then
         `t_nudge` steps at +β and, with `symmetric` (Laborieux et al.'s nudging), `t_nudge` at −β.
         Update of every weight θ: −(1/2β)[∂Φ/∂θ(s^{+β}) − ∂Φ/∂θ(s^{−β})] (error O(β²)), one-sided
         −(1/β)[∂Φ/∂θ(s^{β}) − ∂Φ/∂θ(s^{0})] (error O(β)), each averaged over the minibatch and
         handed to the forward Adam optimizer as its gradient. ∂Φ/∂W_n = s_n s_{n−1}ᵀ: a local
         product of the weight's own two layers' states. With β = 0 the update is exactly zero.
         `cost`: squared error ½‖s_L − onehot(y)‖² on the output state (the original choice), or
         cross-entropy of a readout: the output layer then holds no state, its logits W_L s_{L−1} + b_L
         read the last hidden state, the nudge is −β ∂CE/∂s_{L−1}, and the readout's own update
         (Φ's −β·CE term) is the mean of CE's gradients at the nudged states.
    chl  Contrastive Hebbian learning (Movellan 1991) with feedback of strength γ (Xie and Seung
         2003): the top-down input to each hidden layer is γ W_{n+1}ᵀ s_{n+1}. Minus phase: the free
         phase. Plus phase: the output clamped to onehot(y), `t_nudge` steps from the minus fixed
         point. Update of layer n of L: −γ^{n−L}(s_n⁺ s_{n−1}⁺ᵀ − s_n⁻ s_{n−1}⁻ᵀ) (its bias alike),
         the Hebbian difference scaled so that, as γ → 0, it tends to the backprop gradient of
         ½‖s_L − onehot(y)‖² through the feedforward net.

The loss a step reports is the cost at the free fixed point; the prediction (`predict`, read by
`bioscale.train.error_rates`) is the settled free phase's output, not a feedforward pass.
`init_scale` multiplies the net's initial weights once, when the rule is built: small weights keep
the settling contractive. A free phase that ends at `t_free` without settling is counted in
`unsettled` and reported once with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError
from ..nets import Net
from ..population import per_member
from .base import Rule, cross_entropy

SQUARED_ERROR, CROSS_ENTROPY = "squared-error", "cross-entropy"
NET_ACTIVATION, HARD_SIGMOID = "net", "hard-sigmoid"


class EnergyRule(Rule):
    """The settling machinery EP and CHL share: states per layer, a free phase, nudged or clamped phases."""

    per_member = (*Rule.per_member, "init_scale")
    feedback_strength = 1.0  # γ of the top-down input; CHL's is a setting
    free_phase_name = "free"  # the key of the free phase among `phases`
    cost = SQUARED_ERROR

    def __init__(self, net: Net, *, t_free: int = 20, t_nudge: int = 6, tolerance: float = 1e-4,
                 state_activation: str = NET_ACTIVATION, init_scale: float = 0.3, **settings: Any) -> None:
        super().__init__(net, **settings)
        self.t_free, self.t_nudge, self.tolerance = t_free, t_nudge, tolerance  # limits: bioscale.values
        self.state_activation, self.init_scale = state_activation, init_scale

    def build(self) -> None:
        """The forward optimizer, then each member's initial weights scaled by its `init_scale` (no step has run yet)."""
        super().build()
        with torch.no_grad():
            for layer in self.net.layers():
                layer.weight.mul_(per_member(self.hyper.init_scale, layer.weight))
        self.unsettled = 0  # free phases in which some member ended at t_free without settling (a diagnostic, not a counter)
        self.free_steps_used = 0  # steps the last free phase took (its slowest member)
        self.free_change = None  # each member's largest state change in the last free step, (K,)
        self._warned = False
        self._flattens = self.flattens()  # read once: the net's layers never change

    # -- the network as layers with states ------------------------------------------------------

    @property
    def readout(self) -> bool:
        """Whether the output layer is a readout without a state (cross-entropy cost)."""
        return self.cost == CROSS_ENTROPY

    def flattens(self) -> list[bool]:
        """Whether each weight layer flattens its input first."""
        return [block.flatten for block in self.net.blocks] + [self.net.flatten_output_input]

    def layer_input(self, index: int, below: Tensor) -> Tensor:
        """The input of weight layer `index` from the state below it (flattened where the layer is fully connected)."""
        return below.flatten(2) if self._flattens[index] else below

    def rho(self, index: int, u: Tensor) -> Tensor:
        """The state of layer `index` from its drive: the activation on hidden layers, linear on the output."""
        if index == len(self.net.blocks):
            return u
        if self.state_activation == HARD_SIGMOID:
            return u.clamp(0.0, 1.0)
        return self.net.activation(u)

    def states_of(self, x: Tensor) -> list[Tensor]:
        """A feedforward pass: the starting states of the free phase (hidden layers, then the output unless it is a readout)."""
        below, states = self.net.member_input(x), []
        n = len(self.net.layers()) - (1 if self.readout else 0)
        for index, layer in enumerate(self.net.layers()[:n]):
            below = self.rho(index, layer.map(self.layer_input(index, below), layer.weight, layer.bias))
            states.append(below)
        return states

    def output_error(self, states: list[Tensor], target: Tensor) -> Tensor:
        """∂ℓ/∂(output) per example: s_L − onehot for squared error, softmax(logits) − onehot for the readout."""
        if self.readout:
            return F.softmax(self.readout_logits(states), -1) - target
        return states[-1] - target

    def readout_logits(self, states: list[Tensor]) -> Tensor:
        """The readout's logits from the last hidden state (cross-entropy cost)."""
        layer = self.net.output
        return layer.map(self.layer_input(len(self.net.blocks), states[-1]), layer.weight, layer.bias)

    def drive(self, index: int, x: Tensor, states: list[Tensor], beta: Tensor | None, target: Tensor,
              gamma: Tensor) -> Tensor:
        """∂Φ/∂s of state `index`: W_n s_{n−1} + b_n + γ W_{n+1}ᵀ s_{n+1} − β ∂L/∂s_n (β None: free)."""
        layers = self.net.layers()
        layer = layers[index]
        below = self.net.member_input(x) if index == 0 else states[index - 1]
        state = states[index]
        drive = layer.map(self.layer_input(index, below), layer.weight, layer.bias)
        if index + 1 < len(states):
            above = layers[index + 1]
            down = above.input_grad(states[index + 1], above.weight, self.layer_input(index + 1, state).shape)
            down = down.view_as(state)
            drive = drive + per_member(gamma, down) * down
        if beta is not None and index == len(states) - 1:
            error = self.output_error(states, target)
            if self.readout:
                top = self.net.output
                error = top.input_grad(error, top.weight, self.layer_input(len(states), state).shape).view_as(state)
            drive = drive - per_member(beta, error) * error
        return drive

    def settle(self, x: Tensor, states: list[Tensor], steps: int, target: Tensor, beta: Tensor | None = None,
               clamp: bool = False, tolerance: float = 0.0) -> tuple[list[Tensor], int, Tensor]:
        """`steps` fixed-point steps from `states`; with `clamp` the output state stays as given.

        A step updates the layers bottom up, each from the new state below it and the old one
        above (Gauss-Seidel: the same fixed points as updating all at once, reached in about half
        the steps). With a positive `tolerance`, a member whose states all moved by less than it in
        one step keeps them from then on, and the phase ends once every member has. Returns the
        states, the steps taken, and each member's largest change in its last step (K,).
        """
        gamma = self.gamma_values()
        members = self.members
        settled = torch.zeros(members, dtype=torch.bool, device=x.device)
        change = torch.full((members,), float("inf"), dtype=states[0].dtype, device=x.device)
        top = len(states) - (1 if clamp else 0)
        taken = 0
        for taken in range(1, steps + 1):
            old, new = states, list(states)
            for index in range(top):
                new[index] = self.rho(index, self.drive(index, x, new, beta, target, gamma))
            step_change = torch.stack([(n - s).abs().flatten(1).amax(1) for n, s in zip(new, old)]).amax(0)
            if tolerance > 0:
                keep = settled
                new = [torch.where(per_member(keep, n), s, n) for n, s in zip(new, old)]
                change = torch.where(keep, change, step_change)
                settled = settled | (step_change < tolerance)
            else:
                change = step_change
            states = new
            if tolerance > 0 and bool(settled.all()):
                break
        return states, taken, change

    def gamma_values(self) -> Tensor:
        """γ, the strength of the top-down input, one value per member."""
        return torch.full((self.members,), self.feedback_strength, dtype=self.hyper.forward_lr.dtype,
                          device=self.hyper.forward_lr.device)

    def target_of(self, y: Tensor, like: Tensor) -> Tensor:
        """onehot(y) (B, classes), in `like`'s dtype."""
        return F.one_hot(y, self.net.n_classes).to(like.dtype)

    def free_phase(self, x: Tensor, target: Tensor) -> list[Tensor]:
        """The settled free phase (β = 0); records how it ended, and reports a free phase that did not settle."""
        states, taken, change = self.settle(x, self.states_of(x), self.t_free, target, tolerance=self.tolerance)
        self.free_steps_used, self.free_change = taken, change
        if self.tolerance > 0 and bool((change >= self.tolerance).any()):
            self.unsettled += 1
            if not self._warned:
                self._warned = True
                # one text per setting, so Python shows it once per process however many phases miss
                warnings.warn(f"rule {self.name!r}: a free phase did not settle within t_free={self.t_free} steps to "
                              f"tolerance {self.tolerance:g}; rule.unsettled counts such phases, rule.free_change holds "
                              f"each member's last state change", RuntimeWarning, stacklevel=3)
        return states

    def cost_of(self, states: list[Tensor], y: Tensor) -> Tensor:
        """Each member's cost (K,) at `states`: ½‖s_L − onehot‖² or the readout's cross-entropy, mean over the batch."""
        if self.readout:
            return cross_entropy(self.readout_logits(states), y)
        return 0.5 * (states[-1] - self.target_of(y, states[-1])).pow(2).sum(-1).mean(1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The settled free phase's output (K, B, classes): s_L, or the readout's logits."""
        states, _, _ = self.settle(x, self.states_of(x), self.t_free, x.new_zeros(1), tolerance=self.tolerance)
        return self.readout_logits(states) if self.readout else states[-1]

    def phi_theta(self, x: Tensor, states: list[Tensor], beta: Tensor | None, target: Tensor) -> list[Tensor]:
        """∂Φ/∂θ at `states`, summed over the batch, one tensor per parameter in `net.parameters()` order.

        ∂Φ/∂W_n = s_n s_{n−1}ᵀ (the layer's weight gradient with output gradient s_n), ∂Φ/∂b_n = s_n;
        a readout adds −β ∂CE/∂θ_L.
        """
        x, out = self.net.member_input(x), []
        for index, (layer, state) in enumerate(zip(self.net.layers(), states)):
            below = self.layer_input(index, x if index == 0 else states[index - 1])
            out.append(layer.weight_grad(state, below))
            if layer.bias is not None:
                out.append(layer.bias_grad(state))
        if self.readout:
            layer = self.net.output
            below = self.layer_input(len(states), states[-1])
            error = self.output_error(states, target)
            scale = torch.zeros_like(self.hyper.forward_lr) if beta is None else beta
            out.append(-per_member(scale, layer.weight) * layer.weight_grad(error, below))
            if layer.bias is not None:
                out.append(-per_member(scale, layer.bias) * layer.bias_grad(error))
        return out

    def take_step(self, grads: list[Tensor]) -> None:
        """One Adam step of the forward weights with `grads` as their gradients."""
        self.forward_optimizer.zero_grad()
        for parameter, grad in zip(self.net.parameters(), grads, strict=True):
            parameter.grad = grad
        self.forward_optimizer.step()
        self.forward_steps += 1

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """The free phase, the rule's other phases, and one Adam step of the update; returns the cost at the free fixed point."""
        grads, free = self.update(x, y)
        self.take_step(grads)
        return self.cost_of(free, y)

    def update(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(the update of every parameter, batch-averaged, in `net.parameters()` order; the free fixed point)."""
        phases = self.phases(x, y)
        return self.update_from(x, self.target_of(y, self.net.output.weight), phases), phases[self.free_phase_name]

    def phases(self, x: Tensor, y: Tensor) -> dict[str, list[Tensor]]:
        """The settled states of every phase the rule runs, by name (the free one under `free_phase_name`)."""
        raise NotImplementedError

    def update_from(self, x: Tensor, target: Tensor, phases: dict[str, list[Tensor]]) -> list[Tensor]:
        """The update of every parameter from the phases' states (batch-averaged, in `net.parameters()` order)."""
        raise NotImplementedError

    def check_settings(self) -> None:
        """The shared checks, then the settling choices."""
        super().check_settings()
        if self.readout and len(self.net.blocks) == 0:
            raise UsageError(f"rule {self.name!r}: the cross-entropy readout needs at least one hidden layer")


class EquilibriumPropagation(EnergyRule):
    """EP: the free phase, nudged phases at +β and (symmetric) −β; update −(1/2β)[∂Φ/∂θ(s^{+β}) − ∂Φ/∂θ(s^{−β})]."""

    name = "ep"
    locality = "local"
    per_member = (*EnergyRule.per_member, "beta")

    def __init__(self, net: Net, *, beta: float = 0.2, symmetric: bool = True, cost: str = SQUARED_ERROR,
                 **settings: Any) -> None:
        super().__init__(net, **settings)
        self.beta, self.symmetric, self.cost = beta, symmetric, cost  # limits and choices: bioscale.values

    def phases(self, x: Tensor, y: Tensor) -> dict[str, list[Tensor]]:
        """The settled states of every phase: 'free', 'plus' (+β) and, when symmetric, 'minus' (−β)."""
        target = self.target_of(y, self.net.output.weight)
        free = self.free_phase(x, target)
        beta = self.hyper.beta
        out = {"free": free, "plus": self.settle(x, free, self.t_nudge, target, beta)[0]}
        if self.symmetric:
            out["minus"] = self.settle(x, free, self.t_nudge, target, -beta)[0]
        return out

    def update_from(self, x: Tensor, target: Tensor, phases: dict[str, list[Tensor]]) -> list[Tensor]:
        """The EP update of every parameter from the phases' states (batch-averaged); zero for a member with β = 0."""
        beta = self.hyper.beta
        plus = self.phi_theta(x, phases["plus"], beta, target)
        if self.symmetric:
            other, span = self.phi_theta(x, phases["minus"], -beta, target), 2 * beta
        else:
            other, span = self.phi_theta(x, phases["free"], None, target), beta
        scale = torch.where(span > 0, -1 / torch.where(span > 0, span, 1), 0) / len(x)
        return [per_member(scale, p) * (p - o) for p, o in zip(plus, other, strict=True)]


class ContrastiveHebbian(EnergyRule):
    """CHL: a free (minus) phase and a clamped (plus) phase, feedback of strength γ; update −γ^{n−L}(s⁺s⁺ᵀ − s⁻s⁻ᵀ)."""

    name = "chl"
    locality = "local"
    per_member = (*EnergyRule.per_member, "gamma")
    free_phase_name = "minus"

    def __init__(self, net: Net, *, gamma: float = 0.1, **settings: Any) -> None:
        super().__init__(net, **settings)
        self.gamma = gamma  # limits: bioscale.values

    def check_settings(self) -> None:
        """The shared checks, and γ > 0 (the update is scaled by powers of 1/γ)."""
        super().check_settings()
        gammas = self.gamma if isinstance(self.gamma, (list, tuple)) else [self.gamma]
        if any(g <= 0 for g in gammas):
            raise UsageError(f"rule {self.name!r}: gamma must be positive (the update divides by powers of γ), got {self.gamma}")

    def gamma_values(self) -> Tensor:
        return self.hyper.gamma

    def phases(self, x: Tensor, y: Tensor) -> dict[str, list[Tensor]]:
        """The settled states of the minus (free) phase and of the plus phase, output clamped to onehot(y)."""
        target = self.target_of(y, self.net.output.weight)
        minus = self.free_phase(x, target)
        clamped = [*minus[:-1], target.expand_as(minus[-1])]
        return {"minus": minus, "plus": self.settle(x, clamped, self.t_nudge, target, clamp=True)[0]}

    def update_from(self, x: Tensor, target: Tensor, phases: dict[str, list[Tensor]]) -> list[Tensor]:
        """−γ^{n−L}(∂Φ/∂θ_n(s⁺) − ∂Φ/∂θ_n(s⁻)), batch-averaged, for every layer n of L."""
        plus, minus = (self.phi_theta(x, phases[p], None, target) for p in ("plus", "minus"))
        depth, out, index = len(self.net.layers()), [], 0
        for n, layer in enumerate(self.net.layers(), start=1):
            scale = -self.hyper.gamma.pow(n - depth) / len(x)
            for _ in range(2 if layer.bias is not None else 1):
                out.append(per_member(scale, plus[index]) * (plus[index] - minus[index]))
                index += 1
        return out
