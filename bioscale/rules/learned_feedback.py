"""Feedback alignment whose feedback weights learn: Kolen-Pollack (KP) and weight mirrors (WM), Akrout et al. 2019.

Both send the error backwards as FA does, through B_l in place of W_l (B_l has W_l's shape and
is used as its transpose map, so the paper's B_l = W_lᵀ reads B_l = W_l here), starting from FA's
random B_l; B_l is a parameter of the rule's state with its own Adam optimizer. Neither ever reads W_l
into B_l; they differ in what B_l learns from.

KP: B_l takes the same update as W_l (the paper's transpose of it) and both decay by the same factor
(decoupled, as AdamW: every weight is multiplied by 1 − forward_lr·decay before Adam's step, the
biases are not). An Adam of B_l with W_l's settings on W_l's gradient would hold W_l's moments
element for element, so B_l is tied to W_l in the forward optimizer (`Adam.tie`) and takes W_l's
Adam step itself: W_l − B_l shrinks by (1 − forward_lr·decay) at every step, whatever the data.
(Adam's coupled weight decay would normalise g + λW and g + λB differently.)

WM: before each forward step, `mirror_steps` mirror steps. In each, every layer but the first (whose
B_l is never read: the data takes no gradient) is fed its own zero-mean noise x ~ N(0, mirror_sigma²)
(no other layer takes part) and B_l takes an Adam step on
    mirror_decay·‖B_l‖² − mean over the noise of ⟨W_l x, B_l x⟩          (W_l held fixed)
whose stationary point is B_l = (mirror_sigma² / 2·mirror_decay) W_l, the transport-free estimate
of W_l (Kunin et al. 2020's loss form of the mirror; the paper's α‖W‖² term is constant in B and
left out). For a convolution the inner product is averaged over the output locations too, the
examples of its shared filter, so the stationary point is the same for every family.

Defaults, from the papers rather than tuned here: KP's decay 0.01 shrinks the weights by 1e-5 a
step at Adam's 1e-3, as Akrout et al.'s ImageNet runs do (SGD, lr 0.1, weight decay 1e-4; it is
also AdamW's default). WM's noise scale 1 and decay 0.5 (the authors' code and its ports use noise
amplitudes of 0.1 to 1 and a damping of 0.5) put the stationary point at B_l = W_l; one mirror
step per forward step; the mirror's Adam learning rate is the forward one's default.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..layers import Conv2d, MemberLayer
from ..optim import Adam
from ..population import per_member
from .feedback_alignment import FeedbackAlignment, random_feedback


class LearnedFeedback(FeedbackAlignment):
    """FA whose B_l are parameters of the rule's state (FA's random matrices to start), which the rule trains."""

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        return nn.ParameterList(nn.Parameter(b) for b in random_feedback(self.net.layers(), generators))

    def feedback_weight(self, index: int, layer: MemberLayer) -> Tensor:
        return self.state[index].detach()

    def feedback_pairs(self) -> Iterator[tuple[MemberLayer, nn.Parameter]]:
        """(layer, its B_l) for every layer, output layer included."""
        return zip(self.net.layers(), self.state, strict=True)


class KolenPollack(LearnedFeedback):
    """KP: B_l takes W_l's own update and decay, so W_l − B_l shrinks geometrically."""

    name = "kp"
    per_member = (*LearnedFeedback.per_member, "decay")

    def __init__(self, net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9, forward_beta2: float = 0.999,
                 forward_eps: float = 1e-8, decay: float = 0.01) -> None:
        super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1, forward_beta2=forward_beta2,
                         forward_eps=forward_eps)
        self.decay = decay

    def build(self) -> None:
        super().build()
        for layer, feedback in self.feedback_pairs():
            self.forward_optimizer.tie(layer.weight, feedback)  # W_l's Adam step, taken by B_l too

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """FA's backward pass; then W_l and B_l both decay and both take the Adam step of W_l's gradient."""
        self.forward_optimizer.zero_grad()
        loss = self.task_loss(x, y)
        loss.sum().backward()
        with torch.no_grad():
            factor = 1 - self.hyper.forward_lr * self.hyper.decay
            factor = torch.where(self.forward_optimizer.active, factor, 1)  # a stopped member keeps its weights
            for layer, feedback in self.feedback_pairs():
                layer.weight.mul_(per_member(factor, layer.weight))
                feedback.mul_(per_member(factor, feedback))
        self.forward_optimizer.step()
        self.forward_steps += 1
        return loss.detach()


class WeightMirrors(LearnedFeedback):
    """WM: B_l learns from each layer's response to injected noise, towards (σ²/2·mirror_decay) W_l."""

    name = "wm"
    per_member = (*LearnedFeedback.per_member, "mirror_lr", "mirror_sigma", "mirror_decay")
    feedback_optimizer: Adam

    def __init__(self, net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9, forward_beta2: float = 0.999,
                 forward_eps: float = 1e-8, mirror_lr: float = 1e-3, mirror_sigma: float = 1.0,
                 mirror_decay: float = 0.5, mirror_steps: int = 1) -> None:
        super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1, forward_beta2=forward_beta2,
                         forward_eps=forward_eps)
        self.mirror_lr, self.mirror_sigma = mirror_lr, mirror_sigma
        self.mirror_decay, self.mirror_steps = mirror_decay, mirror_steps

    def build(self) -> None:
        super().build()
        h = self.hyper  # its own learning rate; β1, β2 and ε are the forward optimizer's
        self.feedback_optimizer = Adam([b for _, b in self.mirrored_pairs()], lr=h.mirror_lr, beta1=h.forward_beta1,
                                       beta2=h.forward_beta2, eps=h.forward_eps)
        with torch.no_grad():  # the shape of every layer's input, for its noise
            probe = next(self.net.parameters()).new_zeros(1, *self.net.input_shape)
            hs = self.net.activities(probe)
        flatten = [block.flatten for block in self.net.blocks] + [self.net.flatten_output_input]
        self.input_shapes = [tuple(h.flatten(2).shape[2:] if flat else h.shape[2:]) for h, flat in zip(hs, flatten)]

    def optimizers(self) -> dict[str, Adam]:
        return {**super().optimizers(), "feedback": self.feedback_optimizer}

    def mirrored_pairs(self) -> list[tuple[MemberLayer, nn.Parameter]]:
        """(layer, B_l) for every layer but the first, whose B_l is never read (the data takes no gradient): FA's random start."""
        return list(self.feedback_pairs())[1:]

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """`mirror_steps` mirror steps on noise of the minibatch's size, then FA's forward step."""
        for _ in range(self.mirror_steps):
            self.mirror_step(len(x))
        return super().step(x, y)

    def mirror_step(self, examples: int) -> None:
        """One Adam step of every read B_l (all but the first layer's) on its mirror loss, on `examples` draws of N(0, mirror_sigma²).

        The loss is quadratic in B_l, so its gradient is written out: 2·mirror_decay·B_l minus the
        layer's own weight gradient (torch.nn.grad.conv2d_weight for a convolution) of output
        gradient y = W_l x at input x, divided by the number of the filter's applications.
        """
        like = next(self.net.parameters())
        templates = [like.new_empty(self.members, examples, *shape) for shape in self.input_shapes]
        # the first layer's noise is drawn too, though not used: every other layer's is then what it always was
        noise = [z.mul_(per_member(self.hyper.mirror_sigma, z)) for z in self.noise_like(templates)[1:]]
        twice_decay = 2 * self.hyper.mirror_decay
        with torch.no_grad():
            for i, ((layer, feedback), x) in enumerate(zip(self.mirrored_pairs(), noise, strict=True), start=1):
                response = layer.map(x, layer.weight, None)
                # a convolution's filter is applied at every output location: average over those too
                uses = examples * (response[0, 0, 0].numel() if isinstance(layer, Conv2d) else 1)
                decay_term = torch.mul(per_member(twice_decay, feedback), feedback,
                                       out=self.scratch(("mirror decay", i), feedback))
                correlation = layer.weight_grad(response, x).div_(uses)
                feedback.grad = torch.sub(decay_term, correlation, out=correlation)
        self.feedback_optimizer.step()
