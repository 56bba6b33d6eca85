"""A study as one object: what the command line parses into and a notebook builds, carried inward unchanged.

    from bioscale.spec import StudySpec
    from bioscale.study import run_study

    spec = StudySpec(rule="dtp-parallel", dataset="digits", arch="fc", trials=20, epochs=5,
                     storage="sqlite:///studies.db", overrides={"activation": "relu"})
    study = run_study(spec)

`StudySpec.checked()` checks every name and number that can be checked without torch (rule,
schedule, dataset, stage, sampler, pruner, protocol, activation, counts) and returns the spec
with the rule label split into rule and schedule; `bioscale.study.prepare` checks the rest (the
search space, the storage) before anything is created. A campaign is a list of specs plus its
own few settings (`CampaignSpec`). Both are plain dataclasses of JSON values: `to_dict` and
`from_dict` round-trip them, and a new field is one line with its default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from . import catalogue, defaults
from .contract import ARCHITECTURE, STAGES, TUNE
from .datasets import get as get_dataset
from .errors import UsageError
from .storage_url import read_address
from .values import check_value

if TYPE_CHECKING:
    from .run_config import RunConfig


@dataclass(frozen=True)
class StudySpec:
    """One study: what to train and search, for how long, where to store it, and on what to run it."""

    rule: str | None = None  # a rule, or a label such as dtp-parallel that also names the schedule
    dataset: str = defaults.DATASET
    arch: str = defaults.ARCH  # preset, spec string, @STUDY (tune stage); the family (architecture stage)
    stage: str = defaults.STAGE
    trials: int = defaults.TRIALS
    epochs: int = defaults.EPOCHS
    schedule: str | None = None  # target-propagation rules; default: the rule's own
    protocol: str = defaults.PROTOCOL
    activation: str | None = None  # hold the activation; the study's name ends in :ACTIVATION
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set: a value fixes, low:high or a,b narrows
    sampler: str = defaults.SAMPLER
    pruner: str = defaults.PRUNER
    seed: int = defaults.SEED
    chance_patience: int = defaults.CHANCE_PATIENCE
    default_trial: bool = False  # also train the rule's default settings once, outside the budget
    shared_draws: bool = False  # sample the configurations every rule samples (its draw key leaves the rule out)
    storage: str | None = None  # an Optuna storage URL; None: bioscale's default
    study_name: str | None = None  # None: STAGE:DATASET:ARCH:LABEL[:ACTIVATION]
    data_root: str | None = None
    val_size: float | int | None = None
    # How to run it (not part of the study's identity: a rerun may change them).
    workers: int = defaults.WORKERS
    devices: str | tuple[str, ...] = defaults.DEVICES
    population: int = defaults.POPULATION
    checkpoint_every: int = defaults.CHECKPOINT_EVERY  # save each population every N epochs (0: only when preempted)
    checkpoint_dir: str | None = None  # None: beside a file storage (FILE.checkpoints), else ./bioscale-checkpoints
    keep_checkpoints: bool = False  # keep finished trials' checkpoints

    @property
    def label(self) -> str:
        """The study's label: the rule, plus -schedule for target-propagation rules (after `checked`)."""
        return label(self.rule or "", self.schedule)

    def checked(self) -> StudySpec:
        """This spec with every name and number checked (UsageError otherwise) and the rule label split into rule and schedule."""
        if self.stage not in STAGES:
            raise UsageError(f"unknown stage {self.stage!r}; choose one of: {', '.join(STAGES)}")
        rule, schedule = self.rule, self.schedule
        if rule is None:
            if self.stage != ARCHITECTURE:
                raise UsageError("the tune stage needs a rule, e.g. --rule fa")
            rule, schedule = "dtp", schedule or "alternating"  # the paper's reference rule
        rule, from_label = split_rule_label(rule)
        overrides = dict(self.overrides)
        given = [s for s in (schedule, from_label, overrides.pop("schedule", None)) if s]
        if len(set(given)) > 1:
            raise UsageError(f"conflicting schedules: {', '.join(map(str, given))}")
        offered = known_rules()[rule]
        if offered:
            schedule = given[0] if given else offered[0]
            if schedule not in offered:
                raise UsageError(f"rule {rule!r} has no schedule {schedule!r}; choose one of: {', '.join(offered)}")
        elif given:
            raise UsageError(f"rule {rule!r} has no schedule (only target-propagation rules do); drop --schedule")
        else:
            schedule = None
        get_dataset(self.dataset)
        for name in ("epochs", "trials", "workers", "population"):
            check_count(name, getattr(self, name), 1)
        check_count("chance_patience", self.chance_patience, 0)
        check_count("checkpoint_every", self.checkpoint_every, 0)
        check_count("seed", self.seed, None)
        if self.sampler not in defaults.SAMPLERS:
            raise UsageError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(defaults.SAMPLERS)}")
        check_pruner_name(self.pruner)
        fidelity = fidelity_of(self.pruner)
        if fidelity is not None and self.population < fidelity[1]:
            raise UsageError(f"--pruner {self.pruner} halves the members of a population: give --population of at least "
                             f"{fidelity[1]} (e.g. --population {self.trials + 1 if self.default_trial else self.trials})")
        if self.protocol not in defaults.PROTOCOLS:
            raise UsageError(f"unknown protocol {self.protocol!r}; choose one of: {', '.join(defaults.PROTOCOLS)}")
        if self.activation is not None:
            try:
                check_value("activation", self.activation)
            except ValueError as error:
                raise UsageError(str(error)) from None
        devices = self.devices if isinstance(self.devices, str) else tuple(self.devices)
        return replace(self, rule=rule, schedule=schedule, overrides=self.overrides, devices=devices)

    def run_config(self, arch: str, values: Mapping[str, Any], seeds: Sequence[int], device: str) -> RunConfig:
        """One trial's run: this study's rule, data, epochs, data seed and patience, with `arch` and the trial's `values`.

        `values` are the trial's fixed and sampled training arguments and rule settings (other names are ignored).
        """
        from .run_config import RunConfig

        return RunConfig.from_stored(values, rule=self.rule, dataset=self.dataset, arch=arch, epochs=self.epochs, seeds=tuple(seeds),
                                     data_seed=self.seed, device=device, data_root=self.data_root, val_size=self.val_size,
                                     chance_patience=self.chance_patience)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values (`from_dict` reads it back)."""
        out = asdict(self)
        out["overrides"] = dict(self.overrides)
        out["devices"] = self.devices if isinstance(self.devices, str) else list(self.devices)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StudySpec:
        """A spec from `to_dict`'s output; unknown keys are a UsageError, missing ones take their defaults."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown study settings: {', '.join(sorted(unknown))}")
        values = dict(values)
        if isinstance(values.get("devices"), list):
            values["devices"] = tuple(values["devices"])
        return cls(**values)


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign: its studies (one spec each, sharing one storage) and how to evaluate, run and report them."""

    studies: tuple[StudySpec, ...]
    seeds: tuple[int, ...] = defaults.EVALUATION_SEEDS  # evaluation seeds of each best configuration
    eval_epochs: int | None = None  # default: each study's epochs
    side_by_side: int = 1  # processes each taking whole studies (one thread each); 1: one study after another
    out: str | None = None  # folder for figures and report
    formats: tuple[str, ...] = defaults.CAMPAIGN["formats"]

    def checked(self) -> CampaignSpec:
        """This campaign with every study checked; UsageError when they do not share one storage or a setting is bad."""
        studies = tuple(s.checked() for s in self.studies)
        if len({s.storage for s in studies}) > 1:
            raise UsageError("the studies of a campaign share one storage")
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
            raise UsageError("give one or more distinct whole-number seeds, e.g. --seeds 0,1,2")
        check_count("side_by_side", self.side_by_side, 1)
        if any(s.shared_draws for s in studies) and len({s.label for s in studies}) < 2:
            raise UsageError("--shared-draws makes rules share their configurations: give two or more rules, e.g. --rules bp,fa")
        return replace(self, studies=studies, seeds=seeds, formats=tuple(self.formats))

    @property
    def storage(self) -> str | None:
        """The storage every study shares."""
        return self.studies[0].storage if self.studies else None

    def to_dict(self) -> dict[str, Any]:
        """The campaign as JSON-ready values."""
        return {"studies": [s.to_dict() for s in self.studies], "seeds": list(self.seeds), "eval_epochs": self.eval_epochs,
                "side_by_side": self.side_by_side, "out": self.out, "formats": list(self.formats)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CampaignSpec:
        """A campaign from `to_dict`'s output."""
        values = dict(values)
        values["studies"] = tuple(StudySpec.from_dict(s) for s in values.get("studies", ()))
        for key in ("seeds", "formats"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def campaign_studies(template: StudySpec, archs: tuple[str, ...] | list[str], rules: list[str] | None = None,
                     activations: list[str] | tuple[str, ...] | None = None) -> tuple[StudySpec, ...]:
    """Every tuning study of a campaign: `template` for each rule (TP-family rules in both schedules), architecture and activation.

    With `activations` (e.g. tanh and relu), each rule gets one study per activation, each tuned
    on its own with the same budget: the tanh-vs-ReLU experiment. Every study also trains its
    rule's default settings once (how much tuning buys).
    """
    chosen = list(rules) if rules else sorted(known_rules())
    for name in chosen:
        check_rule_name(name)
    for activation in activations or ():
        try:
            check_value("activation", activation)
        except ValueError as error:
            raise UsageError(f"bad --activations: {error}") from None
    return tuple(replace(template, stage=TUNE, rule=name, schedule=schedule, arch=arch, activation=activation,
                         default_trial=True)
                 for arch in archs for name in chosen
                 for schedule in (tuple(sorted(known_rules()[name])) or (None,))
                 for activation in (activations or (None,)))


def label(rule: str, schedule: str | None = None) -> str:
    """A rule's label under a schedule, `dtp-alternating`; a rule without schedules is labelled by its name (also `rules.label`)."""
    return f"{rule}-{schedule}" if schedule else rule


def study_name(stage: str, dataset: str, arch: str, label: str, activation: str | None = None) -> str:
    """The default study name, `{stage}:{dataset}:{arch}:{label}`, plus `:{activation}` when one is chosen (nothing parses it back)."""
    return f"{stage}:{dataset}:{arch}:{label}" + (f":{activation}" if activation else "")


def known_rules() -> dict[str, tuple[str, ...]]:
    """Every rule with the schedules it offers (its default first), from bioscale.catalogue: known without importing torch."""
    return catalogue.schedules()


def check_rule_name(name: str) -> str:
    """`name` when it is a registered rule; else the UsageError that lists every rule."""
    known = known_rules()
    if name not in known:
        raise UsageError(f"unknown rule {name!r}; choose one of: {', '.join(sorted(known))}")
    return name


def split_rule_label(rule: str) -> tuple[str, str | None]:
    """`dtp-alternating` -> ('dtp', 'alternating') when `dtp` is a rule with that schedule; else (rule, None)."""
    known = known_rules()
    if rule in known:
        return rule, None
    base, _, schedule = rule.rpartition("-")
    if base in known and schedule in known[base]:
        return base, schedule
    return check_rule_name(rule), None


def check_pruner_name(spec: str) -> None:
    """UsageError for a pruner name bioscale does not know, a malformed best-after epoch or a halving factor below 2."""
    name, _, epoch = spec.partition(":")
    known = {p.partition("[")[0] for p in defaults.PRUNERS}
    if name not in known or (epoch and name not in ("best-after", *defaults.FIDELITY_SCHEMES)):
        raise UsageError(f"unknown pruner {spec!r}; choose one of: {', '.join(defaults.PRUNERS)}")
    if name == "best-after" and epoch and (not epoch.isdigit() or int(epoch) < 1):
        raise UsageError(f"bad best-after epoch {epoch!r}: give a whole number >= 1, e.g. best-after:10")
    fidelity_of(spec)


def fidelity_of(pruner: str) -> tuple[str, int] | None:
    """(scheme, halving factor) of a `halving[:ETA]` or `hyperband[:ETA]` pruner; None for any other pruner."""
    name, _, argument = pruner.partition(":")
    if name not in defaults.FIDELITY_SCHEMES:
        return None
    eta = int(argument) if argument.isdigit() else 0 if argument else defaults.HALVING_FACTOR
    if eta < 2:
        raise UsageError(f"--pruner {pruner}: the halving factor must be a whole number of at least 2, e.g. {name}:3")
    return name, eta


def check_count(name: str, value: object, low: int | None) -> None:
    """Refuse, as a UsageError, a value that is not a whole number at or above `low` (None: any)."""
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise UsageError(f"{name} must be a whole number" + (f" >= {low}" if low is not None else "") + f" (got {value!r})")


@dataclass(frozen=True)
class SlurmOptions:
    """Slurm's own options of a launch (`LaunchSpec.slurm`); other executors ignore them.

    `options` pass any other sbatch option through (KEY=VALUE); `max_parallel` throttles the array.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mem_gb: float | None = None
    max_parallel: int | None = None  # array throttle: at most this many jobs at once
    options: tuple[str, ...] = ()  # KEY=VALUE, passed to sbatch as --KEY=VALUE

    def checked(self) -> SlurmOptions:
        """These options with every value checked (UsageError in one line otherwise)."""
        if self.max_parallel is not None:
            check_count("max_parallel", self.max_parallel, 1)
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise UsageError(f"--mem-gb must be positive (got {self.mem_gb!r})")
        self.sbatch_options()
        return replace(self, options=tuple(self.options))

    def sbatch_options(self) -> dict[str, str]:
        """`options` as {key: value}; a malformed one is a UsageError."""
        out = {}
        for option in self.options:
            key, sep, value = option.partition("=")
            key = key.strip().lstrip("-")
            if not sep or not key or not value.strip() or any(c.isspace() for c in key):
                raise UsageError(f"malformed --slurm-option {option!r}: write KEY=VALUE, e.g. --slurm-option constraint=a100")
            out[key] = value.strip()
        return out


@dataclass(frozen=True)
class LaunchSpec:
    """How `bioscale study launch` runs a study's workers: one job array through an executor (`bioscale.executors`), one worker per job.

    `time` is each job's wall time in minutes; `setup` lines run before the worker (module loads,
    environment activation); `shared_paths` are folders every node mounts (a journal storage must
    lie in one; `$BIOSCALE_SHARED_PATHS` adds more); `slurm` holds Slurm's own options.
    `checked(storage)` refuses bad input in one line.
    """

    executor: str = defaults.LAUNCH["executor"]
    jobs: int = defaults.LAUNCH["jobs"]
    time: float = defaults.LAUNCH["time"]
    gpus_per_job: int | None = None  # None: the executor's default (1 on Slurm, 0 on this machine)
    cpus_per_job: int = defaults.LAUNCH["cpus_per_job"]
    setup: tuple[str, ...] = ()
    log_dir: str = defaults.LAUNCH["log_dir"]
    signal_delay_s: int = defaults.LAUNCH["signal_delay_s"]
    max_timeouts: int = defaults.LAUNCH["max_timeouts"]  # requeues after a timeout per job (preemptions are not counted)
    shared_paths: tuple[str, ...] = ()
    dry_run: bool = False
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def checked(self, storage: str | None) -> LaunchSpec:
        """This launch with every value checked against the study's `storage` (UsageError in one line otherwise)."""
        from .executors import get as get_executor

        executor = get_executor(self.executor)
        check_count("jobs", self.jobs, 1)
        if isinstance(self.time, bool) or not isinstance(self.time, (int, float)) or not self.time > 0:
            raise UsageError(f"--time is each job's wall time in minutes and must be positive (got {self.time!r})")
        if self.gpus_per_job is not None:
            check_count("gpus_per_job", self.gpus_per_job, 0)
        check_count("cpus_per_job", self.cpus_per_job, 1)
        check_count("signal_delay_s", self.signal_delay_s, 1)
        check_count("max_timeouts", self.max_timeouts, 0)
        slurm = self.slurm.checked()
        kind, path = storage_kind(storage)
        if not executor.on_this_machine:
            if kind == "sqlite":
                raise UsageError("SQLite cannot be shared by the nodes of a cluster: give --storage postgresql://USER:PASSWORD@HOST/DB "
                                 "(or a journal file on a shared file system with --shared-path)")
            if kind == "journal" and not self.under_shared_path(path):
                raise UsageError(f"journal file {path} is not under a shared path: mark the shared file system it lies on with "
                                 f"--shared-path DIR (or ${defaults.SHARED_PATHS_ENV}), or use PostgreSQL")
        return replace(self, setup=tuple(self.setup), shared_paths=tuple(self.shared_paths), slurm=slurm)

    def gpus(self) -> int:
        """GPUs per job: as given, else the executor's default (1 on Slurm, 0 on this machine)."""
        from .executors import get as get_executor

        return self.gpus_per_job if self.gpus_per_job is not None else get_executor(self.executor).gpus_per_job

    def log_path(self) -> Path:
        """The jobs' log folder, absolute."""
        return Path(self.log_dir).expanduser().resolve()

    def under_shared_path(self, path: str) -> bool:
        """Whether `path` lies in one of the shared folders (`shared_paths` and $BIOSCALE_SHARED_PATHS)."""
        import os

        marked = [*self.shared_paths, *filter(None, os.environ.get(defaults.SHARED_PATHS_ENV, "").split(os.pathsep))]
        target = Path(path).expanduser().resolve()
        return any(target.is_relative_to(Path(p).expanduser().resolve()) for p in marked)


def storage_kind(storage: str | None) -> tuple[str, str | None]:
    """('sqlite' | 'journal' | 'rdb', the file for file storages) of a storage URL, without opening it (`bioscale.storage_url`)."""
    address = read_address(storage)
    return address.kind, address.path
