"""The Optuna study driver: stages, storages, workers.

- `run_study(StudySpec(...))`: the architecture stage (search one family's architecture with a
  reference rule; the winner is stored as `winner`) or the tune stage (search one rule's tuning
  space on a fixed architecture). `StudySpec` (bioscale.spec) is the one object a study is.
- `evaluate_study(storage, study_name, seeds)`: re-train the best configuration with several
  seeds and record the test errors (at the best-validation epoch and at the last).
- `best`, `list_studies`: read studies back. `serve_dashboard`, `dashboard_command`.
- `launch.launch_study(spec, LaunchSpec(...))`: create a study and submit its workers as one
  submitit job array (Slurm or local processes); `status.study_status(storage, pattern)`: where
  studies stand; `checkpoints`: where trials save, so that a lost or preempted trial resumes;
  `campaign_jobs`: a campaign's studies and evaluations as jobs.

What is written where is fixed by `bioscale.contract` (docs/storage-contract.md).
"""

from ._dashboard import dashboard_command, serve_dashboard
from ._driver import run_study
from ._prepare import record_winner
from ._plan import Plan, StudySpec, label, study_name
from ._prepare import prepare
from bioscale.contract import STAGES
from bioscale.spec import CampaignSpec
from ._results import best, best_of, evaluate_study, list_studies, resolve_study_name, study_summary, train_command
from ._samplers import PRUNERS, SAMPLERS, TPE_SETTINGS, BestAfterPruner, TrialSeededRandomSampler, make_pruner, make_sampler
from bioscale.storages import DEFAULT_STORAGE, StorageSpec, open_existing, open_storage, parse_storage

__all__ = ["BestAfterPruner", "CampaignSpec", "DEFAULT_STORAGE", "PRUNERS", "Plan", "StudySpec", "prepare", "SAMPLERS", "STAGES", "StorageSpec",
           "TPE_SETTINGS", "TrialSeededRandomSampler", "best", "best_of",
           "dashboard_command", "evaluate_study", "label", "list_studies", "make_pruner",
           "make_sampler", "open_existing", "open_storage", "parse_storage", "record_winner", "resolve_study_name", "run_study",
           "serve_dashboard", "study_name", "study_summary", "train_command"]
