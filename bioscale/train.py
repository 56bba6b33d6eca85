"""Training: `fit` runs epochs of one rule on one dataset; `build` and `train` make everything from a `RunConfig`."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import resume, rules
from .data import Data, augment as augment_batch, load
from .devices import resolve_device
from .errors import Diverged, UsageError
from .formats import percent
from .history import EpochResult, FitResult
from .nets import Net, build_net
from .resume import Checkpointing, FitState
from .run_config import RunConfig


# A member whose mean loss over an epoch exceeds LOSS_GROWTH_LIMIT times its start has diverged.
# Its start is its loss on the first minibatch of the fit (before any update), floored at ln(classes),
# the loss of a uniform guess, so that a fit that starts from a well-trained state is not stopped by an
# ordinary bump. 1e3 is far above anything a member that still learns shows (its loss falls from about
# ln(classes)) and far below what a runaway learning rate gives in float64 (1e39 at forward_lr = 1e38).
LOSS_GROWTH_LIMIT = 1e3


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


def fit(rule: rules.Rule, data: Data, config: RunConfig, *, callback: Callable[[int, EpochResult], bool | None] | None = None,
        progress: bool | None = None, drop_stopped: bool = False, checkpoint: Checkpointing | None = None,
        select: Callable[[int, dict[int, float]], Iterable[int]] | None = None) -> list[FitResult]:
    """Train every member of `rule.net` on `data` for `config`'s epochs, batch size, data seed, augment and chance patience.

    Returns one FitResult per member. Members share the minibatch order. After each epoch
    `callback(member, record)` sees each running member's numbers; returning False stops that
    member (a pruner's decision); `stop_member` says when a member stops on its own. A stopped
    member is frozen where it stands, or, with `drop_stopped`, removed from the rule (`Rule.keep`).
    After the callbacks, `select(epoch, {member: best validation error so far})` sees every member
    still running at once and names those to stop too (successive halving ranks them).
    With `checkpoint` the fit resumes from a readable checkpoint of the same configuration and
    saves as `bioscale.resume` describes; a resumed fit ends bit for bit where an uninterrupted one
    does. The progress bar shows only on a terminal, unless `progress` says otherwise.
    """
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError(f"epochs ({config.epochs}) and batch size ({config.batch_size}) must be positive")
    state = resume.FitState.start(rule.members, config.minibatch_seed)
    if checkpoint is not None:
        state = checkpoint.restore(state, rule, data.device)
    examples, size = len(data.train_x), config.batch_size
    steps = math.ceil(examples / size)
    bar = tqdm(total=config.epochs * steps, initial=state.epoch * steps + state.step, unit="step", leave=False,
               disable=not (sys.stderr.isatty() if progress is None else progress), dynamic_ncols=True)
    try:
        for epoch in range(state.epoch, config.epochs):
            rule.start_epoch(epoch)
            rule.net.train()
            current = state.open_epoch(rule.forward_steps, examples, data.device)
            for i in range(state.step, steps):
                idx = current.order[i * size:(i + 1) * size]
                x = augment_batch(data.train_x[idx], state.generator) if config.augment else data.train_x[idx]
                state.add_loss(rule.step(x, data.train_y[idx]))
                bar.update()
                if checkpoint is not None and i + 1 < steps and resume.stop_requested():
                    checkpoint.preempt(state, rule)
            losses = state.close_epoch(LOSS_GROWTH_LIMIT, math.log(data.n_classes))
            records = epoch_records(rule, data, losses, epoch + 1, state.elapsed)
            watch = chance_level(data.n_classes) if rule.forward_steps > current.forward_steps else None
            finite = finite_weights(rule)
            stopped = [member for position, member in enumerate(state.slots) if member in state.running and stop_member(
                state, member, records[position], finite[position], watch, config.chance_patience, callback)]
            state.running = [m for m in state.running if m not in stopped]
            if select is not None and state.running:
                stopped += _select(state, select, epoch + 1)
            bar.set_postfix(epoch=epoch + 1, **_postfix(state.results, state.running))
            if not state.running:
                break
            _set_aside(rule, state, stopped, drop_stopped)
            if checkpoint is not None and epoch + 1 < config.epochs:
                checkpoint.epoch_done(state, rule)
    finally:
        bar.close()
    return state.results


def epoch_records(rule: rules.Rule, data: Data, losses: list[float], epoch: int,
                  elapsed: Callable[[], float]) -> list[EpochResult]:
    """Each position's numbers after `epoch`: its mean loss, its errors on every split, the `elapsed()` seconds after them."""
    errors = [error_rates(rule, data.train_x, data.train_y),
              error_rates(rule, data.val_x, data.val_y) if data.val_x is not None else [None] * rule.members,
              error_rates(rule, data.test_x, data.test_y)]
    seconds = elapsed()
    return [EpochResult(epoch, loss, *(e[position] for e in errors), seconds) for position, loss in enumerate(losses)]


def chance_level(classes: int) -> float:
    """The error from which on a member counts as at chance: half a class short of a uniform guess's."""
    chance = 1 - 1 / classes
    return chance - 0.5 / classes


def stop_member(state: FitState, member: int, record: EpochResult, finite: bool, chance: float | None,
                chance_patience: int, callback: Callable[[int, EpochResult], bool | None] | None) -> bool:
    """Whether `member` stops after this epoch: it diverged (not recorded), the callback pruned it, or it stalled at chance.

    It diverged when its epoch's loss is NaN or infinite, its weights (the net's or the rule's own)
    are not `finite`, or its loss exceeds its bound (`LOSS_GROWTH_LIMIT` times its start); it
    stalled when its validation error (the training error without a validation split) stayed at
    or above `chance` for `chance_patience` epochs in a row (0: never). Only epochs that trained
    the forward weights count towards chance (`chance` None: this one did not).
    """
    result, loss, epoch = state.results[member], record.loss, record.epoch
    bound = state.bound[member]
    reason = (f"loss became {loss} in epoch {epoch}" if not math.isfinite(loss) else
              f"weights became NaN or infinite in epoch {epoch}" if not finite else
              f"loss became {loss:.3g} in epoch {epoch}, over {LOSS_GROWTH_LIMIT:g} times its start "
              f"({bound / LOSS_GROWTH_LIMIT:.3g})" if loss > bound else None)
    if reason is not None:
        result.diverged = Diverged(reason, epoch)
        return True
    result.history.append(record)
    watched = record.val_error if record.val_error is not None else record.train_error
    if chance is not None:
        state.at_chance[member] = state.at_chance[member] + 1 if watched >= chance else 0
    if callback is not None and callback(member, record) is False:
        result.pruned_at = epoch
        return True
    if chance_patience and state.at_chance[member] >= chance_patience:
        result.diverged = Diverged(f"error stayed at chance ({watched:.2f}) for {state.at_chance[member]} epochs", epoch,
                                   stalled=True)
        return True
    return False


def _select(state: FitState, select: Callable[[int, dict[int, float]], Iterable[int]], epoch: int) -> list[int]:
    """The running members `select` names to stop after `epoch`, shown each one's best validation error so far; marked pruned."""
    best = {m: state.results[m].best for m in state.running}  # without a validation split, the training error
    chosen = set(select(epoch, {m: r.train_error if r.val_error is None else r.val_error for m, r in best.items()}))
    named = [m for m in state.running if m in chosen]
    for member in named:
        state.results[member].pruned_at = epoch
    state.running = [m for m in state.running if m not in chosen]
    return named


def _set_aside(rule: rules.Rule, state: FitState, stopped: list[int], drop: bool) -> None:
    """Freeze the `stopped` members where they stand, or, with `drop`, remove them from the rule."""
    if stopped and drop:
        rule.keep([state.slots.index(m) for m in state.running])
        state.slots = list(state.running)
    elif stopped:
        rule.stop([state.slots.index(m) for m in stopped])


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


def build(config: RunConfig) -> tuple[Data, rules.Rule]:
    """The data and a rule training one member per seed of `config`, on its device (a per-member setting may hold one value per member)."""
    device = resolve_device(config.device)
    rule_class = rules.get(config.rule)
    settings = rules.coerce_settings(config.rule, dict(config.settings))
    data = load(config.dataset, root=config.data_root, val_size=config.val_size, device=device)
    net = build_net(config.arch, config.dataset, data.input_shape, data.n_classes, config.activation, seeds=config.seeds)
    return data, rule_class(net.to(device), **settings)


def train(config: RunConfig, *, callback: Callable[[EpochResult], None] | None = None,
          progress: bool | None = None) -> tuple[FitResult, rules.Rule]:
    """Build data, network and rule from `config` and fit it as a population of one (its single seed).

    The seed draws the initial weights, the rule's state and noise; the data seed (default: the
    seed) the minibatch order. Seeded runs repeat exactly on the CPU. Raises `Diverged` when the run diverged.
    """
    if len(config.seeds) != 1:
        raise UsageError(f"train runs one seed (got {len(config.seeds)}); fit a population with build and fit")
    data, learner = build(config)
    report = None if callback is None else (lambda member, record: callback(record))
    result, = fit(learner, data, config, callback=report, progress=progress)
    if result.diverged is not None:
        raise result.diverged
    return result, learner


def as_dict(record: EpochResult) -> dict[str, Any]:
    """An epoch's numbers as a plain dict (JSON-ready)."""
    return asdict(record)


def summary(result: FitResult, learner: rules.Rule, config: RunConfig, *, seconds: float) -> dict[str, Any]:
    """A run as one JSON-ready dict: what ran, the last epoch's errors, the best epoch, every setting, the history."""
    last = result.history[-1]
    return {"rule": config.rule, "dataset": config.dataset, "arch": config.arch, "activation": config.activation,
            "device": config.device, "epochs": config.epochs, "batch_size": config.batch_size, "seed": config.seeds[0],
            "data_seed": config.minibatch_seed, "train_error": last.train_error, "val_error": last.val_error,
            "test_error": last.test_error, "best_epoch": result.best.epoch, "settings": learner.get_params(),
            "seconds": round(seconds, 3), "history": [as_dict(r) for r in result.history]}
