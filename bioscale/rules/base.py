"""The interface every learning rule implements, and the registry that finds rules by name."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError
from ..nets import Net

_REGISTRY: dict[str, type["Rule"]] = {}


class Rule:
    """Trains one network: owns its optimizer(s) and does one update per minibatch.

    Every hyperparameter is an explicit keyword argument with a default, stored unchanged under
    its own name (scikit-learn style), so a search space maps one-to-one onto the constructor.
    """

    name: ClassVar[str] = ""
    # Which layers' parameters a hidden layer's update may depend on ("global" for backprop-like
    # rules, "local" for rules whose every update is a single-layer loss). Tests read this.
    locality: ClassVar[str] = "global"

    def __init__(self, net: Net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9,
                 forward_beta2: float = 0.999, forward_eps: float = 1e-8) -> None:
        self.net = net
        self.forward_lr, self.forward_beta1 = forward_lr, forward_beta1
        self.forward_beta2, self.forward_eps = forward_beta2, forward_eps
        self.forward_optimizer = torch.optim.Adam(
            self.forward_parameters(), lr=forward_lr, betas=(forward_beta1, forward_beta2), eps=forward_eps)

    def forward_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters θ of the forward network that this rule trains."""
        return list(self.net.parameters())

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (counted from 0); schedules use it."""

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One update on a minibatch; returns the task loss (mean cross-entropy, detached) before it."""
        self.forward_optimizer.zero_grad(set_to_none=True)
        loss = self.task_loss(x, y)
        loss.backward()
        self.forward_optimizer.step()
        return loss.detach()

    def task_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean cross-entropy whose backward pass carries this rule's learning signal."""
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Every hyperparameter of this rule with its current value."""
        return {name: getattr(self, name) for name in settings(self.name)}

    @classmethod
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls


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
    """Convert `value` (often a string from the command line) to the type of `default`."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return type(default)(float(value)) if isinstance(default, int) and float(value).is_integer() else type(default)(value)
    except ValueError:
        raise UsageError(f"setting {key}={value!r} is not a {type(default).__name__}") from None


def create(name: str, net: Net, **given: Any) -> Rule:
    """Build rule `name` on `net` with the given settings (names and types checked)."""
    return get(name)(net, **coerce_settings(name, given))


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of integer labels: the task loss of every rule."""
    return F.cross_entropy(logits, y)


def _load_all() -> None:
    from . import backprop, feedback_alignment  # noqa: F401  (registration by import)
    try:
        from . import target_propagation  # noqa: F401
    except ImportError:  # pragma: no cover - present once the TP family lands
        pass
