"""Target propagation: TP, DTP, SDTP and AO-SDTP (Bartunov et al. 2018, section 2).

Every hidden layer l is trained towards a target ĥ_l on its own local loss
‖f_l(h_{l-1}) − ĥ_l‖² (summed over units, averaged over the batch) with its input and target
held constant; the output layer is trained on the task loss with its input detached (the delta
rule). Targets travel down through learned inverses g_l (bioscale.inverses), one per layer except
the first, trained on their own local inverse loss with their own Adam optimizer.

The variants differ from each other in one or two overrides:

    tp       ĥ_l = g_{l+1}(ĥ_{l+1}), starting from the one-hot label ĥ_L at the softmax output
    (difference targets, the shared base of dtp and sdtp) the correction of Eq. 2:
             ĥ_l = g_{l+1}(ĥ_{l+1}) + h_l − g_{l+1}(h_{l+1})                  (`propagate`)
    sdtp     difference targets all the way up, the top one through g_L from the one-hot label
    dtp      difference targets below a penultimate target set by a gradient step,
             ĥ_{L-1} = h_{L-1} − α ∂L_i/∂h_{L-1} of each example's own loss   (`penultimate_target`)
    ao-sdtp  as sdtp with an output h_L = [o, z], z = tanh(R h_{L-1}) fixed random features
                                                                              (`output_activity`)

The inverses g_l (and AO-SDTP's R) are the rule's state: `rule.state.inverses`,
`rule.state.output_inverse`, `rule.state.auxiliary`.

Schedules: `parallel` trains the inverses and then the forward layers (on targets from the
updated inverses) at every step on the same minibatch; `alternating` gives whole epochs, or
`alternation_period` steps, to each in turn, inverses first (as the original DTP code).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..inverses import LinearInverse, RandomFeatures, inverse_of
from ..nets import Net
from ..population import per_member
from .base import Rule, cross_entropy

INVERSE_LOSSES = ("denoising", "noise-preserving")


def squared_error(a: Tensor, b: Tensor) -> Tensor:
    """‖a − b‖² summed over units, averaged over the batch, per member (K,): every TP local loss."""
    return _SquaredError.apply(a, b)


class _SquaredError(torch.autograd.Function):
    """`squared_error` with its vector-Jacobian products written out: one backward node where autograd made five.

    They are autograd's own for (a − b).pow(2).flatten(2).sum(2).mean(1), step for step
    ((g / batch)·2(a − b), and its negation for b), so the gradients are the same to the bit.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # ctx here: see layers._WithFeedback
        difference = a - b
        ctx.difference = difference
        return difference.pow(2).flatten(2).sum(2).mean(1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        difference = ctx.difference
        grad_a = (2 * difference).mul_(per_member(grad / difference.shape[1], difference))
        return grad_a if ctx.needs_input_grad[0] else None, -grad_a if ctx.needs_input_grad[1] else None


def output_error(logits: Tensor, y: Tensor) -> Tensor:
    """∂L_i/∂a_i = softmax(a_i) − onehot(y_i) for each example's own cross-entropy L_i at logits a (K, B, classes)."""
    return torch.softmax(logits, 2) - F.one_hot(y, logits.shape[2]).to(logits.dtype)


def _choice(setting: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {setting} {value!r}; choose one of: {', '.join(choices)}")


class TargetProp(Rule):
    """TP: targets from the one-hot label sent down through the learned inverses, ĥ_l = g_{l+1}(ĥ_{l+1}).

    h_L is the softmax probability vector, the space of the one-hot target ĥ_L. No gradient is
    computed outside single-layer local losses.
    """

    name = "tp"
    locality = "local"
    counters = ("forward_steps", "steps", "epoch")
    per_member = (*Rule.per_member, "inverse_lr", "inverse_beta1", "inverse_beta2", "inverse_eps", "sigma")
    output_inverse_needed = True  # DTP's top target needs no inverse of the output layer
    inverse_loss_choices: tuple[str, ...] = INVERSE_LOSSES  # the inverse losses this rule can train with

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8, inverse_lr: float = 1e-3,
                 inverse_beta1: float = 0.9, inverse_beta2: float = 0.999, inverse_eps: float = 1e-8,
                 sigma: float = 0.1, schedule: str = "parallel", alternation_period: int = 0,
                 inverse_loss: str = "noise-preserving") -> None:
        super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1,
                         forward_beta2=forward_beta2, forward_eps=forward_eps)
        self.schedule, self.inverse_loss = schedule, inverse_loss
        self.alternation_period, self.sigma = alternation_period, sigma  # limits: bioscale.values
        self.inverse_lr, self.inverse_beta1 = inverse_lr, inverse_beta1
        self.inverse_beta2, self.inverse_eps = inverse_beta2, inverse_eps
        self.epoch = 0
        self.steps = 0

    def check_settings(self) -> None:
        """The base's checks (limits; one value for a shared setting), then the schedule and inverse loss among their choices."""
        super().check_settings()
        _choice("schedule", self.schedule, self.schedules)
        _choice("inverse_loss", self.inverse_loss, self.inverse_loss_choices)

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """The inverses g_2 .. g_{L-1} of the hidden layers and, where needed, g_L of the output layer."""
        net, state = self.net, nn.Module()
        shapes = self.activity_shapes()
        # inverses[i] inverts blocks[i + 1]: from h_{i+2}'s space to h_{i+1}'s. Layer 1 has none.
        state.inverses = nn.ModuleList(inverse_of(block.layer, shape, net.activation, generators)
                                       for block, shape in zip(net.blocks[1:], shapes[1:]))
        state.output_inverse = None
        if self.output_inverse_needed:
            state.output_inverse = LinearInverse(self.output_units(), shapes[-1], net.activation, generators)
        return state

    def build(self) -> None:
        super().build()
        params = self.inverse_parameters()  # DTP on one hidden layer has no inverse to train
        self.inverse_optimizer = self.adam(params, "inverse") if params else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        inverse = {} if self.inverse_optimizer is None else {"inverse": self.inverse_optimizer}
        return {**super().optimizers(), **inverse}

    def activity_shapes(self) -> list[tuple[int, ...]]:
        """The shape of every activity h_0 .. h_{L-1}, without members and batch."""
        with torch.no_grad():
            probe = next(self.net.parameters()).new_zeros(1, *self.net.input_shape)
            return [tuple(h.shape[2:]) for h in self.net.activities(probe)]

    # -- the parts the variants override -------------------------------------------------------

    def output_units(self) -> int:
        """Width of h_L, the output activity the output layer's inverse reads."""
        return self.net.n_classes

    def output_activity(self, h: Tensor, logits: Tensor) -> Tensor:
        """h_L: the softmax probabilities (the space of the one-hot label)."""
        return torch.softmax(logits, 2)

    def output_target(self, output: Tensor, y: Tensor) -> Tensor:
        """ĥ_L = argmin L(h_L) for output activity h_L = `output`: the correct label distribution."""
        return F.one_hot(y, self.net.n_classes).to(output.dtype).expand(len(output), -1, -1)

    def propagate(self, inverse: nn.Module, h_below: Tensor, h: Tensor, target: Tensor) -> Tensor:
        """ĥ_{l-1} from ĥ_l: vanilla TP, ĥ_{l-1} = g_l(ĥ_l)."""
        return inverse(target)

    def penultimate_target(self, h: Tensor, logits: Tensor, y: Tensor) -> Tensor:
        """ĥ_{L-1}: the label's target propagated through the output layer's inverse."""
        output = self.output_activity(h, logits)
        return self.propagate(self.state.output_inverse, h, output, self.output_target(output, y))

    # -- shared machinery ----------------------------------------------------------------------

    def inverse_parameters(self) -> list[nn.Parameter]:
        """The parameters λ of every inverse, trained by the inverse optimizer only."""
        output_inverse = self.state.output_inverse
        extra = [] if output_inverse is None else list(output_inverse.parameters())
        return list(self.state.inverses.parameters()) + extra

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def phase(self) -> str:
        """What the next step trains: 'both' (parallel), else 'inverse' or 'forward' in turn, inverses first."""
        if self.schedule == "parallel":
            return "both"
        turn = self.steps // self.alternation_period if self.alternation_period else self.epoch
        return "inverse" if turn % 2 == 0 else "forward"

    def layer_outputs(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """[h_0 = x, h_1, .., h_{L-1}] and the logits, each layer run on its detached input.

        Every autograd graph therefore spans one layer: a loss on h_l reaches θ_l only.
        """
        hs = [self.net.member_input(x)]
        for block in self.net.blocks:
            hs.append(block(hs[-1].detach()))
        return hs, self.net.output_logits(hs[-1].detach())

    @torch.no_grad()
    def targets(self, hs: list[Tensor], logits: Tensor, y: Tensor) -> list[Tensor]:
        """[ĥ_1, .., ĥ_{L-1}] for activities hs = [h_0, .., h_{L-1}], computed without autograd."""
        hs = [h.detach() for h in hs]
        target = self.penultimate_target(hs[-1], logits.detach(), y)
        out = [target]
        inverses = self.state.inverses
        for i in reversed(range(len(inverses))):  # inverses[i] maps h_{i+2} -> h_{i+1}
            target = self.propagate(inverses[i], hs[i + 1], hs[i + 2], target)
            out.append(target)
        return out[::-1]

    def inverse_losses(self, hs: list[Tensor]) -> list[Tensor]:
        """Each inverse's local loss ‖target − g_l(f_l(h̃_{l-1}))‖², h̃ = h + N(0, σ²), on λ_l only.

        The target is the clean h_{l-1} (de-noising) or the noisy h̃_{l-1} (noise-preserving).
        """
        losses = []
        pairs = list(zip(self.state.inverses, self.net.blocks[1:]))
        inputs = [h.detach() for h in hs[1:]]
        if self.state.output_inverse is not None:
            pairs.append((self.state.output_inverse, lambda h: self.output_activity(h, self.net.output_logits(h))))
        noises = self.noise_like(inputs[:len(pairs)]) if pairs else []
        for (inverse, forward), h, noise in zip(pairs, inputs, noises):
            noisy = h + per_member(self.hyper.sigma, h) * noise
            with torch.no_grad():
                out = forward(noisy)
            losses.append(squared_error(inverse(out), h if self.inverse_loss == "denoising" else noisy))
        return losses

    def local_losses(self, hs: list[Tensor], targets: list[Tensor]) -> list[Tensor]:
        """[L_1, .., L_{L-1}]: each hidden layer's local loss ‖h_l − ĥ_l‖² (the output layer's is the task loss)."""
        return [squared_error(h, t) for h, t in zip(hs[1:], targets)]

    def train_inverses(self, hs: list[Tensor]) -> None:
        """One step of the inverse optimizer on the inverse losses of activities hs."""
        if self.inverse_optimizer is None:
            return
        self.inverse_optimizer.zero_grad()
        sum(self.inverse_losses(hs)).sum().backward()  # separate one-inverse graphs, as in the forward losses
        self.inverse_optimizer.step()

    def forward_losses(self, hs: list[Tensor], logits: Tensor, y: Tensor, task_loss: Tensor) -> list[Tensor]:
        """Every forward layer's loss, each (K,): the hidden layers' local losses towards their targets, the task loss for the output layer."""
        return [*self.local_losses(hs, self.targets(hs, logits, y)), task_loss]

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        phase = self.phase
        train_forward = phase != "inverse"
        with torch.set_grad_enabled(train_forward):
            hs, logits = self.layer_outputs(x)
            task_loss = cross_entropy(logits, y)
        if phase != "forward":
            self.train_inverses(hs)
        if train_forward:
            self.forward_optimizer.zero_grad()
            # targets from the inverses just updated; separate one-layer graphs: each θ_l gets the gradient of its own loss only
            sum(self.forward_losses(hs, logits, y, task_loss)).sum().backward()
            self.forward_optimizer.step()
            self.forward_steps += 1
        self.steps += 1
        return task_loss.detach()


class DifferenceTargets(TargetProp):
    """The shared base of DTP and SDTP: targets sent down with the difference correction of Eq. 2."""

    name = ""  # a base, not a rule

    def propagate(self, inverse: nn.Module, h_below: Tensor, h: Tensor, target: Tensor) -> Tensor:
        """Eq. 2: ĥ_{l-1} = g_l(ĥ_l) + h_{l-1} − g_l(h_l); equals h_{l-1} when ĥ_l = h_l."""
        g_target, g_h = inverse(torch.cat([target, h], 1)).chunk(2, 1)
        return h_below + (g_target - g_h)  # exactly h_{l-1} when ĥ_l = h_l


class SimplifiedDTP(DifferenceTargets):
    """SDTP: difference targets at every layer, the top one included.

    ĥ_{L-1} = h_{L-1} − g_L(h_L) + g_L(ĥ_L) with h_L the softmax probabilities and ĥ_L the
    one-hot label: no gradient anywhere outside single-layer local losses. De-noising inverse loss.

    Forward Adam β2 defaults to 0.99 (one of the paper's two search values): SDTP's targets lean
    on g_L alone and jump in size when the inverses change, most at each switch of the
    alternating schedule, and β2 = 0.999 lets Adam's second moment lag too far behind such a jump.
    """

    name = "sdtp"

    def __init__(self, net: Net, *, forward_beta2: float = 0.99, inverse_loss: str = "denoising",
                 **settings: Any) -> None:
        super().__init__(net, forward_beta2=forward_beta2, inverse_loss=inverse_loss, **settings)


class DifferenceTargetProp(DifferenceTargets):
    """DTP: difference targets (Eq. 2) below a penultimate target set by one gradient step.

    ĥ_{L-1} = h_{L-1} − α ∂L_i/∂h_{L-1} = h_{L-1} − α (p − y) W_L for each example's own
    cross-entropy L_i (not the batch mean), the only gradient DTP uses; computed in closed form.
    The output layer needs no inverse. Noise-preserving inverse loss, as the original DTP; forward
    Adam β2 0.999.
    """

    name = "dtp"
    per_member = (*DifferenceTargets.per_member, "alpha")
    output_inverse_needed = False

    def __init__(self, net: Net, *, alpha: float = 0.1, forward_beta2: float = 0.999,
                 inverse_loss: str = "noise-preserving", **settings: Any) -> None:
        super().__init__(net, forward_beta2=forward_beta2, inverse_loss=inverse_loss, **settings)
        self.alpha = alpha

    def penultimate_target(self, h: Tensor, logits: Tensor, y: Tensor) -> Tensor:
        error = output_error(logits, y)
        return h - per_member(self.hyper.alpha, h) * torch.bmm(error, self.net.output.weight).view_as(h)


class AuxiliaryOutputSDTP(SimplifiedDTP):
    """AO-SDTP (Eq. 3): SDTP with output h_L = [o, z], z = tanh(R h_{L-1}) of fixed random R.

    o is the softmax prediction; the target is [ô, z] with ô the one-hot label, so
    ĥ_{L-1} = h_{L-1} − g_L(o, z) + g_L(ô, z). R (Glorot, no bias) is a buffer, never trained.
    """

    name = "ao-sdtp"

    def __init__(self, net: Net, *, aux_size: int = 512, **settings: Any) -> None:
        super().__init__(net, **settings)
        self.aux_size = aux_size  # limits: bioscale.values

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """SDTP's inverses and R; R is drawn first."""
        auxiliary = RandomFeatures(self.net.output.in_features, int(self.aux_size), generators)
        state = super().make_state(generators)
        state.auxiliary = auxiliary
        return state

    def output_units(self) -> int:
        return self.net.n_classes + int(self.aux_size)

    def output_activity(self, h: Tensor, logits: Tensor) -> Tensor:
        return torch.cat([torch.softmax(logits, 2), self.state.auxiliary(h)], 2)

    def output_target(self, output: Tensor, y: Tensor) -> Tensor:
        """[ô, z]: the label distribution, with the auxiliary features left as they are."""
        label = F.one_hot(y, self.net.n_classes).to(output.dtype).expand(len(output), -1, -1)
        return torch.cat([label, output[:, :, self.net.n_classes:]], 2)
