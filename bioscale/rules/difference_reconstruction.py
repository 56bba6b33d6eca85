"""Target propagation with learned difference reconstruction: DDTP-linear and L-DRL.

Two later variants of difference target propagation, each a few overrides of the TP base
(bioscale.rules.target_propagation) with its own feedback loss. Per example, e = ∂L_i/∂a_L =
softmax(a_L) − onehot(y) at the logits a_L (each example's own cross-entropy).

    ddtp   DDTP-linear (Meulemans et al., NeurIPS 2020): each hidden layer's target comes straight
           from the output, h_i* = h_i + Q_i (a_L* − a_L), a_L* = a_L − λ e, through a linear map Q_i
           (`rule.state.inverses[i - 1]`, one per hidden layer, the first included). Q_i learns by the
           difference reconstruction loss: perturb h_i by σε, run it forward to ã_L, and reconstruct
           the perturbation, (1/σ²)‖Q_i (ã_L − a_L) − σε‖²; on a linear net its minimum is
           Q_i = pinv(J_i), J_i the Jacobian from h_i to a_L (Gauss-Newton targets). The output layer
           learns by the delta rule, as in the TP base. The forward learning rate is not divided by
           λ (the authors' `normalize_lr`): Adam's steps do not follow the size of the loss.
    ldrl   L-DRL (Ernoult et al., ICML 2022): DTP's difference targets t_{i-1} = h_{i-1} + G_i(t_i) − G_i(h_i)
           from t_N = a_L − β e at the logits, every layer (the output layer too) trained on
           ½‖h_i − t_i‖². Each feedback layer G_i (the TP inverses, `rule.state.inverses` and
           `rule.state.output_inverse`) learns by its local difference reconstruction loss
           −2⟨dx, G_i(F_i(x + dx)) − G_i(F_i(x))⟩ + ‖G_i(F_i(x) + dy) − G_i(F_i(x))‖², dx, dy ~ N(0, σ²),
           x = h_{i-1}, whose minimum has J_G = J_Fᵀ; K Adam steps of every G_i on the same minibatch
           (fresh noise each) come before the forward step. K, σ and the feedback learning rate take
           one value for every layer, or one per feedback layer (`layer_*`, bottom up, '/'-separated).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..inverses import DirectFeedback
from ..nets import Net
from ..optim import Adam
from ..population import per_member
from ..values import check_value, convert
from .target_propagation import DifferenceTargets, TargetProp, output_error, squared_error

LAYER_SEPARATOR = "/"


class DirectDifferenceTargetProp(TargetProp):
    """DDTP-linear: direct linear feedback Q_i from the output to every hidden layer; target h_i + Q_i(a_L* − a_L)."""

    name = "ddtp"
    per_member = (*TargetProp.per_member, "lam")
    output_inverse_needed = False
    inverse_loss_choices = ("difference-reconstruction",)

    def __init__(self, net: Net, *, lam: float = 0.1, inverse_loss: str = "difference-reconstruction",
                 **settings: Any) -> None:
        super().__init__(net, inverse_loss=inverse_loss, **settings)
        self.lam = lam  # λ, the output target's step; limits: bioscale.values

    def check_settings(self) -> None:
        """The TP checks, and σ > 0 (the reconstruction loss is normalised by σ²)."""
        super().check_settings()
        sigmas = self.sigma if isinstance(self.sigma, (list, tuple)) else [self.sigma]
        if any(s <= 0 for s in sigmas):
            raise UsageError(f"rule {self.name!r}: sigma must be positive (its feedback loss divides by σ²), got {self.sigma}")

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """Q_1 .. Q_{L-1}, one linear map from the logits to each hidden layer."""
        state = nn.Module()
        state.inverses = nn.ModuleList(DirectFeedback(self.net.n_classes, shape, generators)
                                       for shape in self.activity_shapes()[1:])
        state.output_inverse = None
        return state

    @torch.no_grad()
    def targets(self, hs: list[Tensor], logits: Tensor, y: Tensor) -> list[Tensor]:
        """h_i* = h_i + Q_i(a_L* − a_L) with a_L* − a_L = −λ e; exactly h_i when λ = 0."""
        change = -per_member(self.hyper.lam, logits) * output_error(logits.detach(), y)
        return [h.detach() + q(change) for h, q in zip(hs[1:], self.state.inverses)]

    def forward_from(self, layer: int, h: Tensor) -> Tensor:
        """The logits from activity h_layer, through the layers above it."""
        for block in self.net.blocks[layer:]:
            h = block(h)
        return self.net.output_logits(h)

    def inverse_losses(self, hs: list[Tensor]) -> list[Tensor]:
        """Each Q_i's difference reconstruction loss ‖Q_i(ã_L − a_L)/σ − ε‖², ã_L from h_i + σε; on Q_i only."""
        hs = [h.detach() for h in hs]
        with torch.no_grad():
            logits = self.net.output_logits(hs[-1])
        losses = []
        for layer, (q, noise) in enumerate(zip(self.state.inverses, self.noise_like(hs[1:])), start=1):
            sigma = per_member(self.hyper.sigma, noise)
            with torch.no_grad():
                change = self.forward_from(layer, hs[layer] + sigma * noise) - logits
            losses.append(squared_error(q(change) / sigma, noise))
        return losses


class LocalDifferenceReconstruction(DifferenceTargets):
    """L-DRL: difference targets from t_N = a_L − β e; feedback layers trained by the local difference reconstruction loss."""

    name = "ldrl"
    per_member = (*DifferenceTargets.per_member, "beta")
    inverse_loss_choices = ("local-difference-reconstruction",)

    def __init__(self, net: Net, *, beta: float = 0.7, inverse_iterations: int = 1, layer_inverse_iterations: str = "",
                 layer_sigma: str = "", layer_inverse_lr: str = "",
                 inverse_loss: str = "local-difference-reconstruction", **settings: Any) -> None:
        super().__init__(net, inverse_loss=inverse_loss, **settings)
        self.beta, self.inverse_iterations = beta, inverse_iterations  # limits: bioscale.values
        # One value per feedback layer (G_2 .. G_L, bottom up), replacing the single one for every member.
        self.layer_inverse_iterations, self.layer_sigma, self.layer_inverse_lr = (
            layer_inverse_iterations, layer_sigma, layer_inverse_lr)

    def per_layer(self, setting: str) -> list[Any] | None:
        """The values of `layer_{setting}`, one per feedback layer, or None when it is not given; else a UsageError."""
        text = getattr(self, f"layer_{setting}").strip()
        if not text:
            return None
        parts = text.split(LAYER_SEPARATOR)
        layers = len(self.net.blocks)
        if len(parts) != layers:
            raise UsageError(f"rule {self.name!r}: layer_{setting} has {len(parts)} values for {layers} feedback layers; "
                             f"give one per layer, bottom up, separated by '{LAYER_SEPARATOR}', or none")
        example = 1 if setting == "inverse_iterations" else 1.0  # the type of the single setting's values
        try:
            values = [convert(setting, part.strip(), example) for part in parts]
            for value in values:
                check_value(setting, value)
        except ValueError as error:
            raise UsageError(f"rule {self.name!r}: layer_{setting}: {error}") from None
        return values

    def check_settings(self) -> None:
        """The TP checks, then each per-layer list: one valid value per feedback layer."""
        super().check_settings()
        for setting in ("inverse_iterations", "sigma", "inverse_lr"):
            self.per_layer(setting)

    def build(self) -> None:
        """The TP state, with one inverse optimizer per feedback layer in place of one for all (a layer's own K and lr)."""
        super().build()
        self.inverse_optimizer = None
        h, lrs = self.hyper, self.per_layer("inverse_lr")
        pairs = self.feedback_pairs()
        for j, (inverse, _) in enumerate(pairs):  # G_i's optimizer is `inverse_{i}_optimizer`, i its layer number
            setattr(self, f"inverse_{j + 2}_optimizer", Adam(
                inverse.parameters(), lr=h.inverse_lr if lrs is None else torch.full_like(h.inverse_lr, lrs[j]),
                beta1=h.inverse_beta1, beta2=h.inverse_beta2, eps=h.inverse_eps))
        self.layer_iterations = self.per_layer("inverse_iterations") or [int(self.inverse_iterations)] * len(pairs)
        self.layer_sigmas = self.per_layer("sigma")

    @property
    def feedback_optimizers(self) -> list[Adam]:
        """The optimizer of each feedback layer, G_2 .. G_L."""
        return [getattr(self, f"inverse_{j + 2}_optimizer") for j in range(len(self.layer_iterations))]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The forward optimizer and one per feedback layer, `inverse_2` .. `inverse_L` (G_i's layer number)."""
        return {**super().optimizers(), **{f"inverse_{j + 2}": opt for j, opt in enumerate(self.feedback_optimizers)}}

    def feedback_pairs(self) -> list[tuple[nn.Module, Callable[[Tensor], Tensor]]]:
        """(G_i, F_i) for i = 2 .. L: every hidden layer but the first, then the output layer; F_i reads h_{i-1}."""
        return [*zip(self.state.inverses, self.net.blocks[1:]), (self.state.output_inverse, self.net.output_logits)]

    def output_activity(self, h: Tensor, logits: Tensor) -> Tensor:
        """a_L: the logits."""
        return logits

    def output_target(self, output: Tensor, y: Tensor) -> Tensor:
        """t_N = a_L − β e, a gradient step on each example's own loss; exactly a_L when β = 0."""
        return output - per_member(self.hyper.beta, output) * output_error(output, y)

    def local_losses(self, hs: list[Tensor], targets: list[Tensor]) -> list[Tensor]:
        """½‖h_i − t_i‖² for each hidden layer (summed over units, averaged over the batch)."""
        return [0.5 * squared_error(h, t) for h, t in zip(hs[1:], targets)]

    def forward_losses(self, hs: list[Tensor], logits: Tensor, y: Tensor, task_loss: Tensor) -> list[Tensor]:
        """Every layer on its local loss, the output layer's ½‖a_L − t_N‖² too (so with β = 0 nothing moves)."""
        with torch.no_grad():
            top = self.output_target(logits.detach(), y)
        return [*self.local_losses(hs, self.targets(hs, logits, y)), 0.5 * squared_error(logits, top)]

    def sigma_of(self, layer: int) -> Tensor:
        """σ of feedback layer `layer` (counted from 0), one value per member."""
        sigma = self.hyper.sigma
        return sigma if self.layer_sigmas is None else torch.full_like(sigma, self.layer_sigmas[layer])

    def inverse_losses(self, hs: list[Tensor]) -> list[Tensor]:
        """Every feedback layer's local difference reconstruction loss, on its own G_i only."""
        layers = list(range(len(self.feedback_pairs())))
        return self.reconstruction_losses(*self.feedback_inputs(hs), layers)

    def feedback_inputs(self, hs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """([x_i = h_{i-1}], [y_i = F_i(x_i)]) of every feedback layer, without autograd: y_i is h_i, the logits for the output layer."""
        xs = [h.detach() for h in hs[1:]]
        with torch.no_grad():
            logits = self.net.output_logits(xs[-1])
        return xs, [*xs[1:], logits]

    def reconstruction_losses(self, xs: list[Tensor], ys: list[Tensor], layers: list[int]) -> list[Tensor]:
        """−2⟨dx, G(F(x + dx)) − G(y)⟩ + ‖G(y + dy) − G(y)‖² of each of `layers`, with fresh noise."""
        pairs, losses = self.feedback_pairs(), []
        noises = self.noise_like([xs[j] for j in layers] + [ys[j] for j in layers])
        for n, j in enumerate(layers):
            (inverse, forward), x, y = pairs[j], xs[j], ys[j]
            sigma = self.sigma_of(j)
            dx, dy = per_member(sigma, x) * noises[n], per_member(sigma, y) * noises[len(layers) + n]
            with torch.no_grad():
                y_dx = forward(x + dx)
            r, r_dx, r_dy = inverse(torch.cat([y, y_dx, y + dy], 1)).chunk(3, 1)
            losses.append(-2 * (dx * (r_dx - r)).flatten(2).sum(2).mean(1) + squared_error(r_dy, r))
        return losses

    def train_inverses(self, hs: list[Tensor]) -> None:
        """K_i Adam steps of each G_i on this minibatch, fresh noise each; a layer with a smaller K_i stops sooner."""
        xs, ys = self.feedback_inputs(hs)
        for iteration in range(max(self.layer_iterations)):
            layers = [j for j, k in enumerate(self.layer_iterations) if k > iteration]
            for j in layers:
                self.feedback_optimizers[j].zero_grad()
            sum(self.reconstruction_losses(xs, ys, layers)).sum().backward()  # separate one-layer graphs
            for j in layers:
                self.feedback_optimizers[j].step()
