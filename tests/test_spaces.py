"""Search spaces: declared as data, true to the rules' settings, wide enough for the paper, overridable."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bioscale import rules, spaces
from bioscale.datasets import NAMES as DATASETS
from bioscale.errors import UsageError
from bioscale.nets import PRESET_NAMES, parse_spec, preset

ALL_RULES = rules.names()


def schedules_or_none(rule):
    return rules.get(rule).schedules or (None,)


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_registered_rule_has_a_space_of_real_settings(rule):
    settings = rules.settings(rule)
    for schedule in schedules_or_none(rule):
        declared = spaces.declared_space(rule, schedule)
        unknown = sorted(set(declared) - set(settings) - set(spaces.TRAINING))
        assert not unknown, f"the space of {rule} samples {unknown}, which are not settings of {rule}"
        assert spaces.tuning_space(rule, schedule) == declared
        assert {"activation", "batch_size", "forward_lr"} <= set(declared)


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_setting_is_sampled_or_deliberately_held(rule):
    sampled = set().union(*(spaces.tuning_space(rule, s) for s in schedules_or_none(rule)))
    forgotten = sorted(set(rules.settings(rule)) - sampled - set(spaces.held(rule)))
    assert not forgotten, f"settings of {rule} neither sampled nor listed as held in its spaces module: {forgotten}"


def test_target_propagation_spaces_follow_their_schedule():
    if "dtp" not in ALL_RULES:
        pytest.skip("target propagation is not registered")
    assert "alternation_period" in spaces.tuning_space("dtp", "alternating")
    assert "alternation_period" not in spaces.tuning_space("dtp", "parallel")
    assert "schedule" not in spaces.tuning_space("dtp", "alternating")  # fixed per study, never sampled
    assert "alpha" in spaces.tuning_space("dtp", "parallel") and "alpha" not in spaces.tuning_space("sdtp", "parallel")
    assert "aux_size" in spaces.tuning_space("ao-sdtp", "parallel")
    with pytest.raises(UsageError, match="no schedule 'sideways'"):
        spaces.tuning_space("dtp", "sideways")


def contains(dist, value):
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return dist.low <= value <= dist.high


def test_ranges_cover_table_4_and_the_best_values_of_table_5():
    c = spaces.CATALOGUE
    for prefix in ("forward", "inverse"):
        lr, beta2, eps = c[f"{prefix}_lr"], c[f"{prefix}_beta2"], c[f"{prefix}_eps"]
        assert lr.log and contains(lr, 1e-5) and contains(lr, 3e-4) and contains(lr, 9.6e-3)
        assert all(contains(beta2, b) for b in (0.95, 0.99, 0.999))
        assert all(contains(eps, e) for e in (1e-8, 1e-6, 1e-4, 1e-3))
    assert contains(c["alpha"], 0.01) and contains(c["alpha"], 0.2)
    assert contains(c["sigma"], 0.01) and contains(c["sigma"], 0.37)
    assert contains(c["aux_size"], 512)
    assert spaces.TRAINING["activation"].choices == ("tanh", "relu")


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", spaces.ARCH_FAMILIES)
def test_architecture_spaces_build_valid_specs_at_their_corners(family, dataset):
    space = spaces.architecture_space(family, dataset)
    assert "depth" in space and ("channels" in space) == (family != "fc")
    for pick in (min, max):
        point = {k: pick(d.choices) if isinstance(d, CategoricalDistribution) else pick(d.low, d.high) for k, d in space.items()}
        layers = parse_spec(spaces.build_arch(family, dataset, point))
        assert len([l for l in layers if l.kind == family or family == "fc"]) >= point["depth"]
        assert all(l.kind in (family, "fc") for l in layers)


def test_the_digits_presets_are_points_of_their_families():
    fc = {"depth": 3, "width": 128}
    assert spaces.build_arch("fc", "digits", fc) == "3*fc:128" == preset("digits", "fc")
    lc = {"depth": 2, "channels": 16, "kernel": 3, "width": 128}
    assert parse_spec(spaces.build_arch("lc", "digits", lc)) == parse_spec(preset("digits", "lc"))
    for name, value in lc.items():
        assert contains(spaces.architecture_space("lc", "digits")[name], value)
    with pytest.raises(UsageError, match="family"):
        spaces.architecture_space("3*fc:128", "digits")
    assert set(PRESET_NAMES) == set(spaces.ARCH_FAMILIES)


def test_overrides_fix_narrow_and_refuse():
    space = spaces.tuning_space("fa")
    defaults = spaces.rule_defaults("fa")
    left, fixed = spaces.apply_overrides(space, {"forward_lr": "1e-4:1e-3", "batch_size": "64", "forward_eps": "1e-8,1e-6",
                                                 "forward_beta1": "0.8", "activation": "relu"}, defaults)
    assert fixed == {"batch_size": 64, "forward_beta1": 0.8, "activation": "relu"}
    assert "batch_size" not in left and "activation" not in left
    assert left["forward_lr"] == FloatDistribution(1e-4, 1e-3, log=True)
    assert left["forward_eps"] == CategoricalDistribution((1e-8, 1e-6))
    # A value outside the search range but inside the setting's limits is a deliberate choice.
    assert spaces.apply_overrides(space, {"forward_lr": "0.5"}, defaults)[1] == {"forward_lr": 0.5}
    for bad, message in [({"nope": "1"}, "unknown parameter 'nope'"), ({"forward_beta2": "1.5"}, r"out of range.*\[0, 1\)"),
                         ({"forward_lr": "-1"}, "out of range"), ({"forward_lr": "1e-3:1e-4"}, "LOW < HIGH"),
                         ({"batch_size": "12.5"}, "whole number"), ({"activation": "sigmoid"}, "not one of"),
                         ({"forward_lr": "fast"}, "not a number"), ({"batch_size": "0"}, "out of range"),
                         ({"forward_eps": "1e-8,1e-8"}, "two or more")]:
        with pytest.raises(UsageError, match=message):
            spaces.apply_overrides(space, bad, defaults)


def test_overrides_of_architecture_and_integer_ranges():
    space = spaces.architecture_space("lc", "mnist")
    left, fixed = spaces.apply_overrides(space, {"depth": "2:3", "kernel": "5"}, {})
    assert left["depth"] == IntDistribution(2, 3) and fixed == {"kernel": 5}


def test_spaces_read_back_from_json():
    space = spaces.tuning_space("bp")
    assert spaces.space_from_json(spaces.space_to_json(space)) == space


def test_rules_after_the_paper_search_their_own_settings_only_under_the_extended_protocol():
    """The paper has no row for kp and wm: `paper` samples its forward Adam settings and holds theirs at the defaults."""
    from bioscale.spaces.protocols import protocol_space

    c = spaces.CATALOGUE
    assert contains(c["decay"], 1e-4) and contains(c["decay"], 1e-2)  # Akrout et al.'s SGD decay; its Adam equivalent
    assert contains(c["mirror_sigma"], 0.1) and contains(c["mirror_sigma"], 1.0) and contains(c["mirror_decay"], 0.5)
    own = {"kp": {"decay"}, "wm": {"mirror_lr", "mirror_sigma", "mirror_decay", "mirror_steps"},
           "sign-symmetry-frsf": set(), "sign-symmetry-brsf": set()}
    for rule, names in own.items():
        space = spaces.tuning_space(rule)
        assert names <= set(space)
        sampled, held = protocol_space("paper", space, spaces.rule_defaults(rule))
        assert {"forward_lr", "forward_beta2", "forward_eps"} <= set(sampled) and not names & set(sampled)
        assert held == {"activation": "tanh", "batch_size": 128, **{n: rules.settings(rule)[n] for n in names}}
        assert names <= set(protocol_space("extended", space, spaces.rule_defaults(rule))[0])
def test_ddtp_and_ldrl_ranges_contain_the_papers_values():
    ddtp, ldrl = spaces.tuning_space("ddtp", "parallel"), spaces.tuning_space("ldrl", "parallel")
    assert contains(ddtp["lam"], 0.061) and contains(ddtp["lam"], 0.1)  # Meulemans et al.'s MNIST λ; the reference run's
    assert all(contains(ddtp["sigma"], s) for s in (0.006, 0.0908, 0.1))
    assert all(contains(ddtp["forward_lr"], lr) for lr in (2.04e-5, 2.04e-5 / 0.061)) and contains(ddtp["inverse_lr"], 1.64e-4)
    assert contains(ldrl["beta"], 0.7) and all(contains(ldrl["sigma"], s) for s in (0.08, 0.1, 0.4))
    assert all(contains(ldrl["inverse_iterations"], k) for k in (1, 20, 55))


def test_the_paper_protocol_samples_the_new_rules_target_step_as_alpha():
    from bioscale.spaces.protocols import protocol_space

    for rule, step in (("ddtp", "lam"), ("ldrl", "beta")):
        sampled, held = protocol_space("paper", spaces.tuning_space(rule, "alternating"), spaces.rule_defaults(rule))
        assert step in sampled and "sigma" in sampled and held["activation"] == "tanh"
    sampled, held = protocol_space("paper", spaces.tuning_space("ldrl", "parallel"), spaces.rule_defaults("ldrl"))
    assert "inverse_iterations" not in sampled and held["inverse_iterations"] == 1
    extended, _ = protocol_space("extended", spaces.tuning_space("ldrl", "parallel"), spaces.rule_defaults("ldrl"))
    assert "inverse_iterations" in extended
