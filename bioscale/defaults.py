"""Every default in one table, and the names the command line checks before it imports torch.

The command line, the library (`bioscale.train`), the search spaces, the study specification
(`bioscale.spec`) and the workflows read their defaults from here. This module imports nothing heavy (only the storage contract's names),
so `bioscale --help` and the refusal of a bad name stay fast; tests/test_spec.py checks the
static names below against the registries they mirror (samplers, pruners, protocols); the rules
are listed once, in bioscale.catalogue.
"""

from __future__ import annotations

from .contract import TUNE

# Training: what a run uses when nothing says otherwise (the paper's choices where it made one).
ACTIVATION = "tanh"
BATCH_SIZE = 128
EPOCHS = 10
SEED = 0
DATASET = "digits"
ARCH = "fc"
# Epochs a run may sit at chance-level error before it counts as stalled (0: never).
CHANCE_PATIENCE = 5
# The training arguments a tuning space samples beside the rule's own settings, at their defaults.
TRAINING = {"activation": ACTIVATION, "batch_size": BATCH_SIZE}

# A study (bioscale.spec.StudySpec; `bioscale study run`).
STAGE = TUNE
STORAGE = "sqlite:///bioscale.db"
TRIALS = 60  # the paper's budget per rule
SAMPLER = "tpe"
PRUNER = "none"
PROTOCOL = "extended"
POPULATION = 1
WORKERS = 1
DEVICES = "auto"
EVALUATION_SEEDS = (0, 1, 2)
CHECKPOINT_EVERY = 1  # a trial's population saves at the end of every epoch (bioscale.resume)
CHECKPOINT_FOLDER = "bioscale-checkpoints"  # in the working folder, for a database storage (file storages: FILE.checkpoints)
STATUS_INTERVAL = 10.0  # seconds between refreshes of `bioscale study status --watch`

# `bioscale study launch` (bioscale.spec.LaunchSpec): one job array, one worker per job.
LAUNCH = {"executor": "slurm", "jobs": 1, "time": 240, "cpus_per_job": 4,
          "signal_delay_s": 90, "max_timeouts": 3, "log_dir": "bioscale-jobs"}
SHARED_PATHS_ENV = "BIOSCALE_SHARED_PATHS"  # folders every node mounts, os.pathsep-separated (a journal file must lie in one)

# A campaign (`bioscale campaign`): the paper's random search over its Table 4, 30 epochs a trial.
CAMPAIGN = {"trials": TRIALS, "epochs": 30, "sampler": "random", "protocol": "paper", "seeds": EVALUATION_SEEDS,
            "formats": ("png", "pdf")}
# The energy-based rules settle ~30 times a step (EP 9.6x, CHL 4.1x BP's step on fc; 12-15x and 5x on lc and conv):
# in the demo they run on fc only, with at most this many trials and epochs, so the demo's time stays near what it was.
# The report reads each study's own trials and epochs; the demo's summary names the reduction.
DEMO_REDUCED = {"rules": ("ep", "chl"), "archs": ("fc",), "trials": 12, "epochs": 4}

# The demo (`bioscale demo`): the paper's search space at a small budget on digits, under a declared design:
# scrambled Sobol draws, each study its own (a tanh/ReLU pair shares them), and successive halving inside one
# population per study (24 configurations for 1 epoch, the best 8 to 3, the best 2 to 10; the default-settings
# trial trains all 10). Digits runs only ~9 minibatches an epoch, so a slow start is no sign of divergence
# there: the demo never stops a run for sitting at chance (NaN losses still end it).
DEMO = {"dataset": "digits", "archs": ("fc", "lc"), "trials": 24, "epochs": 10, "seeds": (0, 1), "chance_patience": 0,
        "activations": ("tanh", "relu"), "population": 25, "sampler": "sobol", "pruner": "halving", "protocol": "paper",
        "out": "bioscale-demo", "formats": ("png",)}  # PDFs on request: `bioscale analyze --format png,pdf`

# Names known without importing torch or Optuna; each mirrors a registry (checked by a test). The rules and their
# schedules are bioscale.catalogue's.
PROTOCOLS = ("paper", "extended")
EXPORT_FORMATS = ("csv", "deepcave")  # `bioscale export --format` (bioscale.analysis.export)
SAMPLERS = ("tpe", "random", "sobol")  # sobol: scrambled Sobol points, random search with better coverage
# halving and hyperband run successive halving inside each population (bioscale.study._design); ETA defaults to 3
PRUNERS = ("none", "median", "halving[:ETA]", "hyperband[:ETA]", "best-after[:EPOCH]")  # EPOCH defaults to 10
FIDELITY_SCHEMES = ("halving", "hyperband")
HALVING_FACTOR = 3
