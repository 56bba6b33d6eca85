"""One run's configuration, typed and frozen: made at the boundary, checked once, carried inward unchanged.

    from bioscale.run_config import RunConfig
    from bioscale.train import train

    result, rule = train(RunConfig(rule="dtp", settings={"schedule": "alternating"}, epochs=5))

The command line (`bioscale train`) and a study's trial (`StudySpec.run_config`) make one;
`bioscale.train.build` builds the data and the rule from it and `bioscale.train.fit` reads its
training fields. A trial stores what it trains with `to_stored` (its `config` attribute: rule,
schedule, data, architecture, epochs, activation, batch size and every rule setting), and
evaluation, `train_command` and resume read that back with `from_stored`; the seeds, the data
seed and the device are stored beside it in the trial's own attributes. This module imports
no torch, so the command line refuses a bad name before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from . import defaults
from .datasets import get as get_dataset
from .errors import UsageError
from .spec import check_count, check_rule_name, known_rules
from .values import CHOICES, check_value


@dataclass(frozen=True)
class RunConfig:
    """One run: the rule and its settings, the data, the network, how long and in what batches, the seeds, the device."""

    rule: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # keyword settings; a per-member one may hold one value per member
    dataset: str = defaults.DATASET
    arch: str = defaults.ARCH  # preset or spec string (bioscale.nets)
    activation: str = defaults.ACTIVATION
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    seeds: tuple[int, ...] = (defaults.SEED,)  # one member per seed: its initial weights, rule state and noise
    data_seed: int | None = None  # the minibatch order every member shares; None: the first seed
    device: str = defaults.DEVICES  # a torch device name, or auto
    data_root: str | None = None
    val_size: float | int | None = None  # None: the dataset's own validation split
    augment: bool = False  # random crops and flips on the device (CIFAR)
    chance_patience: int = defaults.CHANCE_PATIENCE  # epochs at chance before a member counts as stalled (0: never)

    @property
    def minibatch_seed(self) -> int:
        """The seed of the minibatch order: `data_seed`, else the first seed."""
        return self.seeds[0] if self.data_seed is None else self.data_seed

    @property
    def schedule(self) -> str | None:
        """The target-propagation schedule among the settings, else None."""
        return self.settings.get("schedule")

    def checked(self) -> RunConfig:
        """This configuration with every name and number checked without torch (UsageError in one line otherwise)."""
        check_rule_name(self.rule)
        get_dataset(self.dataset)
        if self.activation not in CHOICES["activation"]:
            raise UsageError(f"unknown activation {self.activation!r}; choose one of: {', '.join(CHOICES['activation'])}")
        try:
            for name in ("epochs", "batch_size"):
                check_value(name, getattr(self, name))
        except ValueError as error:
            raise UsageError(str(error)) from None
        for name, low in (("epochs", 1), ("batch_size", 1), ("chance_patience", 0)):
            check_count(name, getattr(self, name), low)
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise UsageError(f"give one or more distinct whole-number seeds (got {list(seeds)})")
        for seed in (*seeds, *([] if self.data_seed is None else [self.data_seed])):
            check_count("seed", seed, None)
        offered = known_rules()[self.rule]
        if self.schedule is not None and self.schedule not in offered:
            raise UsageError(f"rule {self.rule!r} has no schedule {self.schedule!r}; choose one of: {', '.join(offered) or 'none'}")
        return replace(self, seeds=seeds, settings=dict(self.settings))

    def to_stored(self) -> dict[str, Any]:
        """What a trial stores as its `config`: rule, schedule, data, architecture, epochs, activation, batch size, every rule setting."""
        from . import rules

        return {"rule": self.rule, "schedule": self.schedule, "dataset": self.dataset, "arch": self.arch, "epochs": self.epochs,
                "activation": self.activation, "batch_size": self.batch_size, **rules.settings(self.rule), **self.settings}

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], **fields: Any) -> RunConfig:
        """The configuration `to_stored` wrote (or flat values of the same names), with `fields` given or replaced by name.

        `fields` are typically what a trial stores beside its configuration (seeds, data seed,
        device). Every rule setting the values do not name takes the rule's default; names that
        are neither a field nor a setting of the rule are ignored.
        """
        from . import rules

        given = {**{name: stored[name] for name in _STORED if name in stored}, **fields}
        known = rules.settings(given["rule"])
        return cls(**given, settings={**known, **{k: v for k, v in stored.items() if k in known}})

    @classmethod
    def population(cls, members: Sequence[RunConfig]) -> RunConfig:
        """One run training `members` (one seed each) together: a per-member setting as one value per member, all else shared."""
        from . import rules

        first = members[0]
        shared = [replace(m, settings={}, seeds=first.seeds) for m in members]
        if any(other != shared[0] for other in shared[1:]):
            raise ValueError("the members of a population must share their architecture and training arguments")
        per_member = rules.get(first.rule).per_member
        settings: dict[str, Any] = {}
        for name, value in first.settings.items():
            values = [m.settings[name] for m in members]
            if name in per_member:
                settings[name] = values
            elif any(v != value for v in values):
                raise ValueError(f"the members of a population must share {name}")
            else:
                settings[name] = value
        return replace(first, settings=settings, seeds=tuple(s for m in members for s in m.seeds))


# The fields `to_stored` writes under their own names (the rule's settings are written flat beside them).
_STORED = ("rule", "dataset", "arch", "activation", "epochs", "batch_size")
