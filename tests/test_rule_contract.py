"""The contract every registered learning rule must keep (one suite over the whole registry)."""

import copy
import pkgutil
import sys

import pytest
import torch

from bioscale import rules
from bioscale.rules import base
from bioscale.rules.feedback_alignment import FeedbackAlignment
from bioscale.data import load
from bioscale.errors import UsageError
from bioscale.nets import build_net
from bioscale.run_config import RunConfig
from bioscale.train import error_rates, fit

ALL_RULES = rules.names()


def test_the_registry_holds_the_core_rules():
    assert {"bp", "fa", "dfa", "sign-symmetry"} <= set(ALL_RULES)
    with pytest.raises(UsageError, match="choose one of: .*bp"):
        rules.get("backprop-through-time")


def test_the_registry_imports_every_rule_module_without_a_list():
    public = [m.name for m in pkgutil.iter_modules(rules.__path__) if not m.name.startswith("_")]
    assert {"backprop", "feedback_alignment", "target_propagation"} <= set(public)
    assert all(f"bioscale.rules.{name}" in sys.modules for name in public)
    assert {rules.get(name).__module__ for name in ALL_RULES} <= {f"bioscale.rules.{name}" for name in public}


def test_a_rule_module_that_fails_to_import_is_an_error_not_a_missing_rule(monkeypatch):
    real = pkgutil.iter_modules
    broken = pkgutil.ModuleInfo(None, "no_such_rule_module", False)
    monkeypatch.setattr(pkgutil, "iter_modules", lambda path: [*real(path), broken])
    monkeypatch.setattr(base, "_loaded", False)
    with pytest.raises(ImportError, match="no_such_rule_module"):
        rules.names()


def test_a_second_rule_of_the_same_name_is_refused():
    with pytest.raises(TypeError, match="two rules named 'fa'"):
        type("AnotherFA", (FeedbackAlignment,), {"name": "fa", "__module__": __name__})


def test_hooks_run_after_the_whole_constructor_so_subclasses_set_settings_after_super():
    class Scaled(FeedbackAlignment):  # no name: a base, never registered
        def __init__(self, net, *, scale: float = 2.0, **settings) -> None:
            super().__init__(net, **settings)
            self.scale = scale

        def make_state(self, generators):
            state = super().make_state(generators)
            for matrix in state:
                matrix.mul_(self.scale)
            return state

    _, net = net_for("fc")
    plain = rules.create("fa", copy.deepcopy(net))
    scaled = Scaled(copy.deepcopy(net), scale=3.0)
    assert Scaled not in set(map(rules.get, rules.names()))
    for a, b in zip(plain.state, scaled.state, strict=True):
        torch.testing.assert_close(b, 3.0 * a)
    assert [id(p) for p in scaled.forward_optimizer.params] == [id(p) for p in scaled.net.parameters()]


def net_for(arch: str, seed: int = 0):
    data = load("digits")
    return data, build_net(arch, "digits", data.input_shape, data.n_classes, seeds=(seed,))


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_learns_digits(name):
    data, net = net_for("fc")
    before, = error_rates(net, data.val_x, data.val_y)
    result, = fit(rules.create(name, net), data, RunConfig(name, epochs=8, chance_patience=0), progress=False)
    assert before > 0.7 and result.diverged is None and len(result.history) == 8
    # "Learns" means clearly below chance (0.9): vanilla TP on digits needs more than 8 epochs to go far.
    assert result.best.val_error < 0.7, f"{name} did not learn: {result.best.val_error}"


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_is_seeded_reproducible(name):
    errors = []
    for _ in range(2):
        data, net = net_for("lc", seed=3)
        rule = rules.create(name, net)
        result, = fit(rule, data, RunConfig(name, epochs=1, data_seed=5, chance_patience=0), progress=False)
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


def trained_by_the_rule(rule) -> set[int]:
    return {id(p) for opt in rule.optimizers().values() for p in opt.tensors()}


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_trains_only_its_own_parameters_and_never_moves_buffers(name):
    """Net and rule state: buffers never move, nor does any parameter no optimizer of the rule holds."""
    data, net = net_for("conv")
    net_keys = set(net.state_dict())
    rule = rules.create(name, net)
    assert set(net.state_dict()) == net_keys, f"{name} put its state on the net"
    trained = trained_by_the_rule(rule)
    assert {id(p) for p in net.parameters()} <= trained
    tensors = {}
    for owner, module in (("net", net), ("state", rule.state)):
        tensors.update({(owner, "buffer", k): v for k, v in module.named_buffers()})
        tensors.update({(owner, "parameter", k): v for k, v in module.named_parameters()})
    before = {key: v.detach().clone() for key, v in tensors.items()}
    for i in range(3):
        rule.step(data.train_x[i * 32:(i + 1) * 32], data.train_y[i * 32:(i + 1) * 32])
    moved = {key for key, v in tensors.items() if not torch.equal(v, before[key])}
    fixed = {key for key, v in tensors.items() if key[1] == "buffer" or id(v) not in trained}
    assert not moved & fixed, f"{name} changed fixed tensors {sorted(moved & fixed)}"
    assert any(key[0] == "net" for key in moved), f"{name} changed no parameter"
    assert all(key in moved for key, v in tensors.items() if key[0] == "state" and id(v) in trained), \
        f"{name} never trained some of its own parameters"


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_state_dict_restores_a_rule_exactly(name):
    data, net = net_for("fc")
    x, y = data.train_x[:32], data.train_y[:32]
    # Step-wise alternation: the step after a restore must know where the schedule stands.
    settings = {"schedule": "alternating", "alternation_period": 1} if rules.get(name).schedules else {}
    rule = rules.create(name, net, **settings)
    rule.step(x, y)
    saved = copy.deepcopy(rule.state_dict())
    _, other_net = net_for("fc", seed=9)
    other = rules.create(name, other_net, **settings)
    other.load_state_dict(saved)
    assert other.forward_steps == rule.forward_steps
    for r in (rule, other):  # the noise streams are restored too: no global seed makes the steps alike
        r.step(x, y)
    for a, b in zip(rule.net.state_dict().values(), other.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL_RULES)
def test_rule_holds_each_declared_per_member_setting_as_a_member_tensor_and_shares_the_rest(name):
    _, net = net_for("fc", seed=0)
    declared = rules.get(name).per_member
    assert set(declared) <= set(rules.settings(name)) and "forward_lr" in declared
    two = build_net("fc", "digits", net.input_shape, net.n_classes, seeds=(0, 1))
    rule = rules.create(name, two, **{key: [rules.settings(name)[key]] * 2 for key in declared})
    assert {key: tuple(t.shape) for key, t in rule.hyper.named_buffers()} == {key: (2,) for key in declared}
    shared = next((key for key, value in rules.settings(name).items() if key not in declared), None)
    if shared is not None:
        with pytest.raises(UsageError, match=f"{shared} shapes the computation and is shared"):
            rules.create(name, copy.deepcopy(two), **{shared: [rules.settings(name)[shared]] * 2})


def test_per_member_may_name_only_settings_the_constructor_takes():
    with pytest.raises(TypeError, match=r"per_member names \['forward_momentum'\]"):
        class Momentum(rules.GradientRule):  # noqa: F841 - defining it is the test
            per_member = (*rules.GradientRule.per_member, "forward_momentum")

            def task_loss(self, x, y):
                return rules.cross_entropy(self.net(x), y)


def test_rules_label_names_a_rule_under_its_schedule():
    assert rules.label("dtp", "alternating") == "dtp-alternating" and rules.label("fa") == "fa"
    assert rules.get("fa").schedules == () and "parallel" in rules.get("dtp").schedules


@pytest.mark.parametrize("name", ALL_RULES)
def test_a_checkpoint_holds_the_counters_the_noise_streams_and_every_optimizer_moment(name):
    data, net = net_for("fc")
    rule = rules.create(name, net)
    rule.step(data.train_x[:32], data.train_y[:32])
    saved = rule.state_dict()
    assert saved["_extra_state"]["counters"] == {c: getattr(rule, c) for c in rule.counters}
    assert len(saved["_extra_state"]["noise"]) == rule.members
    for key, optimizer in rule.optimizers().items():
        assert saved[f"{key}_optimizer._extra_state"] == {"steps": optimizer.steps} and optimizer.steps == 1
        assert {f"{key}_optimizer.exp_avg_{i}" for i in range(len(optimizer.params))} <= saved.keys()
    assert {f"net.{k}" for k in net.state_dict()} | {f"state.{k}" for k in rule.state.state_dict()} <= saved.keys()
