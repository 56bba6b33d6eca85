"""Open an Optuna storage read-mostly and select the bioscale studies to analyse."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from bioscale import contract
from bioscale.contract import Evaluation, StudyInfo
from bioscale.errors import UsageError, first_line
from bioscale.storages import open_existing, parse_storage

DEFAULT_STAGE = contract.TUNE


def display_name(storage: str | BaseStorage | None) -> str:
    """The storage address for messages and the report, any password hidden."""
    if isinstance(storage, BaseStorage):
        return type(storage).__name__
    try:
        return parse_storage(storage.strip() if storage else None, must_exist=True).display()
    except UsageError:
        return str(storage)


def read_storage(storage: str | BaseStorage | None) -> BaseStorage:
    """An existing Optuna storage: sqlite:///FILE.db, postgresql://..., journal:///FILE.log, FILE.db or FILE.log; never creates one.

    None means the default storage (sqlite:///bioscale.db).
    """
    if isinstance(storage, BaseStorage):
        return storage
    return open_existing(storage.strip() if storage else None)


@dataclass
class StudyRecord:
    """One study with its trials and its user attributes (`bioscale.contract.StudyInfo`)."""

    study: optuna.Study
    trials: list[FrozenTrial]
    info: StudyInfo = field(default_factory=StudyInfo)
    skipped: str | None = None

    @property
    def name(self) -> str:
        """The study name."""
        return self.study.study_name

    @property
    def rule(self) -> str:
        """The learning rule; a study bioscale did not write goes by its own name."""
        return self.info.rule or self.label

    @property
    def label(self) -> str:
        """The rule plus its schedule, e.g. dtp-alternating; a study bioscale did not write goes by its own name."""
        return self.info.label or self.info.rule or self.name

    @property
    def dataset(self) -> str:
        """The dataset name ("" for a study bioscale did not write)."""
        return self.info.dataset or ""

    @property
    def arch(self) -> str:
        """The architecture preset or spec string; a study bioscale did not write is its own group, by name."""
        return self.info.arch or ("" if self.info.dataset else self.name)

    @property
    def schedule(self) -> str | None:
        """The inverse-training schedule of target-propagation rules, else None."""
        return self.info.schedule

    @property
    def epochs(self) -> int | None:
        """The epoch budget of each trial, when recorded."""
        return self.info.epochs

    @property
    def evaluation(self) -> Evaluation | None:
        """The `evaluation` record written by `bioscale study evaluate`, if any."""
        return self.info.evaluation

    @property
    def group(self) -> tuple[str, str]:
        """(dataset, arch): the rules that are compared with each other."""
        return (self.dataset, self.arch)

    @property
    def complete(self) -> list[FrozenTrial]:
        """COMPLETE trials with a finite objective value."""
        return contract.complete_trials(self.trials)

    @property
    def finished(self) -> list[FrozenTrial]:
        """Finished trials (`bioscale.contract.is_finished`): a lost worker's re-queued trial is not one."""
        return contract.finished_trials(self.trials)


def group_title(group: tuple[str, str]) -> str:
    """`mnist / fc` for a group of bioscale studies; a study bioscale did not write shows its own name."""
    return " / ".join(part for part in group if part)


def select_studies(storage: BaseStorage, patterns: Sequence[str] | None, url: str = "the storage") -> list[StudyRecord]:
    """Studies whose names match any fnmatch pattern, or by default every study with stage 'tune'."""
    try:
        summaries = storage.get_all_studies()
    except Exception as error:
        raise UsageError(f"cannot list the studies in {url}: {first_line(error)}") from None
    if not summaries:
        raise UsageError(f"{url} holds no studies; run `bioscale study` first or pass the storage the studies wrote")
    names = sorted(s.study_name for s in summaries)
    if patterns:
        chosen = [s for s in summaries if any(s.study_name == p or fnmatch.fnmatchcase(s.study_name, p) for p in patterns)]
        if not chosen:
            raise UsageError(f"no study in {url} matches {' '.join(patterns)}; studies there: {names_line(names, 12)}")
    else:
        chosen = [s for s in summaries if StudyInfo.from_attrs(s.user_attrs).stage == DEFAULT_STAGE]
        if not chosen:
            raise UsageError(f"no study in {url} has stage {DEFAULT_STAGE!r}; "
                             f"pass --study PATTERN to pick some of: {names_line(names, 12)}")
    records = []
    for summary in sorted(chosen, key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        record = StudyRecord(study=study, trials=study.get_trials(deepcopy=False), info=StudyInfo.from_attrs(summary.user_attrs))
        if len(summary.directions) != 1:
            record.skipped = "multi-objective study (bioscale studies minimise one validation error)"
        elif summary.directions[0] != StudyDirection.MINIMIZE:
            record.skipped = "maximising study (bioscale studies minimise validation error)"
        records.append(record)
    return records


def select_across(storages: Sequence[tuple[str, BaseStorage]], patterns: Sequence[str] | None) -> list[StudyRecord]:
    """`select_studies` over several (url, storage) pairs; a storage none of whose studies match is passed over, a study name two storages hold is refused."""
    if len(storages) == 1:
        url, storage = storages[0]
        return select_studies(storage, patterns, url=url)
    records: list[StudyRecord] = []
    misses: list[str] = []
    where: dict[str, str] = {}
    for url, storage in storages:
        try:
            found = select_studies(storage, patterns, url=url)
        except UsageError as error:
            misses.append(str(error))
            continue
        for record in found:
            if record.name in where:
                raise UsageError(f"study {record.name!r} is in both {where[record.name]} and {url}; "
                                 f"pass --study patterns that pick it from one storage only")
            where[record.name] = url
        records += found
    if not records:
        raise UsageError("; ".join(misses))
    return records


def names_line(names: Sequence[str], limit: int = 8) -> str:
    """'a, b, c' or 'a, b, ... (12 in all)'."""
    names = list(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
