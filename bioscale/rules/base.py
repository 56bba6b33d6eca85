"""The interface every learning rule implements, and the registry that finds rules by name.

A rule is built in two steps. Its constructor chain only stores (and checks) settings; once the
whole chain has run, `build()` makes the rule's own state (`make_state`: feedback matrices,
inverses, auxiliary weights, as one `nn.Module` on the net's device and dtype) and then its
optimizers. So no overridable method ever runs before a subclass has stored its settings.

Two kinds of learning signal, one family base each: `GradientRule` (one surrogate loss whose
backward pass carries the signal through some feedback path: BP, FA, sign-symmetry, DFA; its
extension point is `task_loss`) and `target_propagation.TargetProp` (local losses towards
targets; it overrides `step`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABCMeta, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..nets import Net
from ..values import check_value, convert as convert_value

_REGISTRY: dict[str, type[Rule]] = {}
_loaded = False


class _BuiltAfterInit(ABCMeta):
    """Calls `build()` once the whole constructor chain has run, so hooks see every setting."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        rule = super().__call__(*args, **kwargs)
        rule.check_settings()
        rule.build()
        return rule


class Rule(metaclass=_BuiltAfterInit):
    """Trains one network: owns its optimizer(s) and state, and does one update per minibatch.

    Every hyperparameter is an explicit keyword argument with a default, stored unchanged under
    its own name (scikit-learn style), so a search space maps one-to-one onto the constructor.
    """

    name: ClassVar[str] = ""
    # Which layers' parameters a hidden layer's update may depend on ("global" for backprop-like
    # rules, "local" for rules whose every update is a single-layer loss). Tests read this.
    locality: ClassVar[str] = "global"
    # The schedules a rule offers for training its own state against the forward weights.
    schedules: ClassVar[tuple[str, ...]] = ()
    # Counters a checkpoint must carry to resume exactly (a schedule's position, for one).
    counters: ClassVar[tuple[str, ...]] = ("forward_steps",)

    state: nn.Module
    forward_optimizer: torch.optim.Optimizer

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8) -> None:
        self.net = net
        self.forward_lr, self.forward_beta1 = forward_lr, forward_beta1
        self.forward_beta2, self.forward_eps = forward_beta2, forward_eps

    def check_settings(self) -> None:
        """Every setting within its limits (`bioscale.values.LIMITS`, the one table); else a UsageError."""
        for name, value in self.get_params().items():
            try:
                check_value(name, value)
            except ValueError as error:
                raise UsageError(f"rule {self.name!r}: {error}") from None

    def build(self) -> None:
        """Make the rule's state on the net's device and dtype, then its optimizers (run once, after __init__)."""
        like = next(self.net.parameters())
        self.forward_steps = 0  # updates of the forward weights so far (fit's chance-level stop counts their epochs)
        self.state = self.make_state(like).to(like)
        self.forward_optimizer = adam(self.forward_parameters(), self.forward_lr, self.forward_beta1,
                                      self.forward_beta2, self.forward_eps)

    def make_state(self, like: Tensor) -> nn.Module:
        """The rule's own tensors (never the net's) as one module; `like` is a net parameter. Empty by default."""
        return nn.Module()

    def forward_parameters(self) -> list[nn.Parameter]:
        """The parameters θ of the forward network that this rule trains."""
        return list(self.net.parameters())

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer of the rule, by name."""
        return {"forward": self.forward_optimizer}

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (counted from 0); schedules use it."""

    @abstractmethod
    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One update on a minibatch; returns the task loss (mean cross-entropy, detached) before it."""

    def get_params(self) -> dict[str, Any]:
        """Every hyperparameter of this rule with its current value."""
        return {name: getattr(self, name) for name in settings(self.name)}

    def to(self, *args: Any, **kwargs: Any) -> Rule:
        """Move the net, the rule's state and its optimizers' moments (arguments as for `nn.Module.to`)."""
        self.net.to(*args, **kwargs)
        self.state.to(*args, **kwargs)
        like = next(self.net.parameters())
        for optimizer in self.optimizers().values():
            for slot in optimizer.state.values():
                for key, value in slot.items():
                    if torch.is_tensor(value) and key != "step":  # Adam's step count stays a CPU scalar
                        slot[key] = value.to(like.device, like.dtype if value.is_floating_point() else value.dtype)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The net's, the rule's state's and every optimizer's state dicts, for a checkpoint."""
        return {"net": self.net.state_dict(), "state": self.state.state_dict(),
                "counters": {name: getattr(self, name) for name in self.counters},
                **{f"{name}_optimizer": opt.state_dict() for name, opt in self.optimizers().items()}}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore what `state_dict` returned into a rule built the same way."""
        self.net.load_state_dict(saved["net"])
        self.state.load_state_dict(saved["state"])
        for name, value in saved["counters"].items():
            setattr(self, name, value)
        for name, opt in self.optimizers().items():
            opt.load_state_dict(saved[f"{name}_optimizer"])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = vars(cls).get("name")  # a class that sets no name of its own is a base, not a rule
        if not name:
            return
        known = _REGISTRY.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"two rules named {name!r}: {known.__module__}.{known.__qualname__} and "
                            f"{cls.__module__}.{cls.__qualname__}")
        _REGISTRY[name] = cls


class GradientRule(Rule):
    """A rule whose learning signal is the gradient of one loss, carried backwards by some feedback path.

    Each step is one backward pass of `task_loss` and one step of the forward Adam optimizer.
    """

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One backward pass of `task_loss` and one Adam step; returns the loss before it, detached."""
        self.forward_optimizer.zero_grad(set_to_none=True)
        loss = self.task_loss(x, y)
        loss.backward()
        self.forward_optimizer.step()
        self.forward_steps += 1
        return loss.detach()

    @abstractmethod
    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean cross-entropy whose backward pass carries this rule's learning signal."""


def adam(params: Iterable[nn.Parameter], lr: float, beta1: float, beta2: float, eps: float) -> torch.optim.Adam:
    """Adam over `params` with the rule's settings for one set of weights."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps)


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
    out: dict[str, Any] = {}
    for klass in reversed(get(name).__mro__):
        if "__init__" in vars(klass) and issubclass(klass, Rule):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind is p.KEYWORD_ONLY:
                    out[p.name] = p.default
    return out


def coerce_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Check setting names against the rule and convert string values to each default's type."""
    known = settings(name)
    out = {}
    for key, value in given.items():
        if key not in known:
            raise UsageError(f"rule {name!r} has no setting {key!r}; its settings are: {', '.join(known)}")
        out[key] = convert(key, value, known[key])
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
    """Mean cross-entropy of integer labels: the task loss of every rule."""
    return F.cross_entropy(logits, y)


def _load_all() -> None:
    """Import every public module of this package once; each registers its rules by defining them."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__package__}.{module.name}")  # an ImportError here is a real bug: let it out
    _loaded = True
