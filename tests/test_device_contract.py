"""Every registered rule keeps to its net's device and dtype, on every layer family.

A float64 net on the CPU stands in for "not the default device": a tensor a rule, layer, inverse
or feedback path makes with the default dtype (float32) or the default device would break a run
on a GPU the same way. Two checks: every tensor the rule holds after a step (parameters, buffers,
optimizer state (bioscale.optim.Adam keeps its moments and settings as module buffers), feedback
matrices, inverses, the members' settings), and every tensor any operation makes during a step.
Only floating tensors must have the net's dtype (Adam's `active` mask is bool); every tensor and
every noise generator must be on the net's device. The nets have two members.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bioscale import rules
from bioscale.data import load
from bioscale.nets import build_net

FAMILIES = ("fc", "lc", "conv")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def held_tensors(obj, path: str = "rule", seen: set[int] | None = None):
    """(path, tensor) for every tensor reachable from `obj`'s attributes and modules (optimizers are modules)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, nn.Module):
        yield from ((f"{path}.{k}", v) for k, v in obj.named_parameters())
        yield from ((f"{path}.{k}", v) for k, v in obj.named_buffers())
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from held_tensors(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from held_tensors(v, f"{path}[{i}]", seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for k, v in vars(obj).items():
            yield from held_tensors(v, f"{path}.{k}", seen)


class MadeTensors(TorchDispatchMode):
    """Records (operation, device, dtype) of every non-scalar tensor any operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, torch.device, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:  # 0-dim CPU scalars mix with any device
                self.made.append((str(func), leaf.device, leaf.dtype))
        return out


def variants():
    for name in rules.names():
        for schedule in rules.get(name).schedules or (None,):
            for family in FAMILIES:
                yield pytest.param(name, schedule, family, id=f"{name}{'-' + schedule if schedule else ''}-{family}")


def test_every_registered_rule_is_covered():
    covered = {v.values[0] for v in variants()}
    assert covered == set(rules.names()) and len(covered) >= 8


@pytest.mark.parametrize("name, schedule, family", list(variants()))
def test_a_float64_net_keeps_float64_everywhere(name, schedule, family):
    data = load("digits")
    net = build_net(family, "digits", data.input_shape, data.n_classes, seeds=(0, 1)).to(torch.float64)
    settings = {"schedule": schedule, "alternation_period": 1} if schedule == "alternating" else (
        {"schedule": schedule} if schedule else {})
    rule = rules.create(name, net, **settings)
    want = (net.output.weight.device, torch.float64)
    x, y = data.train_x[:16].to(torch.float64), data.train_y[:16]
    with MadeTensors() as mode:
        for _ in range(2):  # an alternating rule trains its inverses, then its forward weights
            loss = rule.step(x, y)
    assert loss.shape == (2,) and torch.isfinite(loss).all() and loss.dtype == torch.float64
    wrong = sorted({f"{op} -> {device}/{dtype}" for op, device, dtype in mode.made
                    if device != want[0] or (dtype.is_floating_point and dtype != want[1])})
    assert not wrong, f"{name} made tensors off the net's device/dtype during a step: {wrong[:5]}"
    held = list(held_tensors(rule))
    assert any(path.startswith("rule.net.") for path, _ in held)
    assert any(path.startswith("rule.forward_optimizer.exp_avg_") for path, _ in held)  # the walk reaches the moments
    assert all(g.device == want[0] for g in rule.noise_generators)
    off = [f"{path}: {t.device}/{t.dtype}" for path, t in held
           if t.device != want[0] or (t.is_floating_point() and t.dtype != want[1])]
    assert not off, f"{name} holds tensors off the net's device/dtype: {off[:5]}"


def off_dtype(rule, dtype: torch.dtype) -> list[str]:
    """Every held floating-point tensor of `rule` that is not of `dtype`."""
    return [path for path, t in held_tensors(rule) if t.is_floating_point() and t.dtype != dtype]


@pytest.mark.parametrize("name", rules.names())
def test_rule_to_moves_the_net_the_rule_state_and_the_optimizer_moments(name):
    data = load("digits")
    rule = rules.create(name, build_net("lc", "digits", data.input_shape, data.n_classes, seeds=(0, 1)))
    x, y = data.train_x[:16], data.train_y[:16]
    rule.step(x, y)  # the optimizers now hold moments
    assert rule.to(torch.float64) is rule
    assert not off_dtype(rule, torch.float64)
    assert all(opt.active.dtype == torch.bool for opt in rule.optimizers().values())
    assert {p for p, _ in held_tensors(rule) if ".exp_avg" in p}  # moments are held, and were checked
    assert rule.step(x.to(torch.float64), y).dtype == torch.float64
    assert not off_dtype(rule, torch.float64)
