"""BP, FA, sign-symmetry and DFA against independent computations."""

import copy

import pytest
import torch
import torch.nn.functional as F

from bioscale import rules
from bioscale.nets import Net

SPECS = {"fc": "2*fc:12", "lc": "lc:3:4:2,lc:3:5:1,fc:10", "conv": "conv:3:4:2,conv:3:5:1,fc:10"}


def make_net(family: str, activation: str = "tanh", seeds=(0, 1)) -> Net:
    """Two members by default: every check below holds for each member on its own."""
    return Net(SPECS[family], (2, 6, 6), 5, activation, seeds=seeds)


def batch(n: int = 7):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def grads_of(rule_name: str, net: Net, **settings) -> list[torch.Tensor]:
    rule = rules.create(rule_name, net, **settings)
    x, y = batch()
    rule.task_loss(x, y).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("family", ["fc", "lc", "conv"])
def test_fa_with_feedback_equal_to_weights_is_backprop(family):
    net = make_net(family)
    bp = grads_of("bp", copy.deepcopy(net))
    fa_net = copy.deepcopy(net)
    rule = rules.create("fa", fa_net)
    for feedback, layer in zip(rule.state, fa_net.layers(), strict=True):
        feedback.copy_(layer.weight.detach())
    x, y = batch()
    rule.task_loss(x, y).sum().backward()
    for g_bp, p in zip(bp, fa_net.parameters()):
        torch.testing.assert_close(p.grad, g_bp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["fc", "lc", "conv"])
def test_fa_with_random_feedback_differs_from_backprop_below_the_top(family):
    net = make_net(family)
    bp = grads_of("bp", copy.deepcopy(net))
    fa = grads_of("fa", copy.deepcopy(net))
    # The output layer's gradient needs no transport, so it matches; the first layer's does not.
    torch.testing.assert_close(fa[-1], bp[-1])
    for k in range(2):
        assert not torch.allclose(fa[0][k], bp[0][k])


def test_fa_feedback_is_a_fixed_buffer_of_the_rule_not_of_the_net():
    net = make_net("fc")
    net_keys = set(net.state_dict())
    rule = rules.create("fa", net, forward_lr=1e-2)
    assert set(net.state_dict()) == net_keys  # nothing registered on the net's layers
    assert [b.shape for b in rule.state] == [layer.weight.shape for layer in net.layers()]
    assert len(list(rule.state.buffers())) == len(net.layers()) and not list(rule.state.parameters())
    before = [b.clone() for b in rule.state]
    x, y = batch()
    for _ in range(3):
        rule.step(x, y)
    for b, now in zip(before, rule.state, strict=True):
        assert torch.equal(now, b)


def set_weights_to_signs(net: Net) -> None:
    """Every weight to ±1 (the sign of its random value); biases stay as they are."""
    with torch.no_grad():
        for layer in net.layers():
            layer.weight.copy_(torch.where(layer.weight >= 0, 1.0, -1.0))


@pytest.mark.parametrize("family", ["fc", "lc", "conv"])
def test_sign_symmetry_with_unit_weights_is_backprop(family):
    """With every weight in {-1, +1}, sign(W) = W: gradients and the Adam step equal BP's."""
    net = make_net(family).double()
    set_weights_to_signs(net)
    x, y = batch()
    x = 0.05 * x.double()  # small inputs keep the ±1-weighted tanh layers out of saturation
    updated = {}
    for name in ("bp", "sign-symmetry"):
        copy_ = copy.deepcopy(net)
        rule = rules.create(name, copy_)
        rule.step(x, y)
        updated[name] = copy_
    for (key, p_bp), p_ss in zip(updated["bp"].named_parameters(), updated["sign-symmetry"].parameters()):
        assert p_bp.grad.abs().sum() > 0, key
        torch.testing.assert_close(p_ss.grad, p_bp.grad, rtol=1e-10, atol=1e-14, msg=key)
        torch.testing.assert_close(p_ss, p_bp, rtol=1e-12, atol=1e-14, msg=key)
    assert not torch.equal(updated["bp"].blocks[0].layer.weight, net.blocks[0].layer.weight)


@pytest.mark.parametrize("family", ["fc", "lc", "conv"])
def test_sign_symmetry_sends_the_error_through_the_signs_of_the_current_weights(family):
    """Against FA with B_l set to sign(W_l): the same gradients, and no state of its own."""
    net = make_net(family)
    ss = rules.create("sign-symmetry", copy.deepcopy(net))
    assert not list(ss.state.buffers()) and not list(ss.state.parameters())
    fa_net = copy.deepcopy(net)
    fa = rules.create("fa", fa_net)
    for feedback, layer in zip(fa.state, fa_net.layers(), strict=True):
        feedback.copy_(layer.weight.detach().sign())
    x, y = batch()
    ss.task_loss(x, y).sum().backward()
    fa.task_loss(x, y).sum().backward()
    for p_ss, p_fa in zip(ss.net.parameters(), fa_net.parameters()):
        torch.testing.assert_close(p_ss.grad, p_fa.grad)
    bp = grads_of("bp", copy.deepcopy(net))
    assert not torch.allclose(ss.net.blocks[0].layer.weight.grad, bp[0])  # magnitudes matter below the top


@pytest.mark.parametrize("family", ["fc", "lc", "conv"])
def test_dfa_matches_a_hand_computed_update(family):
    net = make_net(family)
    rule = rules.create("dfa", net)
    x, y = batch()
    rule.task_loss(x, y).sum().backward()
    # Independent computation: every quantity from the definitions, layer by layer, member by member.
    with torch.no_grad():
        hs, pre = [net.member_input(x)], []
        for block in net.blocks:
            inp = hs[-1].flatten(2) if block.flatten else hs[-1]
            pre.append(block.layer(inp))
            hs.append(torch.tanh(pre[-1]))
        logits = net.output_logits(hs[-1])
        e = (torch.softmax(logits, 2) - F.one_hot(y, 5)) / len(y)
    for l, block in enumerate(net.blocks):
        b_e = torch.stack([e[k] @ rule.state[l][k].t() for k in range(net.members)])
        delta = b_e.view_as(pre[l]) * (1 - torch.tanh(pre[l]) ** 2)
        inp = hs[l].flatten(2) if block.flatten else hs[l]
        a = block.layer(inp)
        expect_w, expect_b = torch.autograd.grad(a, (block.layer.weight, block.layer.bias), delta)
        torch.testing.assert_close(block.layer.weight.grad, expect_w, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(block.layer.bias.grad, expect_b, rtol=1e-5, atol=1e-7)
    # The output layer learns by the delta rule on its own input.
    for k in range(net.members):
        expect_out = e[k].t() @ hs[-1][k].flatten(1)
        torch.testing.assert_close(net.output.weight.grad[k], expect_out, rtol=1e-5, atol=1e-7)


def test_dfa_for_a_linear_net_by_explicit_formula():
    """One hidden fc layer, relu: δ1 = (B1 e) ⊙ 1[a1 > 0], ∂W1 = δ1ᵀ x, written out with no autograd, for each member."""
    net = Net("fc:4", (1, 1, 3), 2, "relu", seeds=(3, 4))
    rule = rules.create("dfa", net)
    x = torch.randn(5, 1, 1, 3, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 1, 0, 1])
    rule.task_loss(x, y).sum().backward()
    for k in range(2):
        W1, b1 = net.blocks[0].layer.weight[k].detach(), net.blocks[0].layer.bias[k].detach()
        W2, b2 = net.output.weight[k].detach(), net.output.bias[k].detach()
        xf = x.flatten(1)
        a1 = xf @ W1.t() + b1
        h1 = a1.clamp_min(0)
        p = torch.softmax(h1 @ W2.t() + b2, 1)
        e = (p - torch.eye(2)[y]) / 5
        delta = (e @ rule.state[0][k].t()) * (a1 > 0).float()
        torch.testing.assert_close(net.blocks[0].layer.weight.grad[k], delta.t() @ xf)
        torch.testing.assert_close(net.output.weight.grad[k], e.t() @ h1)


def test_adam_settings_reach_the_optimizer():
    net = make_net("fc", seeds=(0,))
    rule = rules.create("bp", net, forward_lr="3e-4", forward_beta2="0.99", forward_eps=1e-6)
    opt = rule.forward_optimizer
    assert opt.lr.tolist() == [pytest.approx(3e-4)] and opt.beta1.tolist() == [pytest.approx(0.9)]
    assert opt.beta2.tolist() == [pytest.approx(0.99)] and opt.eps.tolist() == [pytest.approx(1e-6)]
    assert rule.get_params() == {"forward_lr": 3e-4, "forward_beta1": 0.9, "forward_beta2": 0.99, "forward_eps": 1e-6}
    # One value per member: each member's optimizer settings are its own.
    rule = rules.create("bp", make_net("fc"), forward_lr=["1e-3", "3e-4"], forward_beta1=[0.8, 0.9])
    assert rule.forward_optimizer.lr.tolist() == [pytest.approx(1e-3), pytest.approx(3e-4)]
    assert rule.forward_optimizer.beta1.tolist() == [pytest.approx(0.8), pytest.approx(0.9)]
    assert rule.member_params(1) == {"forward_lr": 3e-4, "forward_beta1": 0.9, "forward_beta2": 0.999, "forward_eps": 1e-8}
