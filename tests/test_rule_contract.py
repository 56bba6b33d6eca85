"""The contract every registered learning rule must keep (one suite over the whole registry)."""

import copy

import pytest
import torch

from bioscale import rules
from bioscale.data import load
from bioscale.errors import UsageError
from bioscale.nets import build_net
from bioscale.train import error_rate, fit

ALL_RULES = rules.names()


def test_the_registry_holds_the_core_rules():
    assert {"bp", "fa", "dfa"} <= set(ALL_RULES)
    with pytest.raises(UsageError, match="choose one of: .*bp"):
        rules.get("backprop-through-time")


def net_for(arch: str, seed: int = 0):
    data = load("digits")
    torch.manual_seed(seed)
    return data, build_net(arch, "digits", data.input_shape, data.n_classes)


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_learns_digits(name):
    data, net = net_for("fc")
    before = error_rate(net, data.val_x, data.val_y)
    result = fit(rules.create(name, net), data, epochs=8, progress=False, chance_patience=0)
    assert before > 0.7
    # "Learns" means clearly below chance (0.9): vanilla TP on digits needs more than 8 epochs to go far.
    assert result.best.val_error < 0.7, f"{name} did not learn: {result.best.val_error}"


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_is_seeded_reproducible(name):
    errors = []
    for _ in range(2):
        data, net = net_for("lc", seed=3)
        rule = rules.create(name, net)
        result = fit(rule, data, epochs=1, seed=5, progress=False, chance_patience=0)
        errors.append((result.history[-1].loss, [p.detach().clone() for p in net.parameters()]))
    assert errors[0][0] == errors[1][0]
    for a, b in zip(errors[0][1], errors[1][1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_rejects_unknown_settings_and_keeps_given_ones(name):
    _, net = net_for("fc")
    with pytest.raises(UsageError, match="no setting 'learning_rate'"):
        rules.create(name, net, learning_rate=0.1)
    defaults = rules.settings(name)
    assert "forward_lr" in defaults
    rule = rules.create(name, copy.deepcopy(net), forward_lr=2e-4)
    assert rule.get_params()["forward_lr"] == 2e-4
    assert set(rule.get_params()) == set(defaults)


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_trains_only_its_own_parameters_and_never_moves_buffers(name):
    data, net = net_for("conv")
    rule = rules.create(name, net)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    for i in range(3):
        rule.step(data.train_x[i * 32:(i + 1) * 32], data.train_y[i * 32:(i + 1) * 32])
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), f"{name} changed buffer {k}"
    moved = [k for k, v in net.named_parameters() if not torch.equal(v, params[k])]
    assert moved, f"{name} changed no parameter"
