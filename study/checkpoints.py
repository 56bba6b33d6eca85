"""Where a study's trials keep their checkpoints, and which checkpoint a re-run trial resumes from.

A population's checkpoint is one file, `DIR/STUDY/trials-A-B-C.pt`, named by the *root* numbers
of its trials: a trial's own number, or, for a trial re-queued after its worker died or was
preempted, the number of the first trial of its retry chain (Optuna's `retry_history`). A
re-run of the same trials therefore finds the file its dead predecessor wrote. DIR is the
study's `checkpoint_dir`; by default a folder beside a file storage (`FILE.db.checkpoints`),
else `bioscale-checkpoints` in the working folder (`bioscale study launch` puts it in its log
folder, which every job reaches). A finished population's file is removed unless
`keep_checkpoints` says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from bioscale import defaults, resume
from bioscale.storages import StorageSpec

DEFAULT_FOLDER = defaults.CHECKPOINT_FOLDER


def default_directory(storage: StorageSpec) -> Path:
    """The checkpoint folder of a study with no `checkpoint_dir`: beside a file storage, else ./bioscale-checkpoints."""
    if storage.path:
        path = Path(storage.path)
        return path.with_name(path.name + ".checkpoints")
    return Path.cwd() / DEFAULT_FOLDER


def directory(checkpoint_dir: str | None, storage: StorageSpec) -> Path:
    """The absolute checkpoint folder a study's workers share."""
    return Path(checkpoint_dir).expanduser().resolve() if checkpoint_dir else default_directory(storage)


def root_number(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The number of the first trial of `trial`'s retry chain (its own number when it is no retry)."""
    frozen = trial if isinstance(trial, optuna.trial.FrozenTrial) else trial.study._storage.get_trial(trial._trial_id)  # noqa: SLF001
    history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    return history[0] if history else frozen.number


def population_path(folder: Path, study_name: str, roots: Sequence[int]) -> Path:
    """The checkpoint file of a population of trials with these root numbers."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "_", study_name)
    return folder / safe / f"trials-{'-'.join(str(r) for r in sorted(roots))}.pt"


def remove(path: Path) -> None:
    """Remove a finished population's checkpoint, any other that holds one of its trials (a population re-run in
    another grouping cannot resume from it), and the folders left empty."""
    roots = _roots(path)
    for other in path.parent.glob("trials-*.pt"):
        if other != path and roots & _roots(other):
            resume.remove(other)
    resume.remove(path)
    for folder in (path.parent, path.parent.parent):  # the study's folder, then the checkpoint folder, when empty
        try:
            folder.rmdir()
        except OSError:
            break


def _roots(path: Path) -> set[int]:
    """The root trial numbers a checkpoint file's name holds."""
    numbers = path.stem.removeprefix("trials-").split("-")
    return {int(n) for n in numbers if n.isdigit()}
