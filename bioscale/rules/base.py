"""The interface every learning rule implements, and the registry that finds rules by name.

How a rule declares its settings and state (everything a subclass touches):
- Settings are keyword-only constructor arguments with defaults, stored unchanged under their own
  names (`self.sigma = sigma`); `settings(name)` reads them back from the signatures.
- `per_member` (a class attribute) names the settings that take one value for every member or a
  sequence of one per member (a learning rate, an Adam β or ε, α, σ). They are also held as (K,)
  tensors in `rule.hyper` (read `self.hyper.sigma` in the maths). Every other setting (a schedule,
  a period, a size) shapes the computation and is shared. A subclass extends its parent's tuple:
  `per_member = (*TargetProp.per_member, "alpha")`.
- `make_state(generators)` returns the rule's own tensors (feedback matrices, inverses, auxiliary
  weights) as one `nn.Module`, each with a leading member axis. It runs once the whole
  constructor chain has stored its settings (`build`, called by the metaclass), before the
  optimizers are made; so no overridable method ever runs before a subclass has its settings.
- `predict(x)` is what the members answer (the net's feedforward logits by default); every
  error `fit` reports reads it, so a rule whose answer is a settled state (EP, CHL) overrides it.
- `counters` names the plain-number attributes a checkpoint must carry (a schedule's position).
- What is true of the rule itself (its family, display order, citation, year and the schedules it
  offers; `label(rule, schedule)` names a rule under one) is its line in `bioscale.catalogue`, which
  the class takes as class attributes when it is defined: a rule is its module plus that one line.
- `self.scratch(key, like)` lends a working tensor shaped like `like` that every step reuses (sign(W_l),
  say) instead of allocating a weight-sized one per step (`bioscale.layers.Scratch`); it is not state.
- A rule is an `nn.Module` whose submodules are the net, `state`, `hyper` and its Adam optimizers,
  so `to`, `state_dict`/`load_state_dict` and dropping members (`keep`) are PyTorch's own; the
  counters and the members' noise streams travel as its extra state.

A rule trains every member of its net at once (bioscale.population). Every loss is kept per
member, (K,), and the backward pass runs on their sum, which gives each member the gradient of
its own loss alone.

Two kinds of learning signal, one family base each: `GradientRule` (one surrogate loss whose
backward pass carries the signal through some feedback path: BP, FA, sign-symmetry, DFA; its
extension point is `task_loss`) and `target_propagation.TargetProp` (local losses towards
targets; it overrides `step`).
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import catalogue, population
from .._modules import import_public_modules
from ..errors import UsageError
from ..layers import Scratch
from ..nets import Net
from ..optim import Adam
from ..spec import label  # noqa: F401 - a rule's label, defined where the command line reaches it without torch
from ..values import check_value, convert as convert_value

_REGISTRY: dict[str, type[Rule]] = {}
_loaded = False


def _keyword_settings(rule_class: type[Rule]) -> dict[str, Any]:
    """Every keyword-only constructor argument of `rule_class` and its class chain, with its default."""
    out: dict[str, Any] = {}
    for klass in reversed(rule_class.__mro__):
        if "__init__" in vars(klass) and issubclass(klass, Rule):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind is p.KEYWORD_ONLY:
                    out[p.name] = p.default
    return out


class _BuiltAfterInit(ABCMeta):
    """Calls `build()` once the whole constructor chain has run, so hooks see every setting."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        rule = super().__call__(*args, **kwargs)
        rule.check_settings()
        rule.build()
        return rule


class Rule(nn.Module, metaclass=_BuiltAfterInit):
    """Trains the K members of one network: owns their optimizer(s) and state, and does one update per minibatch.

    Every hyperparameter is an explicit keyword argument with a default, stored unchanged under
    its own name (scikit-learn style), so a search space maps one-to-one onto the constructor.
    A setting named in `per_member` may also be a sequence of one value per member.
    """

    name: ClassVar[str] = ""
    # The rule's line in bioscale.catalogue, copied here when the class is defined (see __init_subclass__).
    family: ClassVar[str] = ""
    order: ClassVar[int] = 0
    citation: ClassVar[str] = ""
    year: ClassVar[int] = 0
    # Which layers' parameters a hidden layer's update may depend on ("global" for backprop-like
    # rules, "local" for rules whose every update is a single-layer loss). Tests read this.
    locality: ClassVar[str] = "global"
    # The schedules a rule offers for training its own state against the forward weights (its catalogue line's).
    schedules: ClassVar[tuple[str, ...]] = ()
    # Counters a checkpoint must carry to resume exactly (a schedule's position, for one).
    counters: ClassVar[tuple[str, ...]] = ("forward_steps",)
    # The settings that may differ between members, held as (K,) tensors in `hyper`.
    per_member: ClassVar[tuple[str, ...]] = ("forward_lr", "forward_beta1", "forward_beta2", "forward_eps")

    net: Net
    state: nn.Module
    hyper: nn.Module
    forward_optimizer: Adam

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8) -> None:
        super().__init__()
        self.net = net
        self.forward_lr, self.forward_beta1 = forward_lr, forward_beta1
        self.forward_beta2, self.forward_eps = forward_beta2, forward_eps

    @property
    def members(self) -> int:
        """K, the number of members the rule trains."""
        return self.net.members

    def check_settings(self) -> None:
        """Every setting within its limits (`bioscale.values.LIMITS`, the one table), one value or one per member; else a UsageError."""
        for name, value in self.get_params().items():
            values = value if _is_sequence(value) else [value]
            if _is_sequence(value) and name not in self.per_member:
                raise UsageError(f"rule {self.name!r}: {name} shapes the computation and is shared by every member: "
                                 f"give one value, not {len(value)}")
            if _is_sequence(value) and len(value) != self.members:
                raise UsageError(f"rule {self.name!r}: {name} has {len(value)} values for {self.members} members")
            for one in values:
                try:
                    check_value(name, one)
                except ValueError as error:
                    raise UsageError(f"rule {self.name!r}: {error}") from None

    def build(self) -> None:
        """Make the rule's state on the net's device and dtype, then its optimizers (run once, after __init__)."""
        like = next(self.net.parameters())
        self.forward_steps = 0  # updates of the forward weights so far (fit's chance-level stop counts their epochs)
        self.hyper = nn.Module()  # every per-member setting as a (K,) tensor
        for name in self.per_member:
            value = getattr(self, name)
            self.hyper.register_buffer(name, like.new_tensor(value if _is_sequence(value) else [value] * self.members))
        self.state = self.make_state(population.generators(self.net.seeds, population.RULE_STATE)).to(like)
        self.noise_generators = population.generators(self.net.seeds, population.NOISE, like.device)
        self.scratch = Scratch()  # weight-sized working tensors a step reuses (sign(W_l), ...), not state
        self.forward_optimizer = self.adam(self.forward_parameters(), "forward")

    def adam(self, params: Iterable[nn.Parameter], prefix: str) -> Adam:
        """Adam over `params` with the members' `{prefix}_lr`, `_beta1`, `_beta2` and `_eps`."""
        h = self.hyper
        return Adam(params, lr=getattr(h, f"{prefix}_lr"), beta1=getattr(h, f"{prefix}_beta1"),
                    beta2=getattr(h, f"{prefix}_beta2"), eps=getattr(h, f"{prefix}_eps"))

    def make_state(self, generators: list[torch.Generator]) -> nn.Module:
        """The rule's own tensors (never the net's) as one module, drawn from one generator per member. Empty by default."""
        return nn.Module()

    def forward_parameters(self) -> list[nn.Parameter]:
        """The parameters θ of the forward network that this rule trains."""
        return list(self.net.parameters())

    def optimizers(self) -> dict[str, Adam]:
        """Every optimizer of the rule, by name."""
        return {"forward": self.forward_optimizer}

    def stop(self, members: Iterable[int]) -> None:
        """Freeze `members` (diverged, or pruned): their weights and state no longer change; the others go on."""
        members = list(members)
        for optimizer in self.optimizers().values():
            optimizer.stop(members)

    def keep(self, members: Sequence[int]) -> None:
        """Keep only `members` (positions, in this order), dropping the others from every tensor: the rest stop costing arithmetic.

        Every parameter and buffer of the rule has a member axis, so one `_apply` (what `to` uses)
        selects them all; parameters stay the same objects, so the optimizers keep theirs.
        """
        members = list(members)
        index = torch.as_tensor(members, dtype=torch.long, device=next(self.net.parameters()).device)
        self._apply(lambda tensor: tensor[index])  # indexing keeps each tensor's memory layout (see layers.linear_weight)
        for optimizer in self.optimizers().values():
            optimizer.stop([])  # recount which members are active
        for name in self.per_member:
            value = getattr(self, name)
            if _is_sequence(value):
                setattr(self, name, [value[i] for i in members])
        self.net.seeds = tuple(self.net.seeds[i] for i in members)
        self.noise_generators = [self.noise_generators[i] for i in members]

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Rule:
        """nn.Module's (behind `to`, `double`, `cuda`, ...); moving to another device starts the members' noise streams afresh there."""
        super()._apply(fn, recurse)
        device = next(self.net.parameters()).device
        generators = getattr(self, "noise_generators", None)
        if generators and generators[0].device != device:
            self.noise_generators = population.generators(self.net.seeds, population.NOISE, device)
        return self

    def get_extra_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond tensors: the counters and every member's noise stream."""
        return {"counters": {name: getattr(self, name) for name in self.counters},
                "noise": [g.get_state() for g in self.noise_generators]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_extra_state` returned (`load_state_dict` calls it)."""
        for name, value in state["counters"].items():
            setattr(self, name, value)
        for generator, saved in zip(self.noise_generators, state["noise"], strict=True):
            generator.set_state(saved)

    def noise_like(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Standard normal noise shaped like each (K, ...) tensor, every member's from its own generator."""
        sizes = [t[0].numel() for t in tensors]
        flat = tensors[0].new_empty(len(self.noise_generators), sum(sizes))
        for row, generator in zip(flat, self.noise_generators, strict=True):
            torch.randn(row.shape, generator=generator, out=row)  # each member's draw in place, not stacked from copies
        return [chunk.view_as(t) for chunk, t in zip(flat.split(sizes, 1), tensors)]

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Each member's class scores (K, B, classes) for a shared batch: the net's feedforward logits (an energy rule settles first)."""
        return self.net(x)

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (counted from 0); schedules use it."""

    @abstractmethod
    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One update of every member on a shared minibatch; returns each member's task loss (K,), detached, before it."""

    def get_params(self) -> dict[str, Any]:
        """Every hyperparameter of this rule with its value as given (a per-member setting may hold one value per member)."""
        return {name: getattr(self, name) for name in settings(self.name)}

    def member_params(self, member: int) -> dict[str, Any]:
        """Every hyperparameter of one member, as plain values."""
        return {name: value[member] if _is_sequence(value) else value for name, value in self.get_params().items()}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        undeclared = set(cls.per_member) - set(_keyword_settings(cls))
        if undeclared:
            raise TypeError(f"{cls.__qualname__}.per_member names {sorted(undeclared)}, which its constructor does not take")
        name = vars(cls).get("name")  # a class that sets no name of its own is a base, not a rule
        if not name:
            return
        known = _REGISTRY.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"two rules named {name!r}: {known.__module__}.{known.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}")
        facts = catalogue.facts(name)
        if facts is None:
            raise TypeError(f"rule {name!r} ({cls.__module__}.{cls.__qualname__}) has no line in bioscale/catalogue.py: "
                            "add one with its family, order, citation and year")
        cls.family, cls.order, cls.citation, cls.year = facts.family, facts.order, facts.citation, facts.year
        cls.schedules = facts.schedules
        _REGISTRY[name] = cls


class GradientRule(Rule):
    """A rule whose learning signal is the gradient of one loss, carried backwards by some feedback path.

    Each step is one backward pass of `task_loss` (summed over members) and one step of the forward Adam optimizer.
    """

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One backward pass of `task_loss` and one Adam step; returns each member's loss before it, detached."""
        self.forward_optimizer.zero_grad()
        loss = self.task_loss(x, y)
        loss.sum().backward()
        self.forward_optimizer.step()
        self.forward_steps += 1
        return loss.detach()

    @abstractmethod
    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Each member's mean cross-entropy (K,), whose backward pass carries this rule's learning signal."""


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def names() -> list[str]:
    """Every registered rule name."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Rule]:
    """The rule class registered as `name`; unknown names raise UsageError listing the valid ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UsageError(f"unknown rule {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def settings(name: str) -> dict[str, Any]:
    """A rule's hyperparameters and their defaults, read from its constructor's signature."""
    return _keyword_settings(get(name))


def coerce_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Check setting names against the rule and convert string values to each default's type."""
    known = settings(name)
    out = {}
    for key, value in given.items():
        if key not in known:
            raise UsageError(f"rule {name!r} has no setting {key!r}; its settings are: {', '.join(known)}")
        out[key] = [convert(key, v, known[key]) for v in value] if _is_sequence(value) else convert(key, value, known[key])
    return out


def convert(key: str, value: Any, default: Any) -> Any:
    """Convert `value` (often a string from the command line) to the type of `default` (`bioscale.values.convert`)."""
    try:
        return convert_value(key, value, default)
    except ValueError as error:
        raise UsageError(f"setting {error}") from None


def create(name: str, net: Net, **given: Any) -> Rule:
    """Build rule `name` on `net` with the given settings (names and types checked)."""
    return get(name)(net, **coerce_settings(name, given))


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Each member's mean cross-entropy (K,) of logits (K, B, classes) against shared labels (B,): every rule's task loss."""
    return F.cross_entropy(logits.transpose(1, 2), y.expand(len(logits), -1), reduction="none").mean(1)


def _load_all() -> None:
    """Import every public module of this package once; each registers its rules by defining them."""
    global _loaded
    if not _loaded:
        import_public_modules(__package__)
        _loaded = True
