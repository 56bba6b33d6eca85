"""KP, WM and the sign-symmetry variants against their known answers (RULES-SINCE-2018.md), on fc, lc and conv."""

import copy

import pytest
import torch
import torch.nn.functional as F

from bioscale import rules
from bioscale.layers import Conv2d, LocallyConnected2d
from bioscale.nets import Net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECS = {"fc": "2*fc:12", "lc": "lc:3:4:2,lc:3:5:1,fc:10", "conv": "conv:3:4:2,conv:3:5:1,fc:10"}
FAMILIES = tuple(SPECS)


def make_net(family: str, seeds=(0, 1), dtype=torch.float64) -> Net:
    return Net(SPECS[family], (2, 6, 6), 5, seeds=seeds).to(dtype)


def batches(n: int, dtype=torch.float64, size: int = 7):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 2, 6, 6, generator=g, dtype=dtype), torch.randint(0, 5, (size,), generator=g))
            for _ in range(n)]


# -- Kolen-Pollack ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_kp_shrinks_w_minus_b_by_one_minus_lr_times_decay_every_step(family):
    """‖W_n − B_n‖ = (1 − lr·decay)ⁿ ‖W_0 − B_0‖ for every layer and member, whatever the data (one lr and decay per member)."""
    lr, decay, steps = [1e-2, 3e-3], [5.0, 20.0], 6
    net = make_net(family)
    rule = rules.create("kp", net, forward_lr=lr, decay=decay)
    start = [(layer.weight.detach().clone(), b.detach().clone()) for layer, b in rule.feedback_pairs()]
    for x, y in batches(steps):
        rule.step(x, y)
    for (w0, b0), (layer, b) in zip(start, rule.feedback_pairs(), strict=True):
        for k in range(net.members):
            factor = (1 - lr[k] * decay[k]) ** steps
            expected = factor * (w0[k] - b0[k]).norm()
            assert (layer.weight[k] - b[k]).norm().item() == pytest.approx(expected.item(), rel=1e-5)
            assert not torch.allclose(layer.weight[k], factor * w0[k], atol=1e-6)  # W learned, not only decayed


@pytest.mark.parametrize("family", FAMILIES)
def test_kp_started_from_b_equal_to_w_takes_backprops_steps(family):
    """With B_0 = W_0 (the paper's W_0ᵀ) and no decay, every step equals BP's; with decay B stays W and the gradient is BP's."""
    net = make_net(family)
    bp = rules.create("bp", copy.deepcopy(net))
    kp = rules.create("kp", copy.deepcopy(net), decay=0.0)
    decayed = rules.create("kp", copy.deepcopy(net), decay=3.0)
    for rule in (kp, decayed):
        with torch.no_grad():
            for layer, b in rule.feedback_pairs():
                b.copy_(layer.weight)
    for x, y in batches(4):
        probe = rules.create("bp", copy.deepcopy(decayed.net))  # BP's gradient at the decayed run's weights
        probe.task_loss(x, y).sum().backward()
        for rule in (bp, kp, decayed):
            rule.step(x, y)
        for p_bp, p_kp in zip(bp.net.parameters(), kp.net.parameters(), strict=True):
            torch.testing.assert_close(p_kp, p_bp, rtol=1e-10, atol=1e-12)
        for p_probe, p_decayed in zip(probe.net.parameters(), decayed.net.parameters(), strict=True):
            torch.testing.assert_close(p_decayed.grad, p_probe.grad, rtol=1e-10, atol=1e-12)
        for layer, b in decayed.feedback_pairs():
            assert torch.equal(b, layer.weight)
    first = bp.net.blocks[0].layer.weight
    assert not torch.allclose(first, net.blocks[0].layer.weight)  # it did train


@pytest.mark.parametrize("family", FAMILIES)
def test_kp_b_takes_what_its_own_adam_on_ws_gradient_would_bit_for_bit(family):
    """B_l tied to W_l in the forward Adam equals B_l decayed and stepped by an Adam of its own with W_l's settings."""
    lr, decay = [1e-2, 3e-3], [5.0, 20.0]
    rule = rules.create("kp", make_net(family), forward_lr=lr, decay=decay)
    shadows = [torch.nn.Parameter(b.detach().clone()) for b in rule.state]
    start = shadows[0].detach().clone()
    own = rule.adam(shadows, "forward")
    factor = 1 - rule.hyper.forward_lr * rule.hyper.decay
    for x, y in batches(4):
        rule.step(x, y)
        with torch.no_grad():
            for (layer, _), shadow in zip(rule.feedback_pairs(), shadows, strict=True):
                shadow.mul_(factor.view(-1, *[1] * (shadow.dim() - 1)))
                shadow.grad = layer.weight.grad
        own.step()
        for b, shadow in zip(rule.state, shadows, strict=True):
            assert torch.equal(b, shadow)
    assert not torch.equal(rule.state[0], start)  # B_l trained


# -- weight mirrors --------------------------------------------------------------------------------

def seen_by_the_noise(layer, weight: torch.Tensor, input_shape) -> torch.Tensor:
    """One member's weight, each entry times the fraction of its applications that read an input rather than zero padding."""
    if not isinstance(layer, (Conv2d, LocallyConnected2d)):
        return weight
    ones = torch.ones(1, *input_shape, dtype=weight.dtype)
    reads = F.unfold(ones, layer.kernel_size, padding=layer.padding, stride=layer.stride)[0]  # (C·k·k, locations)
    if isinstance(layer, Conv2d):
        return weight * reads.mean(1).view(weight.shape[1:])  # one filter, applied at every location
    return weight * reads.t().unsqueeze(1)  # one filter per location: (locations, out, C·k·k)


@pytest.mark.parametrize("family", FAMILIES)
def test_weight_mirrors_learn_b_proportional_to_w_from_noise_alone(family):
    """Mirror steps only (W fixed): B → σ²/(2·decay) W on every layer, each member its own σ and decay.

    On a spatial layer the entries that read zero padding see less noise: their expected value, from
    an independent count of real inputs (F.unfold of ones), scales them down.
    """
    sigma, decay = [1.0, 0.5], [0.5, 0.25]  # stationary scales 1 and 0.5
    net = make_net(family, dtype=torch.float32)
    rule = rules.create("wm", net, mirror_lr=3e-2, mirror_sigma=sigma, mirror_decay=decay)
    weights = [layer.weight.detach().clone() for layer in net.layers()]
    for _ in range(60):
        rule.mirror_step(256)
    rule.feedback_optimizer.lr.mul_(0.1)  # anneal, so that Adam's jitter around the stationary point is small
    for _ in range(60):
        rule.mirror_step(256)
    shapes = [tuple(h.shape[2:]) for h in net.activities(torch.zeros(1, 2, 6, 6))]
    first = rules.create("wm", make_net(family, dtype=torch.float32)).state[0]
    for i, ((layer, b), w) in enumerate(zip(rule.feedback_pairs(), weights, strict=True)):
        assert torch.equal(layer.weight, w)  # the mirror never moves the forward weights
        if i == 0:  # never read (the data takes no gradient), so never mirrored: FA's random start
            assert torch.equal(b, first)
            continue
        for k in range(net.members):
            expected = sigma[k] ** 2 / (2 * decay[k]) * seen_by_the_noise(layer, w[k].double(), shapes[i])
            b_k = b[k].detach().double()
            cosine = F.cosine_similarity(b_k.flatten(), expected.flatten(), 0)
            scale = (b_k * expected).sum() / (expected * expected).sum()
            assert cosine > 0.99, (i, k, cosine.item())
            assert scale.item() == pytest.approx(1.0, abs=0.05), (i, k)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_mirror_step_of_b_reads_only_its_own_layers_w(family):
    """Local: changing W_2 changes the mirror step of B_2 alone (same noise, same state); B_1 is never mirrored."""
    rules_ = [rules.create("wm", make_net(family)) for _ in range(2)]
    with torch.no_grad():
        rules_[1].net.blocks[1].layer.weight.mul_(-2.0)
    for rule in rules_:
        rule.mirror_step(16)
    (first, second, *rest), (first_changed, second_changed, *rest_changed) = ([b.detach() for b in r.state] for r in rules_)
    assert not torch.equal(second, second_changed)
    assert all(torch.equal(a, b) for a, b in zip([first, *rest], [first_changed, *rest_changed], strict=True))


def test_weight_mirrors_steps_come_before_the_forward_step_and_train_b():
    net = make_net("fc", dtype=torch.float32)
    rule = rules.create("wm", net, mirror_steps=3)
    calls = []
    mirror = rule.mirror_step
    rule.mirror_step = lambda n: (calls.append(("mirror", n)), mirror(n))[1]
    before = [b.detach().clone() for b in rule.state]
    (x, y), = batches(1, torch.float32)
    rule.step(x, y)
    assert calls == [("mirror", len(x))] * 3 and rule.forward_steps == 1
    assert all(not torch.equal(b, b0) for b, b0 in zip(list(rule.state)[1:], before[1:]))  # B_1 is never read


# -- sign-symmetry with random magnitudes ---------------------------------------------------------

def feedback_used(rule, steps: int) -> list[list[torch.Tensor]]:
    """The feedback matrices each step sent the error back through, and the weights they came from (every layer but the first)."""
    seen, original = [], rule.feedback_weight

    def record(index, layer):
        b = original(index, layer)
        seen.append((b.clone(), layer.weight.detach().clone()))
        return b

    rule.feedback_weight = record
    for x, y in batches(steps, torch.float32):
        rule.step(x, y)
    per_layer = len(rule.net.layers()) - 1
    return [seen[i:i + per_layer] for i in range(0, len(seen), per_layer)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["sign-symmetry-frsf", "sign-symmetry-brsf"])
def test_sign_symmetry_variants_keep_the_signs_of_w_with_fixed_or_redrawn_magnitudes(name, family):
    net = make_net(family, dtype=torch.float32)
    rule = rules.create(name, net)
    steps = feedback_used(rule, 3)
    assert len(steps) == 3
    for used in steps:
        for (b, w), layer in zip(used, net.layers()[1:], strict=True):
            assert torch.equal(b.sign(), w.sign())  # every step, from the weights of that step
            bound = (6.0 / sum(layer.fans())) ** 0.5  # Glorot's, written out
            assert b.abs().max() <= bound and b.abs().std() > 0.1 * bound  # random magnitudes, not sign(W)
    for before, after in zip(steps, steps[1:]):
        for (b0, w0), (b1, w1) in zip(before, after, strict=True):
            assert not torch.equal(w0, w1)  # the weights trained
            if name == "sign-symmetry-frsf":
                assert torch.equal(b0.abs(), b1.abs())
            else:
                for k in range(net.members):
                    assert not torch.allclose(b0[k].abs(), b1[k].abs())
    if name == "sign-symmetry-frsf":  # the magnitudes are the rule's fixed buffers, drawn as FA's B_l
        fa = rules.create("fa", make_net(family, dtype=torch.float32))
        for (b, _), fixed, random in zip(steps[0], list(rule.state)[1:], list(fa.state)[1:], strict=True):
            assert torch.equal(b.abs(), fixed) and torch.equal(fixed, random.abs())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["fa", "sign-symmetry", "sign-symmetry-frsf", "sign-symmetry-brsf", "kp", "wm"])
def test_the_first_layers_feedback_is_never_made_and_nothing_else_changes(name, family):
    """The data takes no gradient, so layer 1's feedback is not made; making it anyway gives the same steps to the bit.

    brSF still draws layer 1's magnitudes, so every later layer's draws are the ones they were.
    """
    made, both = [], rules.create(name, make_net(family, dtype=torch.float32))
    rule = rules.create(name, make_net(family, dtype=torch.float32))
    original = rule.feedback_weight

    def record(index, layer):
        made.append(index)
        return original(index, layer)

    rule.feedback_weight = record
    both.unread_feedback = both.feedback_weight  # the feedback of the first layer made too, as before
    for x, y in batches(3, torch.float32):
        assert torch.equal(rule.step(x, y), both.step(x, y))
    assert made and 0 not in made
    for a, b in zip([*rule.net.parameters(), *rule.state.parameters()], [*both.net.parameters(), *both.state.parameters()], strict=True):
        assert torch.equal(a, b)
