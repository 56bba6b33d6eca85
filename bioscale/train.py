"""Training: `fit` runs epochs of one rule on one dataset; `train` builds everything from names."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import rules
from .data import Data, augment as augment_batch, load
from .devices import AUTO, resolve_device
from .errors import Diverged, UsageError
from .nets import Net, build_net


@dataclass
class EpochResult:
    """Errors (fractions in [0, 1]) after one epoch; `val_error` is None without a validation split."""

    epoch: int
    loss: float
    train_error: float
    val_error: float | None
    test_error: float
    seconds: float


@dataclass
class FitResult:
    """Every epoch's numbers, and the epoch with the lowest validation error (the last without one)."""

    history: list[EpochResult] = field(default_factory=list)

    @property
    def best(self) -> EpochResult:
        """The epoch selected by validation error, never by test error."""
        if self.history[-1].val_error is None:
            return self.history[-1]
        return min(self.history, key=lambda r: r.val_error)


@torch.no_grad()
def error_rate(net: Net, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    """Fraction of examples misclassified by `net`."""
    was_training = net.training
    net.eval()
    wrong = sum((net(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum() for i in range(0, len(x), batch_size))
    net.train(was_training)
    return float(wrong) / len(x)


def fit(rule: rules.Rule, data: Data, *, epochs: int, batch_size: int = 128, seed: int = 0,
        augment: bool = False, callback: Callable[[EpochResult], None] | None = None,
        progress: bool | None = None, chance_patience: int = 5) -> FitResult:
    """Train `rule.net` on `data` for `epochs`, reporting each epoch's errors to `callback`.

    Raises `Diverged` when the loss becomes NaN or infinite, or when the validation error (the
    training error without a validation split) stays at chance level for `chance_patience`
    epochs in a row (0 disables that check). Only epochs that trained the forward weights count
    (an alternating schedule's inverse-only epochs change nothing the error could show). The progress bar shows only on a terminal, unless
    `progress` says otherwise. `callback` may raise (e.g. `optuna.TrialPruned`) to stop early.
    """
    if epochs < 1 or batch_size < 1:
        raise UsageError(f"epochs ({epochs}) and batch size ({batch_size}) must be positive")
    net, result = rule.net, FitResult()
    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_x)
    steps = math.ceil(n / batch_size)
    chance = 1 - 1 / data.n_classes
    at_chance = 0
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=epochs * steps, disable=not show, unit="step", leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            rule.start_epoch(epoch)
            forward_steps = rule.forward_steps
            net.train()
            order = torch.randperm(n, generator=generator).to(data.device)
            loss_sum = torch.zeros((), device=data.device)
            for i in range(steps):
                idx = order[i * batch_size:(i + 1) * batch_size]
                x = data.train_x[idx]
                if augment:
                    x = augment_batch(x, generator)
                loss_sum += rule.step(x, data.train_y[idx])
                bar.update()
            loss = loss_sum.item() / steps
            if not math.isfinite(loss):
                raise Diverged(f"loss became {loss} in epoch {epoch + 1}", epoch + 1)
            record = EpochResult(
                epoch + 1, loss, error_rate(net, data.train_x, data.train_y),
                error_rate(net, data.val_x, data.val_y) if data.val_x is not None else None,
                error_rate(net, data.test_x, data.test_y), time.perf_counter() - start)
            result.history.append(record)
            watched = record.val_error if record.val_error is not None else record.train_error
            if rule.forward_steps > forward_steps:
                at_chance = at_chance + 1 if watched >= chance - 0.5 / data.n_classes else 0
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", val=_pct(record.val_error), test=_pct(record.test_error))
            if callback is not None:
                callback(record)
            if chance_patience and at_chance >= chance_patience:
                raise Diverged(f"error stayed at chance ({watched:.2f}) for {at_chance} epochs", epoch + 1)
    finally:
        bar.close()
    return result


def _pct(error: float | None) -> str:
    return "-" if error is None else f"{100 * error:.2f}%"


def train(*, rule: str, dataset: str = "digits", arch: str = "fc", activation: str = "tanh",
          epochs: int = 10, batch_size: int = 128, seed: int = 0, device: str = AUTO,
          data_root: str | None = None, val_size: float | int | None = None, augment: bool = False,
          settings: dict[str, Any] | None = None, callback: Callable[[EpochResult], None] | None = None,
          progress: bool | None = None, chance_patience: int = 5) -> tuple[FitResult, rules.Rule]:
    """Build data, network and rule from their names and fit; seeded runs repeat exactly on the CPU.

    `device` is a torch device name, or `auto`: the first GPU torch sees, else the CPU.
    """
    device = resolve_device(device)
    rule_class = rules.get(rule)
    settings = rules.coerce_settings(rule, settings or {})
    data = load(dataset, root=data_root, val_size=val_size, device=device)
    torch.manual_seed(seed)
    net = build_net(arch, dataset, data.input_shape, data.n_classes, activation).to(device)
    learner = rule_class(net, **settings)
    return fit(learner, data, epochs=epochs, batch_size=batch_size, seed=seed, augment=augment,
               callback=callback, progress=progress, chance_patience=chance_patience), learner


def as_dict(record: EpochResult) -> dict[str, Any]:
    """An epoch's numbers as a plain dict (JSON-ready)."""
    return asdict(record)


def summary(result: FitResult, learner: rules.Rule, /, *, seconds: float, **run: Any) -> dict[str, Any]:
    """A run as one JSON-ready dict: what ran (`run`), the last epoch's errors, the best epoch, every setting, the history."""
    last = result.history[-1]
    return {**run, "train_error": last.train_error, "val_error": last.val_error, "test_error": last.test_error,
            "best_epoch": result.best.epoch, "settings": learner.get_params(), "seconds": round(seconds, 3),
            "history": [as_dict(r) for r in result.history]}
