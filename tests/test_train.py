"""fit(): per-epoch numbers, callbacks, divergence, and the train CLI."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from bioscale import rules
from bioscale.cli import main
from bioscale.data import load
from bioscale.errors import Diverged
from bioscale.nets import build_net
from bioscale.run_config import RunConfig
from bioscale.train import LOSS_GROWTH_LIMIT, finite_weights, fit, train


def digits_rule(name="bp", seeds=(0,), **settings):
    data = load("digits")
    net = build_net("fc", "digits", data.input_shape, data.n_classes, seeds=seeds)
    return data, rules.create(name, net, **settings)


def noisy_labels(data):
    g = torch.Generator().manual_seed(0)
    return dataclasses.replace(data, train_y=torch.randint(0, 10, data.train_y.shape, generator=g),
                               val_y=torch.randint(0, 10, data.val_y.shape, generator=g))


def test_fit_reports_every_epoch_to_the_callback_and_selects_by_validation():
    data, rule = digits_rule()
    seen = []
    result, = fit(rule, data, RunConfig(rule.name, epochs=3), progress=False, callback=lambda member, record: seen.append((member, record)))
    assert [m for m, _ in seen] == [0, 0, 0]
    seen = [r for _, r in seen]
    assert [r.epoch for r in seen] == [1, 2, 3] and seen == result.history
    assert result.diverged is None and result.pruned_at is None
    for r in seen:
        assert 0 <= r.train_error <= 1 and 0 <= r.val_error <= 1 and 0 <= r.test_error <= 1
    assert seen[-1].seconds >= seen[0].seconds > 0
    assert result.best.val_error == min(r.val_error for r in seen)


def test_nan_loss_stops_the_member_as_diverged():
    data, rule = digits_rule()
    poisoned = dataclasses.replace(data, train_x=data.train_x.clone())
    poisoned.train_x[::7] = float("nan")
    result, = fit(rule, poisoned, RunConfig(rule.name, epochs=3), progress=False)
    assert isinstance(result.diverged, Diverged) and result.diverged.epoch == 1
    assert "loss became nan in epoch 1" in str(result.diverged)
    assert result.history == [] and result.pruned_at is None


def test_train_raises_diverged_on_a_nan_loss(monkeypatch):
    import bioscale.train as train_module

    real = train_module.load

    def poisoned(*args, **kwargs):
        data = real(*args, **kwargs)
        x = data.train_x.clone()
        x[::7] = float("nan")
        return dataclasses.replace(data, train_x=x)

    monkeypatch.setattr(train_module, "load", poisoned)
    with pytest.raises(Diverged, match="loss became nan in epoch 1") as info:
        train(RunConfig(rule="bp", epochs=3), progress=False)
    assert info.value.epoch == 1


def small_in_dtype(data, dtype, n=256):
    """The first `n` examples of each split, inputs in `dtype`."""
    return dataclasses.replace(data, train_x=data.train_x[:n].to(dtype), train_y=data.train_y[:n],
                               val_x=data.val_x[:n].to(dtype), val_y=data.val_y[:n],
                               test_x=data.test_x[:n].to(dtype), test_y=data.test_y[:n])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_runaway_member_is_diverged_in_every_dtype_and_a_healthy_one_trains_as_alone(dtype):
    """forward_lr = 1e38: NaN in float32, a finite loss near 1e39 in float64; diverged either way."""
    data = small_in_dtype(load("digits"), dtype)

    def run(seeds, lrs):
        net = build_net("fc", "digits", data.input_shape, data.n_classes, seeds=seeds).to(dtype)
        rule = rules.create("bp", net, forward_lr=lrs)
        return rule, fit(rule, data, RunConfig(rule.name, epochs=3, batch_size=64, data_seed=5, chance_patience=0), progress=False)

    rule, (healthy, runaway) = run((0, 1), [1e-3, 1e38])
    assert runaway.diverged is not None and runaway.diverged.epoch == 1 and runaway.history == []
    if dtype == torch.float64:
        assert f"over {LOSS_GROWTH_LIMIT:g} times its start" in runaway.diverged.reason
    assert healthy.diverged is None and len(healthy.history) == 3
    alone, (solo,) = run((0,), [1e-3])
    numbers = lambda history: [(r.epoch, r.loss, r.train_error, r.val_error, r.test_error) for r in history]
    assert numbers(healthy.history) == numbers(solo.history)
    for (key, p), q in zip(rule.net.named_parameters(), alone.net.parameters(), strict=True):
        assert torch.equal(p[0], q[0]), key


def test_finite_weights_looks_at_every_member_of_the_net_and_the_rule_state():
    data = load("digits")
    net = build_net("fc", "digits", data.input_shape, data.n_classes, seeds=(0, 1, 2))
    rule = rules.create("dtp", net)
    assert finite_weights(rule) == [True, True, True]
    with torch.no_grad():
        rule.state.inverses[0].weight[1, 0, 0] = float("inf")
        rule.net.output.bias[2, 3] = float("nan")
    assert finite_weights(rule) == [True, False, False]


def test_a_member_whose_weights_are_not_finite_is_stopped_as_diverged(monkeypatch):
    import bioscale.train as train_module

    data, rule = digits_rule(seeds=(0, 1))
    monkeypatch.setattr(train_module, "finite_weights", lambda rule: [True] * (rule.members - 1) + [False])
    first, second = fit(rule, data, RunConfig(rule.name, epochs=2), progress=False)
    assert second.diverged is not None and "weights became NaN or infinite in epoch 1" in second.diverged.reason
    assert second.history == [] and first.diverged is None and len(first.history) == 2


def test_error_stuck_at_chance_stops_the_member_as_diverged():
    data, rule = digits_rule()
    result, = fit(rule, noisy_labels(data), RunConfig(rule.name, epochs=6, chance_patience=2), progress=False)
    assert result.diverged is not None and "at chance" in str(result.diverged)
    assert result.diverged.epoch == 2 and len(result.history) == 2
    _, rule = digits_rule()
    result, = fit(rule, data, RunConfig(rule.name, epochs=3, chance_patience=2), progress=False)  # a run that learns is left alone
    assert result.diverged is None and len(result.history) == 3


def test_the_chance_stop_counts_only_epochs_that_trained_the_forward_weights():
    data = load("digits")
    noise = noisy_labels(data)
    stopped = {}
    for schedule in ("parallel", "alternating"):
        net = build_net("fc", "digits", data.input_shape, data.n_classes)
        rule = rules.create("dtp", net, schedule=schedule)
        result, = fit(rule, noise, RunConfig(rule.name, epochs=12, chance_patience=3), progress=False)
        assert result.diverged is not None and "at chance" in str(result.diverged)
        stopped[schedule] = (result.diverged.epoch, rule.forward_steps)
    # Whole-epoch alternation trains the inverses first: forward epochs are 2, 4, 6, so it stops at
    # epoch 6, having trained its forward weights for as many epochs (steps) as parallel did by epoch 3.
    assert stopped["parallel"][0] == 3 and stopped["alternating"][0] == 6
    assert stopped["alternating"][1] == stopped["parallel"][1]


def test_callback_can_stop_a_run():
    data, rule = digits_rule()

    class Stop(Exception):
        pass

    def stop_after_two(member, record):
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):  # an exception still ends the whole fit
        fit(rule, data, RunConfig(rule.name, epochs=5), progress=False, callback=stop_after_two)


def test_callback_returning_false_prunes_that_member_only():
    data, rule = digits_rule(seeds=(0, 1))
    frozen = {}

    def prune_member_1_after_two(member, record):
        if member == 1 and record.epoch == 2:
            frozen.update({k: p[1].detach().clone() for k, p in rule.net.named_parameters()})
            return False
        return None

    results = fit(rule, data, RunConfig(rule.name, epochs=4), progress=False, callback=prune_member_1_after_two)
    assert results[1].pruned_at == 2 and [r.epoch for r in results[1].history] == [1, 2]
    assert results[1].diverged is None
    assert results[0].pruned_at is None and [r.epoch for r in results[0].history] == [1, 2, 3, 4]
    for k, p in rule.net.named_parameters():
        assert torch.equal(p[1], frozen[k]), k  # the pruned member's weights stay where they were


def test_fit_is_a_short_loop():
    """The checkpoint state lives in bioscale.resume, the per-member stop decision in stop_member: fit stays readable."""
    import inspect

    assert len(inspect.getsource(fit).splitlines()) <= 60


def test_train_builds_everything_from_names_and_repeats_exactly():
    a, _ = train(RunConfig(rule="dfa", arch="conv", epochs=2, seeds=(4,)), progress=False)
    b, _ = train(RunConfig(rule="dfa", arch="conv", epochs=2, seeds=(4,)), progress=False)
    c, _ = train(RunConfig(rule="dfa", arch="conv", epochs=2, seeds=(5,)), progress=False)
    assert a.history == [dataclasses.replace(r, seconds=x.seconds) for r, x in zip(b.history, a.history)]
    assert a.history[-1].loss != c.history[-1].loss


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa"])
@pytest.mark.parametrize("arch", ["fc", "lc", "conv"])
def test_cli_train_json_learns_on_digits(rule, arch, capsys):
    assert main(["train", "--rule", rule, "--arch", arch, "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"rule", "dataset", "arch", "activation", "epochs", "train_error", "val_error", "test_error", "seconds"} <= set(out)
    assert out["rule"] == rule and out["dataset"] == "digits" and out["activation"] == "tanh"
    assert out["test_error"] < 0.35, out["test_error"]


@pytest.mark.parametrize("argv,message", [
    (["--rule", "bpp"], "unknown rule 'bpp'; choose one of: "),
    (["--rule", "bp", "--dataset", "svhn"], "unknown dataset 'svhn'; choose one of: digits"),
    (["--rule", "bp", "--arch", "resnet"], "bad layer 'resnet'"),
    (["--rule", "bp", "--set", "alpha=0.1"], "rule 'bp' has no setting 'alpha'; its settings are: forward_lr"),
    (["--rule", "bp", "--set", "forward_lr"], "malformed --set 'forward_lr'"),
    (["--rule", "bp", "--set", "forward_lr=fast"], "forward_lr='fast' is not a number"),
    (["--rule", "bp", "--activation", "sigmoid"], "unknown activation 'sigmoid'"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(argv, message):
    proc = subprocess.run([sys.executable, "-m", "bioscale.cli", "train", *argv, "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
