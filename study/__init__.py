"""The Optuna study driver: stages, storages, workers.

- `run_study(stage, rule, dataset, arch, trials, ...)`: the architecture stage (search one
  family's architecture with a reference rule; the winner is stored as `winner`) or the tune
  stage (search one rule's tuning space on a fixed architecture).
- `evaluate_study(storage, study_name, seeds)`: re-train the best configuration with several
  seeds and record the test errors (at the best-validation epoch and at the last).
- `best`, `list_studies`: read studies back. `serve_dashboard`, `dashboard_command`.

What is written where is fixed by `bioscale.contract` (docs/storage-contract.md).
"""

from ._dashboard import dashboard_command, serve_dashboard
from ._driver import run_study
from ._prepare import record_winner
from ._plan import STAGES, Plan, label, stage_defaults, study_name
from ._results import best, best_of, evaluate_study, list_studies, resolve_study_name, study_summary, train_command
from ._samplers import PRUNERS, SAMPLERS, TPE_SETTINGS, BestAfterPruner, TrialSeededRandomSampler, make_pruner, make_sampler
from bioscale.storages import DEFAULT_STORAGE, StorageSpec, open_existing, open_storage, parse_storage

__all__ = ["BestAfterPruner", "DEFAULT_STORAGE", "PRUNERS", "Plan", "SAMPLERS", "STAGES", "StorageSpec",
           "TPE_SETTINGS", "TrialSeededRandomSampler", "best", "best_of",
           "dashboard_command", "evaluate_study", "label", "list_studies", "make_pruner",
           "make_sampler", "open_existing", "open_storage", "parse_storage", "record_winner", "resolve_study_name", "run_study", "stage_defaults",
           "serve_dashboard", "study_name", "study_summary", "train_command"]
