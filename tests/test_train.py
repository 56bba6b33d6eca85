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
from bioscale.train import fit, train


def digits_rule(name="bp", **settings):
    data = load("digits")
    torch.manual_seed(0)
    net = build_net("fc", "digits", data.input_shape, data.n_classes)
    return data, rules.create(name, net, **settings)


def test_fit_reports_every_epoch_to_the_callback_and_selects_by_validation():
    data, rule = digits_rule()
    seen = []
    result = fit(rule, data, epochs=3, progress=False, callback=seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3] and seen == result.history
    for r in seen:
        assert 0 <= r.train_error <= 1 and 0 <= r.val_error <= 1 and 0 <= r.test_error <= 1
    assert seen[-1].seconds >= seen[0].seconds > 0
    assert result.best.val_error == min(r.val_error for r in seen)


def test_nan_loss_raises_diverged():
    data, rule = digits_rule()
    poisoned = dataclasses.replace(data, train_x=data.train_x.clone())
    poisoned.train_x[::7] = float("nan")
    with pytest.raises(Diverged, match="loss became nan in epoch 1") as info:
        fit(rule, poisoned, epochs=3, progress=False)
    assert info.value.epoch == 1


def test_error_stuck_at_chance_raises_diverged():
    data, rule = digits_rule()
    g = torch.Generator().manual_seed(0)
    noise = dataclasses.replace(data, train_y=torch.randint(0, 10, data.train_y.shape, generator=g),
                                val_y=torch.randint(0, 10, data.val_y.shape, generator=g))
    with pytest.raises(Diverged, match="at chance") as info:
        fit(rule, noise, epochs=6, progress=False, chance_patience=2)
    assert info.value.epoch == 2
    fit(rule, data, epochs=3, progress=False, chance_patience=2)  # a run that learns is left alone


def test_the_chance_stop_counts_only_epochs_that_trained_the_forward_weights():
    data = load("digits")
    g = torch.Generator().manual_seed(0)
    noise = dataclasses.replace(data, train_y=torch.randint(0, 10, data.train_y.shape, generator=g),
                                val_y=torch.randint(0, 10, data.val_y.shape, generator=g))
    stopped = {}
    for schedule in ("parallel", "alternating"):
        torch.manual_seed(0)
        net = build_net("fc", "digits", data.input_shape, data.n_classes)
        rule = rules.create("dtp", net, schedule=schedule)
        with pytest.raises(Diverged, match="at chance") as info:
            fit(rule, noise, epochs=12, progress=False, chance_patience=3)
        stopped[schedule] = (info.value.epoch, rule.forward_steps)
    # Whole-epoch alternation trains the inverses first: forward epochs are 2, 4, 6, so it stops at
    # epoch 6, having trained its forward weights for as many epochs (steps) as parallel did by epoch 3.
    assert stopped["parallel"][0] == 3 and stopped["alternating"][0] == 6
    assert stopped["alternating"][1] == stopped["parallel"][1]


def test_callback_can_stop_a_run():
    data, rule = digits_rule()

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(rule, data, epochs=5, progress=False, callback=stop_after_two)


def test_train_builds_everything_from_names_and_repeats_exactly():
    a, _ = train(rule="dfa", arch="conv", epochs=2, seed=4, progress=False)
    b, _ = train(rule="dfa", arch="conv", epochs=2, seed=4, progress=False)
    c, _ = train(rule="dfa", arch="conv", epochs=2, seed=5, progress=False)
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
