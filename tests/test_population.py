"""Populations: K configurations of one rule trained as one batched model, each member exactly as it would train alone.

The acceptance criteria of the member axis (bioscale.population):

- equivalence: every member of a population ends where the same configuration trained alone (a
  population of one, same seed, same minibatch order) ends, for every rule, schedule and layer family;
- isolation: a member that diverges, or that the callback prunes, changes no other member by a bit,
  and a pruned member keeps its weights from then on;
- the member-stacked Adam is torch's Adam, one member at a time;
- structural settings are shared (a list of them is a UsageError), the settings a rule declares
  per member (`Rule.per_member`) take one value or exactly one per member;
- memory: a population holds exactly K times one member's tensors.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from bioscale import rules
from bioscale.data import Data, load
from bioscale.errors import UsageError
from bioscale.nets import Net
from bioscale.optim import Adam
from bioscale.run_config import RunConfig
from bioscale.train import EpochResult, FitResult, build, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCHS = {
    "fc": "2*fc:12",
    "lc": "lc:3:4:2,lc:3:5:1,fc:10",
    "conv": "conv:3:4:2,conv:3:5:1,fc:10",
}
SEEDS = (11, 22, 33, 44)  # one member per seed: K = 4
FIT_SEED = 7  # the minibatch order, shared by every member and every run
EPOCHS, BATCH = 3, 64  # 240 training examples: 4 steps an epoch, the last one short
FIT = RunConfig(rule="bp", epochs=EPOCHS, batch_size=BATCH, data_seed=FIT_SEED, chance_patience=0)  # what fit reads
# Every per-member setting of every rule, one value per member. A rule with a per-member setting
# missing here fails `member_settings`: add the setting, so that it too is shown to stay per member.
VARY = {
    "forward_lr": [1e-3, 3e-3, 5e-4, 2e-3],
    "forward_beta1": [0.9, 0.8, 0.95, 0.85],
    "forward_beta2": [0.999, 0.99, 0.95, 0.9],
    "forward_eps": [1e-8, 1e-6, 1e-4, 1e-3],
    "inverse_lr": [1e-3, 2e-3, 5e-4, 4e-3],
    "inverse_beta1": [0.9, 0.85, 0.8, 0.95],
    "inverse_beta2": [0.999, 0.9, 0.99, 0.95],
    "inverse_eps": [1e-8, 1e-3, 1e-6, 1e-4],
    "sigma": [0.1, 0.2, 0.05, 0.3],
    "alpha": [0.1, 0.05, 0.2, 0.15],
    "decay": [0.01, 0.5, 0.0, 2.0],
    "mirror_lr": [1e-3, 3e-3, 5e-4, 2e-3],
    "mirror_sigma": [1.0, 0.5, 0.2, 1.5],
    "mirror_decay": [0.5, 0.1, 0.02, 1.0],
    "lam": [0.1, 0.05, 0.2, 0.3],
    "beta": [0.7, 0.3, 0.5, 1.0],
    "gamma": [0.1, 0.3, 0.05, 0.5],
    "init_scale": [0.3, 0.5, 0.2, 1.0],
}
# Structural settings (shared) where a rule has them: AO-SDTP's auxiliary features, small for speed;
# L-DRL's feedback iterations above 1, so that its inner loop is shown to keep members apart too.
SMALL = {"aux_size": 16, "inverse_iterations": 2}


def small(name: str) -> dict:
    """The entries of SMALL that rule `name` has."""
    return {key: value for key, value in SMALL.items() if key in rules.settings(name)}
DIVERGING_LR = 1e38  # Adam steps of this size overflow float32 within the first epoch: NaN loss


@functools.cache
def small_digits(dtype: torch.dtype = torch.float32) -> Data:
    """digits cut to 240 / 60 / 60 examples, inputs in `dtype`."""
    data = load("digits")
    cut = {"train": 240, "val": 60, "test": 60}
    return dataclasses.replace(
        data, **{f"{split}_x": getattr(data, f"{split}_x")[:n].to(dtype) for split, n in cut.items()},
        **{f"{split}_y": getattr(data, f"{split}_y")[:n] for split, n in cut.items()})


def schedule_cases() -> list[tuple[str, dict]]:
    """(rule, structural settings) for every rule, and both schedules of the rules that have them."""
    cases = []
    for name in rules.names():
        extra = small(name)
        if not rules.get(name).schedules:
            cases.append((name, "", dict(extra)))
            continue
        assert set(rules.get(name).schedules) == {"parallel", "alternating"}
        cases.append((name, "parallel", {"schedule": "parallel", **extra}))
        cases.append((name, "alternating", {"schedule": "alternating", "alternation_period": 2, **extra}))
    return cases


def member_settings(name: str) -> dict[str, list[float]]:
    """One value per member for every per-member setting of rule `name`."""
    declared = set(rules.get(name).per_member)
    missing = declared - set(VARY)
    assert not missing, f"rule {name!r} has per-member settings this test does not vary: {sorted(missing)}"
    return {key: VARY[key] for key in sorted(declared)}


def make(name: str, arch: str, seeds, dtype=torch.float32, **settings) -> rules.Rule:
    data = small_digits(dtype)
    net = Net(ARCHS[arch], data.input_shape, data.n_classes, seeds=seeds).to(dtype)
    return rules.create(name, net, **settings)


def member_tensors(rule: rules.Rule) -> dict[str, torch.Tensor]:
    """Every tensor of the rule that has a member axis: the net's, the rule state's, the settings' and the optimizers'."""
    out = {}
    for prefix, module in (("net", rule.net), ("state", rule.state), ("hyper", rule.hyper),
                           *((f"{name}_optimizer", opt) for name, opt in rule.optimizers().items())):
        for key, tensor in module.state_dict().items():
            if isinstance(tensor, torch.Tensor):
                out[f"{prefix}.{key}"] = tensor
    return out


def trained_tensors(rule: rules.Rule) -> dict[str, torch.Tensor]:
    """What training may change in a member: the net's parameters and the rule's state (inverses, fixed matrices)."""
    return {k: v for k, v in member_tensors(rule).items() if k.startswith(("net.", "state."))}


def epochs_of(result: FitResult) -> list[tuple]:
    """A member's history without the wall-clock time."""
    return [(r.epoch, r.loss, r.train_error, r.val_error, r.test_error) for r in result.history]


def assert_others_untouched(skip: int, results: list[FitResult], base_results: list[FitResult],
                            tensors: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> list[int]:
    """Every member but `skip` has the baseline's history and tensors, bit for bit; returns those members."""
    others = [k for k in range(len(SEEDS)) if k != skip]
    for k in others:
        assert epochs_of(results[k]) == epochs_of(base_results[k]), k
        for key, tensor in base.items():
            assert torch.equal(tensors[key][k], tensor[k]), (k, key)
    return others


# -- 1. a member trains exactly as it would alone ---------------------------------------------------

EQUIVALENCE = [pytest.param(name, schedule, extra, arch, id="-".join(filter(None, (name, schedule, arch))))
               for name, schedule, extra in schedule_cases() for arch in ARCHS]


@pytest.mark.parametrize("name, schedule, extra, arch", EQUIVALENCE)
def test_every_member_of_a_population_trains_as_it_would_alone(name, schedule, extra, arch):
    data = small_digits(torch.float64)
    varied = member_settings(name)
    population = make(name, arch, SEEDS, torch.float64, **varied, **extra)
    results = fit(population, data, FIT, progress=False)
    assert len(results) == len(SEEDS)
    together = member_tensors(population)
    assert all(t.shape[0] == len(SEEDS) for t in together.values())
    finals = []
    for k, seed in enumerate(SEEDS):
        alone = make(name, arch, [seed], torch.float64, **{key: values[k] for key, values in varied.items()}, **extra)
        result, = fit(alone, data, FIT, progress=False)
        assert results[k].diverged is None and results[k].pruned_at is None and result.diverged is None
        assert len(results[k].history) == EPOCHS
        # the per-epoch numbers: the same errors, the same mean loss
        for mine, its in zip(epochs_of(results[k]), epochs_of(result), strict=True):
            assert mine[0] == its[0] and mine[2:] == its[2:], (k, mine, its)
            assert abs(mine[1] - its[1]) <= 1e-9, (k, mine, its)
        # every tensor: weights, the rule's state, the settings, the optimizers' moments
        single = member_tensors(alone)
        assert single.keys() == together.keys()
        for key, tensor in single.items():
            assert tensor.shape[0] == 1
            mine, its = together[key][k], tensor[0]
            if mine.dtype == torch.bool:
                assert torch.equal(mine, its), (k, key)
            else:
                assert torch.allclose(mine, its, rtol=0, atol=1e-9), (k, key, (mine - its).abs().max().item())
        # the counters and each member's noise stream
        for counter in population.counters:
            assert getattr(population, counter) == getattr(alone, counter), counter
        assert torch.equal(population.noise_generators[k].get_state(), alone.noise_generators[0].get_state())
        finals.append(torch.cat([t[0].flatten() for t in trained_tensors(alone).values()]))
    # the members really are different configurations: no two end alike
    for i in range(len(finals)):
        for j in range(i):
            assert not torch.allclose(finals[i], finals[j], rtol=0, atol=1e-6), (i, j)


# -- 2. a member that diverges touches no other member -------------------------------------------------

DIVERGENCE = [pytest.param(name, setting, arch, id=f"{name}-{setting}-{arch}")
              for name in rules.names() for arch in ("fc", "conv") for setting in ("forward_lr", "inverse_lr")
              if setting in rules.settings(name) and (setting == "forward_lr" or name in ("tp", "dtp"))]
DIVERGENCE += [pytest.param(name, "forward_lr", "lc", id=f"{name}-forward_lr-lc") for name in ("bp", "dtp")]


@pytest.mark.parametrize("name, setting, arch", DIVERGENCE)
def test_a_diverging_member_changes_no_other_member_by_a_bit(name, setting, arch):
    data, bad = small_digits(), 1
    sane = [1e-3, 2e-3, 5e-4, 3e-3]
    extra = small(name)
    runs = []
    for values in (sane, [DIVERGING_LR if k == bad else v for k, v in enumerate(sane)]):
        rule = make(name, arch, SEEDS, **{setting: values}, **extra)
        results = fit(rule, data, FIT, progress=False)
        runs.append((rule, results))
    (calm, calm_results), (wild, wild_results) = runs
    assert calm_results[bad].diverged is None
    assert wild_results[bad].diverged is not None, "the member with the huge learning rate should have diverged"
    assert "loss became" in wild_results[bad].diverged.reason and wild_results[bad].history == []
    calm_tensors, wild_tensors = trained_tensors(calm), trained_tensors(wild)
    assert any(not torch.isfinite(t[bad]).all() for t in wild_tensors.values())
    for k in assert_others_untouched(bad, wild_results, calm_results, wild_tensors, calm_tensors):
        assert wild_results[k].diverged is None
        for key, opt in calm.optimizers().items():
            for buffer, tensor in opt.named_buffers():
                if buffer.startswith("exp_avg"):
                    assert torch.equal(wild.optimizers()[key].get_buffer(buffer)[k], tensor[k]), (k, key, buffer)


# -- 3. a pruned member stops where it is, and the others go on untouched ---------------------------------

PRUNING = [pytest.param(name, extra, arch, id="-".join(filter(None, (name, schedule, arch))))
           for name, schedule, extra in schedule_cases() for arch in ("fc", "conv")
           if schedule != "alternating" or name == "dtp"]


@pytest.mark.parametrize("name, extra, arch", PRUNING)
def test_a_pruned_member_keeps_its_weights_and_the_others_are_untouched(name, extra, arch):
    data, pruned = small_digits(), 2
    lrs = {"forward_lr": [1e-3, 2e-3, 5e-3, 3e-3]}
    if "inverse_lr" in rules.settings(name):
        lrs["inverse_lr"] = [2e-3, 1e-3, 4e-3, 5e-4]
    seen: list[tuple[int, int]] = []

    def keep_all(member: int, record: EpochResult) -> bool:
        return True

    baseline = make(name, arch, SEEDS, **lrs, **extra)
    base_results = fit(baseline, data, FIT, progress=False, callback=keep_all)

    rule = make(name, arch, SEEDS, **lrs, **extra)
    at_pruning: dict[str, torch.Tensor] = {}

    def prune(member: int, record: EpochResult) -> bool | None:
        seen.append((member, record.epoch))
        if member == pruned and record.epoch == 1:
            at_pruning.update({key: t[member].clone() for key, t in trained_tensors(rule).items()})
            return False
        return None

    results = fit(rule, data, FIT, progress=False, callback=prune)
    assert all(r.pruned_at is None for r in base_results)
    assert results[pruned].pruned_at == 1 and results[pruned].diverged is None
    assert len(results[pruned].history) == 1 and epochs_of(results[pruned]) == epochs_of(base_results[pruned])[:1]
    # the callback never hears of a pruned member again
    assert seen == [(m, e) for e in range(1, EPOCHS + 1) for m in range(len(SEEDS)) if m != pruned or e == 1]
    final, base = trained_tensors(rule), trained_tensors(baseline)
    # frozen from epoch 1 on, where it would have moved on had it run
    assert at_pruning.keys() == final.keys()
    for key, tensor in final.items():
        assert torch.equal(tensor[pruned], at_pruning[key]), key
    moved = [key for key in final if not torch.equal(base[key][pruned], at_pruning[key])]
    assert any(key.startswith("net.") for key in moved), "the unpruned run should have moved the member on"
    if "inverse_lr" in lrs:
        assert any(key.startswith("state.") for key in moved), "the unpruned run should have moved its inverses on"
    for k in assert_others_untouched(pruned, results, base_results, final, base):
        assert results[k].pruned_at is None


@pytest.mark.parametrize("name, extra, arch", PRUNING)
def test_dropping_a_pruned_member_leaves_the_others_as_they_were(name, extra, arch):
    """With drop_stopped, the pruned member leaves every tensor; the rest end as in a run that kept it (float64)."""
    data, pruned = small_digits(torch.float64), 2
    lrs = {"forward_lr": [1e-3, 2e-3, 5e-3, 3e-3]}
    baseline = make(name, arch, SEEDS, torch.float64, **lrs, **extra)
    base_results = fit(baseline, data, FIT, progress=False)
    rule = make(name, arch, SEEDS, torch.float64, **lrs, **extra)
    results = fit(rule, data, FIT, progress=False,
                  callback=lambda member, record: not (member == pruned and record.epoch == 1), drop_stopped=True)
    kept = [k for k in range(len(SEEDS)) if k != pruned]
    assert rule.members == len(kept) and rule.net.seeds == tuple(SEEDS[k] for k in kept)
    assert results[pruned].pruned_at == 1 and len(results[pruned].history) == 1
    final, base = member_tensors(rule), member_tensors(baseline)
    assert final.keys() == base.keys()
    for key, tensor in final.items():
        assert len(tensor) == len(kept), key  # every tensor lost the pruned member's slice
        torch.testing.assert_close(tensor, base[key][kept], rtol=0, atol=1e-9, msg=key)
    for position, k in enumerate(kept):
        assert results[k].pruned_at is None
        for mine, theirs in zip(epochs_of(results[k]), epochs_of(base_results[k]), strict=True):
            assert mine[1] == pytest.approx(theirs[1], abs=1e-9)  # the loss
            assert mine[:1] + mine[2:] == theirs[:1] + theirs[2:]  # epoch and every error


def test_keep_selects_members_from_every_tensor_setting_and_noise_stream_and_keeps_the_parameters():
    rule = make("dtp", "fc", SEEDS, forward_lr=[1e-3, 2e-3, 3e-3, 4e-3], sigma=[0.1, 0.2, 0.3, 0.4])
    data = small_digits()
    rule.step(data.train_x[:16], data.train_y[:16])  # moments, counters and noise streams have moved
    before = {k: v.clone() for k, v in rule.state_dict().items() if isinstance(v, torch.Tensor)}
    noise = [g.get_state() for g in rule.noise_generators]
    parameters = [id(p) for p in rule.parameters()]
    rule.keep([3, 1])
    after = {k: v for k, v in rule.state_dict().items() if isinstance(v, torch.Tensor)}
    assert after.keys() == before.keys()
    for key, tensor in after.items():
        assert torch.equal(tensor, before[key][[3, 1]]), key
    assert [id(p) for p in rule.parameters()] == parameters  # the optimizers still hold them
    assert rule.get_params()["forward_lr"] == [4e-3, 2e-3] and rule.member_params(1)["sigma"] == 0.2
    assert rule.net.seeds == (SEEDS[3], SEEDS[1])
    assert all(torch.equal(g.get_state(), noise[k]) for g, k in zip(rule.noise_generators, (3, 1), strict=True))
    assert rule.step(data.train_x[:16], data.train_y[:16]).shape == (2,)


# -- 4. the member-stacked Adam is torch's Adam, member by member -----------------------------------------

def test_member_adam_equals_torch_adam_run_separately_per_member():
    g = torch.Generator().manual_seed(0)
    members, steps, stop_after, stopped = 3, 6, 4, 1
    hyper = {"lr": [1e-3, 1e-2, 3e-4], "beta1": [0.9, 0.8, 0.95], "beta2": [0.999, 0.99, 0.9],
             "eps": [1e-8, 1e-6, 1e-3]}
    shapes = [(members, 4, 5), (members, 7), (members, 2, 3, 3)]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g, dtype=torch.float64)) for s in shapes]
    start = [p.detach().clone() for p in params]
    singles = [[torch.nn.Parameter(p[k].detach().clone()) for p in params] for k in range(members)]
    adam = Adam(params, **{key: torch.tensor(v, dtype=torch.float64) for key, v in hyper.items()})
    references = [torch.optim.Adam(singles[k], lr=hyper["lr"][k], betas=(hyper["beta1"][k], hyper["beta2"][k]),
                                   eps=hyper["eps"][k], foreach=False) for k in range(members)]
    frozen = None
    for step in range(steps):
        if step == stop_after:
            adam.stop([stopped])
            frozen = [p[stopped].detach().clone() for p in params]
        # gradients of very different sizes, so that ε matters for some members
        grads = [torch.randn(*s, generator=g, dtype=torch.float64) * 10.0 ** -(step % 4) for s in shapes]
        adam.zero_grad()
        for p, grad in zip(params, grads):
            p.grad = grad.clone()
        adam.step()
        for k in range(members):
            if frozen is not None and k == stopped:
                continue
            references[k].zero_grad()
            for p, grad in zip(singles[k], grads):
                p.grad = grad[k].clone()
            references[k].step()
        for k in range(members):
            if frozen is not None and k == stopped:
                for p, before in zip(params, frozen):
                    assert torch.equal(p[k], before), "a stopped member's weights must not move"
                continue
            for p, single in zip(params, singles[k]):
                assert torch.allclose(p[k], single, rtol=0, atol=1e-12), (step, k, (p[k] - single).abs().max().item())
    # and every member moved
    assert all((p[k] - p0[k]).abs().max() > 1e-6 for p, p0 in zip(params, start) for k in range(members))


def test_member_adam_rounds_as_the_textbook_expression_in_float32():
    """The in-place step takes torch.optim.Adam's rounding steps, each on its own: bit for bit the allocating form."""
    g = torch.Generator().manual_seed(1)
    lr, beta1, beta2, eps = (torch.tensor(v) for v in ([1e-3, 3e-2], [0.9, 0.8], [0.999, 0.95], [1e-8, 1e-4]))
    param = torch.nn.Parameter(torch.randn(2, 6, 5, generator=g))
    adam = Adam([param], lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    expected, m, v = param.detach().clone(), torch.zeros(2, 6, 5), torch.zeros(2, 6, 5)
    member = lambda values: values.view(-1, 1, 1)  # noqa: E731
    for step in range(1, 8):
        grad = torch.randn(2, 6, 5, generator=g) * 10.0 ** -(step % 3)
        param.grad = grad.clone()
        adam.step()
        m = m.lerp(grad, member(1 - beta1))
        v = v * member(beta2) + grad * grad * member(1 - beta2)
        denom = v.sqrt() / member((1 - beta2 ** step).sqrt()) + member(eps)
        expected = expected - m / denom * member(lr / (1 - beta1 ** step))
        assert torch.equal(param.detach(), expected), step
        assert torch.equal(param.grad, grad)  # the gradient is read, never written


def test_a_tied_tensor_takes_its_parameters_adam_step_bit_for_bit_and_a_stopped_member_keeps_it():
    """`tie`: the follower moves by exactly the parameter's update (a second Adam on the same gradient would too)."""
    g = torch.Generator().manual_seed(2)
    lr, beta1, beta2, eps = (torch.tensor(v) for v in ([1e-3, 3e-2], [0.9, 0.8], [0.999, 0.95], [1e-8, 1e-4]))
    param = torch.nn.Parameter(torch.randn(2, 6, 5, generator=g))
    follower = torch.randn(2, 6, 5, generator=g)
    start, shadow = follower.clone(), torch.nn.Parameter(follower.clone())
    adam, second = (Adam([p], lr=lr, beta1=beta1, beta2=beta2, eps=eps) for p in (param, shadow))
    adam.tie(param, follower)
    assert adam.tensors() == [param, follower]
    for step in range(6):
        if step == 3:
            adam.stop([1])
            second.stop([1])
            kept = follower[1].clone()
        param.grad = torch.randn(2, 6, 5, generator=g) * 10.0 ** -(step % 3)
        shadow.grad = param.grad
        adam.step()
        second.step()
        assert torch.equal(follower, shadow.detach()), step
    assert torch.equal(follower[1], kept) and not torch.equal(follower[0], start[0])
    with pytest.raises(ValueError, match="not one this optimizer trains"):
        adam.tie(shadow, follower)
    with pytest.raises(ValueError, match="shape"):
        adam.tie(param, torch.zeros(2, 5, 6))


def test_member_adam_refuses_parameters_without_the_member_axis():
    with pytest.raises(ValueError, match="member dimension"):
        Adam([torch.nn.Parameter(torch.zeros(2, 3))], lr=torch.ones(3), beta1=torch.ones(3), beta2=torch.ones(3),
             eps=torch.ones(3))


# -- 5. shared settings and per-member settings ---------------------------------------------------------

STRUCTURAL = [
    ("tp", "schedule", ["parallel", "alternating"]),
    ("dtp", "alternation_period", [1, 2]),
    ("sdtp", "inverse_loss", ["denoising", "noise-preserving"]),
    ("ao-sdtp", "aux_size", [8, 16]),
    ("ldrl", "inverse_iterations", [1, 2]),
    ("ldrl", "layer_sigma", ["0.1/0.1", "0.2/0.2"]),
]


@pytest.mark.parametrize("name, setting, values", STRUCTURAL, ids=[f"{n}-{s}" for n, s, _ in STRUCTURAL])
def test_a_structural_setting_given_per_member_is_a_usage_error(name, setting, values):
    with pytest.raises(UsageError):
        make(name, "fc", SEEDS[:2], **{setting: values})
    make(name, "fc", SEEDS[:2], **{setting: values[0]})  # one shared value is fine


def test_alternation_period_per_member_names_the_sharing():
    with pytest.raises(UsageError, match="shared by every member"):
        make("tp", "fc", SEEDS[:2], schedule="alternating", alternation_period=[1, 2])


WRONG_COUNTS = [
    ("bp", "forward_lr", 4, [1e-3, 2e-3, 3e-3]),
    ("fa", "forward_eps", 4, [1e-8]),
    ("dfa", "forward_beta2", 1, [0.99, 0.999]),
    ("tp", "sigma", 4, [0.1, 0.2, 0.3, 0.4, 0.5]),
    ("dtp", "alpha", 2, [0.1, 0.2, 0.3]),
    ("sdtp", "inverse_lr", 3, [1e-3, 1e-3]),
    ("ddtp", "lam", 2, [0.1]),
    ("ldrl", "beta", 3, [0.7, 0.5, 0.3, 0.1]),
]


@pytest.mark.parametrize("name, setting, members, values", WRONG_COUNTS,
                         ids=[f"{n}-{s}-{len(v)}for{k}" for n, s, k, v in WRONG_COUNTS])
def test_a_float_setting_with_the_wrong_number_of_values_is_a_usage_error(name, setting, members, values):
    with pytest.raises(UsageError, match=f"{len(values)} values for {members} members"):
        make(name, "fc", SEEDS[:members], **{setting: values})
    values = (values * members)[:members]  # the right count is fine, and lands member by member
    rule = make(name, "fc", SEEDS[:members], **{setting: values})
    assert getattr(rule.hyper, setting).tolist() == pytest.approx(values, rel=1e-6)


def test_every_value_of_a_per_member_setting_is_checked():
    with pytest.raises(UsageError, match="forward_lr"):
        make("bp", "fc", SEEDS[:3], forward_lr=[1e-3, -1e-3, 1e-3])
    with pytest.raises(UsageError, match="forward_beta2"):
        make("dtp", "fc", SEEDS[:2], forward_beta2=[0.99, 1.0])


def test_build_takes_per_member_settings_as_strings():
    _, rule = build(RunConfig(rule="dtp", arch="2*fc:8", seeds=(3, 4), device="cpu",
                              settings={"forward_lr": ["1e-3", "2e-3"], "alpha": "0.2"}))
    assert rule.members == 2 and rule.net.seeds == (3, 4)
    assert rule.hyper.forward_lr.tolist() == pytest.approx([1e-3, 2e-3])
    assert rule.hyper.alpha.tolist() == pytest.approx([0.2, 0.2])
    assert rule.member_params(1)["forward_lr"] == 2e-3 and rule.member_params(0)["alpha"] == 0.2


# -- 6. memory: K members hold exactly K times one member's tensors ------------------------------------

MEMORY = [pytest.param(name, extra, arch, id=f"{name}-{arch}")
          for name, schedule, extra in schedule_cases() if schedule != "alternating" for arch in ARCHS]


@pytest.mark.parametrize("name, extra, arch", MEMORY)
def test_a_population_holds_exactly_k_times_one_members_tensors(name, extra, arch):
    one = member_tensors(make(name, arch, SEEDS[:1], **extra))
    many = member_tensors(make(name, arch, SEEDS, **extra))
    assert many.keys() == one.keys()
    assert any(key.startswith("net.") for key in one) and any("_optimizer.exp_avg" in key for key in one)
    for key, tensor in one.items():
        assert tensor.shape[0] == 1 and many[key].shape == (len(SEEDS), *tensor.shape[1:]), key
    assert sum(t.numel() for t in many.values()) == len(SEEDS) * sum(t.numel() for t in one.values())
    # and nothing outside those: every tensor the rule holds is a member tensor
    rule = make(name, arch, SEEDS, **extra)
    held = sum(t.numel() for m in (rule.net, rule.state, rule.hyper, *rule.optimizers().values())
               for t in (*m.parameters(), *m.buffers()))
    assert held == sum(t.numel() for t in member_tensors(rule).values())
