"""Training: `fit` runs epochs of one rule on one dataset; `train` builds everything from names."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import defaults, resume, rules
from .data import Data, augment as augment_batch, load
from .devices import AUTO, resolve_device
from .errors import Diverged, UsageError
from .formats import percent
from .nets import Net, build_net
from .resume import Checkpointing


# A member whose mean loss over an epoch exceeds LOSS_GROWTH_LIMIT times its start has diverged.
# Its start is its loss on the first minibatch of the fit (before any update), floored at ln(classes),
# the loss of a uniform guess, so that a fit that starts from a well-trained state is not stopped by an
# ordinary bump. 1e3 is far above anything a member that still learns shows (its loss falls from about
# ln(classes)) and far below what a runaway learning rate gives in float64 (1e39 at forward_lr = 1e38).
LOSS_GROWTH_LIMIT = 1e3


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
    """One member's epochs, and the epoch with the lowest validation error (the last without one).

    `diverged` says why a member that diverged stopped; `pruned_at` is the epoch after which the
    callback stopped it; both are None for a member that trained every epoch.
    """

    history: list[EpochResult] = field(default_factory=list)
    diverged: Diverged | None = None
    pruned_at: int | None = None

    @property
    def best(self) -> EpochResult:
        """The epoch selected by validation error, never by test error."""
        if self.history[-1].val_error is None:
            return self.history[-1]
        return min(self.history, key=lambda r: r.val_error)


@torch.no_grad()
def error_rates(model: Net | rules.Rule, x: Tensor, y: Tensor, member_examples: int = 8000) -> list[float]:
    """Fraction of examples each member misclassifies, in chunks of about `member_examples` activations.

    `model` is a net (its feedforward logits) or a rule, whose `predict` says what the members
    answer (an energy-based rule's settled free phase).
    """
    net = model.net if isinstance(model, rules.Rule) else model
    predict = model.predict if isinstance(model, rules.Rule) else net
    batch_size = max(1, min(2000, member_examples // net.members))
    was_training = net.training
    net.eval()
    wrong = sum((predict(x[i:i + batch_size]).argmax(2) != y[i:i + batch_size]).sum(1) for i in range(0, len(x), batch_size))
    net.train(was_training)
    return (wrong.double() / len(x)).tolist()


def fit(rule: rules.Rule, data: Data, *, epochs: int, batch_size: int = defaults.BATCH_SIZE, seed: int = defaults.SEED,
        augment: bool = False, callback: Callable[[int, EpochResult], bool | None] | None = None,
        progress: bool | None = None, chance_patience: int = defaults.CHANCE_PATIENCE, drop_stopped: bool = False,
        checkpoint: Checkpointing | None = None,
        select: Callable[[int, dict[int, float]], Iterable[int]] | None = None) -> list[FitResult]:
    """Train every member of `rule.net` on `data` for `epochs`; returns one FitResult per member.

    Members share the minibatch order (drawn from `seed`). After each epoch `callback(member,
    record)` sees each running member's errors; returning False stops that member (a pruner's
    decision). A member has diverged, and is stopped, when its epoch's loss is NaN or infinite,
    its weights (the net's or the rule's own) are, its loss exceeds `LOSS_GROWTH_LIMIT` times its
    start, or its validation error (the training error without a validation split) stays at
    chance level for `chance_patience` epochs in a row (0 disables that check); the others go on
    untouched. The epoch in which a member diverged by its loss or weights is not recorded.
    Only epochs that trained the forward weights count towards chance (an alternating
    schedule's inverse-only epochs change nothing the error could show). A stopped member is
    frozen where it stands, or, with `drop_stopped`, removed from the rule (`Rule.keep`), so it
    costs no more arithmetic. The progress bar shows only on a terminal, unless `progress` says
    otherwise. After the callbacks, `select(epoch, {member: best validation error so far})` sees
    every member still running at once and names those to stop too (successive halving ranks them).

    With `checkpoint` (`bioscale.resume.Checkpointing`) the fit resumes from the checkpoint at its
    path when there is a readable one for the same configuration, saves at the end of every
    `checkpoint.every` epochs, and, once `bioscale.resume.request_stop()` was called, saves at the
    end of the minibatch in progress and raises `Preempted`. A resumed fit ends bit for bit where
    an uninterrupted one does (the same numbers, on the same device).
    """
    if epochs < 1 or batch_size < 1:
        raise UsageError(f"epochs ({epochs}) and batch size ({batch_size}) must be positive")
    net, results = rule.net, [FitResult() for _ in range(rule.members)]
    running = list(range(rule.members))
    slots = list(running)  # the member each position of the rule holds
    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_x)
    steps = math.ceil(n / batch_size)
    chance = 1 - 1 / data.n_classes
    at_chance = [0] * rule.members
    first_loss: Tensor | None = None  # each member's loss on the first minibatch, before any update
    bound: list[float] = []  # each member's divergence bound, LOSS_GROWTH_LIMIT times its start
    first_epoch, first_step, elapsed = 0, 0, 0.0
    partial: dict[str, Any] | None = None  # the epoch in progress when a checkpoint was taken inside it
    saved = resume.load(checkpoint.path, checkpoint.meta) if checkpoint is not None else None
    if saved is not None:
        if saved["slots"] != slots:
            rule.keep(saved["slots"])
        rule.load_state_dict(saved["rule"])
        generator.set_state(saved["generator"])
        slots, running, at_chance, bound = list(saved["slots"]), list(saved["running"]), list(saved["at_chance"]), list(saved["bound"])
        first_loss = None if saved["first_loss"] is None else saved["first_loss"].to(data.device)
        results = [_fit_result(r) for r in saved["results"]]
        first_epoch, first_step, elapsed = saved["epoch"], saved["step"], saved["seconds"]
        partial = saved["partial"]
        checkpoint.resumed_from = first_epoch
        if checkpoint.on_resume is not None:
            checkpoint.on_resume(first_epoch, results)

    def state(epoch: int, step: int, epoch_state: dict[str, Any] | None) -> dict[str, Any]:
        return {"meta": checkpoint.meta, "epoch": epoch, "step": step, "partial": epoch_state,
                "rule": resume.cpu_state(rule), "generator": generator.get_state(), "slots": slots, "running": running,
                "at_chance": at_chance, "bound": bound, "first_loss": None if first_loss is None else first_loss.cpu(),
                "results": [_result_record(r) for r in results], "seconds": elapsed + time.perf_counter() - start}

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=epochs * steps, initial=first_epoch * steps + first_step, disable=not show, unit="step", leave=False,
               dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for epoch in range(first_epoch, epochs):
            rule.start_epoch(epoch)
            net.train()
            if partial is not None:  # resumed inside this epoch: its order and its losses so far
                forward_steps, order = partial["forward_steps"], partial["order"].to(data.device)
                loss_sum = partial["loss_sum"].to(data.device)
                begin, partial = first_step, None
            else:
                forward_steps = rule.forward_steps
                order = torch.randperm(n, generator=generator).to(data.device)
                loss_sum = torch.zeros(rule.members, device=data.device, dtype=torch.float64)
                begin = 0
            for i in range(begin, steps):
                idx = order[i * batch_size:(i + 1) * batch_size]
                x = data.train_x[idx]
                if augment:
                    x = augment_batch(x, generator)
                loss = rule.step(x, data.train_y[idx])
                if first_loss is None:
                    first_loss = loss.clone()
                loss_sum += loss
                bar.update()
                if checkpoint is not None and resume.stop_requested() and i + 1 < steps:
                    resume.save(checkpoint.path, state(epoch, i + 1, {"forward_steps": forward_steps, "order": order.cpu(),
                                                                      "loss_sum": loss_sum.cpu()}))
                    raise resume.Preempted(epoch, i + 1, checkpoint.path)
            if not bound:
                floor = math.log(data.n_classes)
                bound = [LOSS_GROWTH_LIMIT * max(start, floor) for start in first_loss.tolist()]
            losses = (loss_sum / steps).tolist()
            finite = finite_weights(rule)
            errors = [error_rates(rule, data.train_x, data.train_y),
                      error_rates(rule, data.val_x, data.val_y) if data.val_x is not None else [None] * rule.members,
                      error_rates(rule, data.test_x, data.test_y)]
            seconds = elapsed + time.perf_counter() - start
            stopped = []
            for position, member in enumerate(slots):
                if member not in running:
                    continue
                loss = losses[position]
                reason = None
                if not math.isfinite(loss):
                    reason = f"loss became {loss} in epoch {epoch + 1}"
                elif not finite[position]:
                    reason = f"weights became NaN or infinite in epoch {epoch + 1}"
                elif loss > bound[member]:
                    reason = (f"loss became {loss:.3g} in epoch {epoch + 1}, over {LOSS_GROWTH_LIMIT:g} times "
                              f"its start ({bound[member] / LOSS_GROWTH_LIMIT:.3g})")
                if reason is not None:
                    results[member].diverged = Diverged(reason, epoch + 1)
                    stopped.append(member)
                    continue
                record = EpochResult(epoch + 1, loss, *(e[position] for e in errors), seconds)
                results[member].history.append(record)
                watched = record.val_error if record.val_error is not None else record.train_error
                if rule.forward_steps > forward_steps:
                    at_chance[member] = at_chance[member] + 1 if watched >= chance - 0.5 / data.n_classes else 0
                if callback is not None and callback(member, record) is False:
                    results[member].pruned_at = epoch + 1
                    stopped.append(member)
                elif chance_patience and at_chance[member] >= chance_patience:
                    results[member].diverged = Diverged(
                        f"error stayed at chance ({watched:.2f}) for {at_chance[member]} epochs", epoch + 1, stalled=True)
                    stopped.append(member)
            running = [m for m in running if m not in stopped]
            if select is not None and running:
                best = {m: results[m].best for m in running}  # without a validation split, the training error
                chosen = set(select(epoch + 1, {m: r.train_error if r.val_error is None else r.val_error for m, r in best.items()}))
                for member in chosen & set(running):
                    results[member].pruned_at = epoch + 1
                stopped += [m for m in running if m in chosen]
                running = [m for m in running if m not in chosen]
            bar.set_postfix(epoch=epoch + 1, **_postfix(results, running))
            if not running:
                break
            if stopped and drop_stopped:
                rule.keep([slots.index(m) for m in running])
                slots = list(running)
            elif stopped:
                rule.stop([slots.index(m) for m in stopped])
            if checkpoint is not None and epoch + 1 < epochs:
                preempted = resume.stop_requested()
                if preempted or checkpoint.due(epoch + 1):
                    resume.save(checkpoint.path, state(epoch + 1, 0, None))
                if preempted:
                    raise resume.Preempted(epoch + 1, 0, checkpoint.path)
    finally:
        bar.close()
    return results


def _result_record(result: FitResult) -> dict[str, Any]:
    """A member's FitResult as plain values (what a checkpoint stores)."""
    diverged = result.diverged
    return {"history": [asdict(r) for r in result.history], "pruned_at": result.pruned_at,
            "diverged": None if diverged is None else {"reason": diverged.reason, "epoch": diverged.epoch,
                                                       "stalled": diverged.stalled}}


def _fit_result(stored: dict[str, Any]) -> FitResult:
    """The FitResult `_result_record` stored."""
    diverged = stored["diverged"]
    return FitResult(history=[EpochResult(**r) for r in stored["history"]], pruned_at=stored["pruned_at"],
                     diverged=None if diverged is None else Diverged(diverged["reason"], diverged["epoch"],
                                                                     stalled=diverged["stalled"]))


@torch.no_grad()
def finite_weights(rule: rules.Rule) -> list[bool]:
    """Whether each member's weights, the net's and the rule's own, are all finite."""
    return torch.stack([p.flatten(1).isfinite().all(1) for p in rule.parameters()]).all(0).tolist()


def _postfix(results: list[FitResult], running: list[int]) -> dict[str, str]:
    """The progress bar's numbers: the member's errors, or the best running member's in a population."""
    if len(results) > 1:
        vals = [results[m].history[-1].val_error for m in running]
        return {"running": f"{len(running)}/{len(results)}",
                "best_val": percent(min(vals)) if vals and vals[0] is not None else "-"}
    if not results[0].history:
        return {}
    record = results[0].history[-1]
    return {"loss": f"{record.loss:.3f}", "val": percent(record.val_error), "test": percent(record.test_error)}


def build(*, rule: str, dataset: str = "digits", arch: str = "fc", activation: str = defaults.ACTIVATION,
          seeds: Sequence[int] = (0,), device: str = AUTO, data_root: str | None = None,
          val_size: float | int | None = None, settings: dict[str, Any] | None = None) -> tuple[Data, rules.Rule]:
    """The data and a rule training one member per seed, from names; a per-member setting may hold one value per member."""
    device = resolve_device(device)
    rule_class = rules.get(rule)
    settings = rules.coerce_settings(rule, settings or {})
    data = load(dataset, root=data_root, val_size=val_size, device=device)
    net = build_net(arch, dataset, data.input_shape, data.n_classes, activation, seeds=seeds).to(device)
    return data, rule_class(net, **settings)


def train(*, rule: str, dataset: str = "digits", arch: str = "fc", activation: str = defaults.ACTIVATION,
          epochs: int = 10, batch_size: int = defaults.BATCH_SIZE, seed: int = defaults.SEED, data_seed: int | None = None, device: str = AUTO,
          data_root: str | None = None, val_size: float | int | None = None, augment: bool = False,
          settings: dict[str, Any] | None = None, callback: Callable[[EpochResult], None] | None = None,
          progress: bool | None = None, chance_patience: int = defaults.CHANCE_PATIENCE) -> tuple[FitResult, rules.Rule]:
    """Build data, network and rule from their names and fit one configuration (a population of one).

    `seed` draws the initial weights, the rule's state and noise; `data_seed` (default: `seed`)
    the minibatch order. Seeded runs repeat exactly on the CPU. `device` is a torch device name, or `auto`: the first
    GPU torch sees, else the CPU. Raises `Diverged` when the run diverged.
    """
    data, learner = build(rule=rule, dataset=dataset, arch=arch, activation=activation, seeds=(seed,), device=device,
                          data_root=data_root, val_size=val_size, settings=settings)
    report = None if callback is None else (lambda member, record: callback(record))
    result, = fit(learner, data, epochs=epochs, batch_size=batch_size, seed=seed if data_seed is None else data_seed,
                  augment=augment, callback=report,
                  progress=progress, chance_patience=chance_patience)
    if result.diverged is not None:
        raise result.diverged
    return result, learner


def as_dict(record: EpochResult) -> dict[str, Any]:
    """An epoch's numbers as a plain dict (JSON-ready)."""
    return asdict(record)


def summary(result: FitResult, learner: rules.Rule, /, *, seconds: float, **run: Any) -> dict[str, Any]:
    """A run as one JSON-ready dict: what ran (`run`), the last epoch's errors, the best epoch, every setting, the history."""
    last = result.history[-1]
    return {**run, "train_error": last.train_error, "val_error": last.val_error, "test_error": last.test_error,
            "best_epoch": result.best.epoch, "settings": learner.get_params(), "seconds": round(seconds, 3),
            "history": [as_dict(r) for r in result.history]}
