"""DDTP-linear and L-DRL: known answers, targets and updates against independent computations, per-layer settings.

Linear networks use an identity activation put on the net before the rule is built (the rules
read the activation of their inverses from the net), so the known answers of the papers hold exactly.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from bioscale import rules
from bioscale.errors import UsageError
from bioscale.layers import Activation
from bioscale.nets import Net
from bioscale.run_config import RunConfig
from bioscale.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NEW_RULES = ("ddtp", "ldrl")
ARCHS = {"fc": "3*fc:16", "lc": "lc:3:3:2,lc:3:4:1,fc:12", "conv": "conv:3:3:2,conv:3:4:1,fc:12"}
INPUT = (1, 8, 8)


class Identity(Activation):
    """A linear 'activation', for the known answers on linear networks."""

    def __call__(self, a):
        return a

    def derivative(self, h):
        return torch.ones_like(h)


def linear_net(spec, input_shape, classes, seeds=(0,)):
    net = Net(spec, input_shape, classes, seeds=seeds).double()
    net.activation = Identity("identity")
    for block in net.blocks:
        block.activation = net.activation
    return net


def make_rule(name, arch="fc", seeds=(0,), dtype=torch.double, **settings):
    return rules.create(name, Net(ARCHS[arch], INPUT, 10, seeds=seeds).to(dtype), **settings)


def batch(n=16, seed=1, dtype=torch.double, shape=INPUT, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def activities(net, x):
    with torch.no_grad():
        return net.activities(x)


def output_errors(net, h, y):
    """∂(Σ_k Σ_i L_ki)/∂a: each member's and each example's own cross-entropy gradient at the logits, by autograd."""
    logits = net.output_logits(h).detach().requires_grad_(True)
    loss = sum(F.cross_entropy(logits[k], y, reduction="sum") for k in range(net.members))
    (grad,) = torch.autograd.grad(loss, logits)
    return logits.detach(), grad


def column(values, like):
    return torch.tensor(values, dtype=like.dtype).view(-1, *[1] * (like.dim() - 1))


def layer_gradients(net, hs, targets, y, scale, output_target=None):
    """Each layer's gradient of scale·‖h_l − t_l‖² (mean over the batch) with input and target constant; the
    output layer's of the task loss, or of scale·‖a − t‖² when `output_target` is given."""
    grads = []
    for l, block in enumerate(net.blocks):
        loss = scale * ((block(hs[l]) - targets[l]) ** 2).flatten(2).sum(2).mean(1).sum()
        grads.append(torch.autograd.grad(loss, list(block.parameters())))
    logits = net.output_logits(hs[-1])
    if output_target is None:
        loss = sum(F.cross_entropy(logits[k], y) for k in range(net.members))
    else:
        loss = scale * ((logits - output_target) ** 2).sum(2).mean(1).sum()
    grads.append(torch.autograd.grad(loss, list(net.output.parameters())))
    return grads


def assert_grads(rule, expected):
    for layer, grads in zip(rule.net.layers(), expected, strict=True):
        for param, grad in zip(layer.parameters(), grads, strict=True):
            torch.testing.assert_close(param.grad, grad, rtol=1e-7, atol=1e-10)


# -- registry ---------------------------------------------------------------------------------------

def test_registered_local_with_both_schedules_and_the_papers_defaults():
    for name in NEW_RULES:
        assert rules.get(name).locality == "local" and rules.get(name).schedules == ("parallel", "alternating")
    ddtp, ldrl = rules.settings("ddtp"), rules.settings("ldrl")
    assert (ddtp["lam"], ddtp["sigma"], ddtp["inverse_lr"], ddtp["inverse_loss"]) == (0.1, 0.1, 1e-3, "difference-reconstruction")
    assert (ldrl["beta"], ldrl["sigma"], ldrl["inverse_iterations"]) == (0.7, 0.1, 1)
    assert ldrl["inverse_loss"] == "local-difference-reconstruction"
    assert ldrl["layer_inverse_iterations"] == ldrl["layer_sigma"] == ldrl["layer_inverse_lr"] == ""


@pytest.mark.parametrize("name, setting", [("ddtp", {"inverse_loss": "denoising"}), ("ldrl", {"inverse_loss": "denoising"}),
                                           ("ddtp", {"lam": -0.1}), ("ldrl", {"beta": -1.0}), ("ddtp", {"sigma": 0.0}),
                                           ("ldrl", {"inverse_iterations": 0}), ("ldrl", {"inverse_iterations": [1]}),
                                           ("ldrl", {"layer_sigma": "0.1/0.2"}), ("ldrl", {"layer_sigma": "0.1/x/0.1"}),
                                           ("ldrl", {"layer_inverse_lr": "1e-3/-1e-3/1e-3"}),
                                           ("ldrl", {"layer_inverse_iterations": "1/2.5/1"})])
def test_bad_settings_are_refused(name, setting):
    with pytest.raises(UsageError):
        make_rule(name, **setting)


def train_feedback_only(rule, steps=300, batch_size=128):
    """Feedback-only steps (the alternating schedule's epoch 0) on random 20-unit inputs: `steps` at learning rate
    1e-2, as many at 1e-3 (Adam's noise floor scales with its learning rate)."""
    g = torch.Generator().manual_seed(0)
    for lr in (1e-2, 1e-3):
        for opt in rule.optimizers().values():
            if opt is not rule.forward_optimizer:
                opt.lr.fill_(lr)
        for _ in range(steps):
            rule.step(torch.randn(batch_size, 1, 1, 20, generator=g, dtype=torch.double),
                      torch.randint(0, 5, (batch_size,), generator=g))


# -- DDTP-linear ------------------------------------------------------------------------------------

def ddtp_targets(rule, net, hs, y):
    """h_i + Q_i (a* − a), a* = a − λ e, written out with plain matrix products; `net` is the one hs came from."""
    _, e = output_errors(net, hs[-1], y)
    change = -column(rule.hyper.lam.tolist(), e) * e
    out = []
    for h, q in zip(hs[1:], rule.state.inverses):
        w = q.weight.detach()  # (K, units, classes)
        out.append(h + torch.stack([change[k] @ w[k].t() for k in range(len(w))]).view_as(h))
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_ddtp_step_trains_feedback_then_each_layer_towards_its_direct_target(arch):
    """Two members with their own λ, σ and learning rates; targets from the Q just updated."""
    rule = make_rule("ddtp", arch, seeds=(0, 1), lam=[0.1, 0.3], sigma=[0.1, 0.05], inverse_lr=[1e-3, 2e-3],
                     forward_lr=[1e-3, 3e-4])
    assert len(rule.state.inverses) == len(rule.net.blocks) and rule.state.output_inverse is None
    x, y = batch()
    before = copy.deepcopy(rule.net)
    q_before = [q.weight.detach().clone() for q in rule.state.inverses]
    rule.step(x, y)
    assert all(not torch.equal(a, q.weight) for a, q in zip(q_before, rule.state.inverses))
    hs = activities(before, x)
    targets = ddtp_targets(rule, before, hs, y)
    assert not torch.allclose(targets[0], hs[1], atol=1e-4)
    assert_grads(rule, layer_gradients(before, hs, targets, y, scale=1.0))


@pytest.mark.parametrize("arch", ARCHS)
def test_ddtp_with_lambda_zero_every_target_is_its_activation_exactly(arch):
    rule = make_rule("ddtp", arch, dtype=torch.float32, lam=0.0)
    x, y = batch(dtype=torch.float32)
    hs = activities(rule.net, x)
    for h, t in zip(hs[1:], rule.targets(hs, rule.net.output_logits(hs[-1]), y), strict=True):
        assert torch.equal(t, h)


def test_ddtp_feedback_learns_the_pseudo_inverse_of_the_jacobian():
    """Linear 20–15–5 net, forward weights fixed (an inverse-only epoch): Q_1 → pinv(J_1) = pinv(W_2), two members."""
    net = linear_net("fc:15", (1, 1, 20), 5, seeds=(0, 1))
    rule = rules.create("ddtp", net, schedule="alternating", sigma=0.1)
    w = net.output.weight.detach().clone()
    target = torch.linalg.pinv(w)  # (K, 15, 5)
    distance = lambda: ((rule.state.inverses[0].weight.detach() - target).flatten(1).norm(dim=1) /
                        target.flatten(1).norm(dim=1))
    assert (distance() > 0.5).all()
    train_feedback_only(rule)
    assert torch.equal(net.output.weight, w)
    assert (distance() < 0.05).all(), distance()
    assert ((rule.state.inverses[0].weight.detach() - w.transpose(1, 2)).flatten(1).norm(dim=1) > 0.2).all()  # not just Wᵀ


# -- L-DRL ------------------------------------------------------------------------------------------

def ldrl_targets(rule, net, hs, y):
    """t_N = a − β e, then t_{i-1} = h_{i-1} + G_i(t_i) − G_i(h_i) down to t_1; returns ([t_1 .. t_{L-1}], t_N)."""
    logits, e = output_errors(net, hs[-1], y)
    top = logits - column(rule.hyper.beta.tolist(), e) * e
    inverses = [*rule.state.inverses, rule.state.output_inverse]
    above, target, out = logits, top, []
    with torch.no_grad():
        for i in range(len(hs) - 1, 0, -1):  # inverses[i - 1] maps h_{i+1} (the logits for i = L-1) to h_i
            target = hs[i] + inverses[i - 1](target) - inverses[i - 1](above)
            above = hs[i]
            out.insert(0, target)
    return out, top


@pytest.mark.parametrize("arch", ARCHS)
def test_ldrl_step_trains_feedback_then_every_layer_towards_its_difference_target(arch):
    rule = make_rule("ldrl", arch, seeds=(0, 1), beta=[0.7, 0.3], sigma=[0.1, 0.2], inverse_lr=[1e-3, 2e-3])
    x, y = batch()
    before = copy.deepcopy(rule.net)
    g_before = [p.detach().clone() for p in rule.inverse_parameters()]
    rule.step(x, y)
    assert all(not torch.equal(a, p) for a, p in zip(g_before, rule.inverse_parameters()))
    hs = activities(before, x)
    targets, top = ldrl_targets(rule, before, hs, y)
    assert_grads(rule, layer_gradients(before, hs, targets, y, scale=0.5, output_target=top))


def test_ldrl_feedback_of_a_linear_layer_learns_its_transpose():
    """F(x) = W x (the output layer of a linear net), G(y) = V y trained by the local loss alone: V → Wᵀ."""
    net = linear_net("fc:15", (1, 1, 20), 5, seeds=(0, 1))
    rule = rules.create("ldrl", net, schedule="alternating", sigma=0.1)
    w = net.output.weight.detach().clone()
    distance = lambda: ((rule.state.output_inverse.weight.detach() - w.transpose(1, 2)).flatten(1).norm(dim=1) /
                        w.flatten(1).norm(dim=1))
    assert (distance() > 0.5).all()
    train_feedback_only(rule)
    assert torch.equal(net.output.weight, w)
    assert (distance() < 0.05).all(), distance()


def test_ldrl_with_transposed_feedback_on_a_linear_net_gives_beta_times_backprop():
    net = linear_net("3*fc:6", (1, 1, 7), 4, seeds=(0, 1))
    rule = rules.create("ldrl", net, schedule="alternating", beta=[0.7, 0.2])
    rule.start_epoch(1)  # a forward epoch: the feedback layers stay as set here
    with torch.no_grad():
        for inverse, layer in zip([*rule.state.inverses, rule.state.output_inverse], net.layers()[1:], strict=True):
            inverse.weight.copy_(layer.weight.transpose(1, 2))
            inverse.bias.uniform_(-1, 1)  # cancels in every difference
    x, y = batch(n=8, shape=(1, 1, 7), classes=4)
    reference = copy.deepcopy(net)
    loss = sum(F.cross_entropy(reference(x)[k], y) for k in range(2))
    bp = torch.autograd.grad(loss, list(reference.parameters()))
    rule.step(x, y)
    for (name, param), grad in zip(net.named_parameters(), bp, strict=True):
        torch.testing.assert_close(param.grad, column([0.7, 0.2], grad) * grad, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_ldrl_with_beta_zero_moves_no_forward_weight(arch):
    rule = make_rule("ldrl", arch, dtype=torch.float32, beta=0.0)
    x, y = batch(dtype=torch.float32)
    before = [p.detach().clone() for p in rule.net.parameters()]
    g_before = [p.detach().clone() for p in rule.inverse_parameters()]
    for _ in range(2):
        rule.step(x, y)
    assert all(torch.equal(a, p) for a, p in zip(before, rule.net.parameters()))
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in rule.net.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(g_before, rule.inverse_parameters()))  # while G trained


def test_ldrl_k_feedback_iterations_are_k_feedback_steps_on_the_same_minibatch():
    """K = 3 in one parallel step trains G as three inverse-only steps do on the same minibatch, then moves the net."""
    x, y = batch()
    many = make_rule("ldrl", "lc", inverse_iterations=3)
    single = make_rule("ldrl", "lc", schedule="alternating")  # epoch 0: feedback only
    for _ in range(3):
        single.step(x, y)
    net_before = [p.detach().clone() for p in many.net.parameters()]
    many.step(x, y)
    for a, b in zip(many.inverse_parameters(), single.inverse_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert all(opt.steps == 3 for opt in many.feedback_optimizers)
    assert all(not torch.equal(a, p) for a, p in zip(net_before, many.net.parameters()))


def test_ldrl_per_layer_settings_reach_each_feedback_layer():
    rule = make_rule("ldrl", "fc", seeds=(0, 1), layer_inverse_iterations="2/1/3", layer_sigma="0.3/0.1/0.05",
                     layer_inverse_lr="1e-3/2e-3/4e-3", sigma=[0.2, 0.4])
    assert list(rule.optimizers()) == ["forward", "inverse_2", "inverse_3", "inverse_4"]
    assert [opt.lr.tolist() for opt in rule.feedback_optimizers] == [[1e-3] * 2, [2e-3] * 2, [4e-3] * 2]
    assert [rule.sigma_of(j).tolist() for j in range(3)] == [[0.3] * 2, [0.1] * 2, [0.05] * 2]
    x, y = batch()
    rule.step(x, y)
    rule.step(x, y)
    assert [opt.steps for opt in rule.feedback_optimizers] == [4, 2, 6]
    shared = make_rule("ldrl", "fc", seeds=(0, 1), sigma=[0.2, 0.4])  # no per-layer values: the member's own
    assert [shared.sigma_of(j).tolist() for j in range(3)] == [[0.2, 0.4]] * 3


# -- learning ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lc", "conv"])
@pytest.mark.parametrize("name", NEW_RULES)
def test_learns_digits_on_spatial_nets(name, arch):
    result, _ = train(RunConfig(rule=name, arch=arch, epochs=10), progress=False)
    assert result.history[-1].test_error < 0.2, result.history[-1].test_error
