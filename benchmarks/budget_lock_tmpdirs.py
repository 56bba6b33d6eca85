"""Is the budget exact when the workers of a journal-file study have different temporary folders (as cluster jobs do)?

Run: python benchmarks/budget_lock_tmpdirs.py [--runs 10] [--executor slurm|local]
Each run launches a fresh study with `--trials 1 --jobs 2`, every job's setup giving it a TMPDIR of
its own (`export TMPDIR=$(mktemp -d)`), waits for both jobs, and counts the finished trials.
Prints one row per run and how many runs finished exactly one trial. Slurm is used when sbatch is
on PATH (e.g. after ../shared/scripts/start-one-node-slurm), else local processes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import optuna

from bioscale.contract import is_finished
from bioscale.spec import LaunchSpec, StudySpec
from bioscale.storages import open_storage
from bioscale.study.launch import launch_study


def one_run(folder: Path, executor: str) -> tuple[int, int, float]:
    """(finished trials, trials made, seconds) of one launch of a 1-trial study over 2 jobs."""
    url = f"journal:///{folder / 's.log'}"
    spec = StudySpec(rule="bp", trials=1, epochs=1, storage=url, study_name="race", overrides={"batch_size": "64"},
                     chance_patience=0, sampler="random")
    launch = LaunchSpec(executor=executor, jobs=2, cpus_per_job=1, gpus_per_job=0, time=10, log_dir=str(folder / "logs"),
                        setup=("export TMPDIR=$(mktemp -d)",), shared_paths=(str(folder),))
    start = time.perf_counter()
    launch_study(spec, launch).wait()
    trials = optuna.load_study(study_name="race", storage=open_storage(url)).get_trials()
    return sum(is_finished(t) for t in trials), len(trials), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--executor", choices=("slurm", "local"), default="slurm" if shutil.which("sbatch") else "local")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"executor {args.executor}: --trials 1 --jobs 2, each job its own TMPDIR\n")
    print(f"{'run':>3}  {'finished':>8}  {'trials':>6}  {'seconds':>7}")
    exact = 0
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
            finished, made, seconds = one_run(Path(folder), args.executor)
        exact += finished == 1
        print(f"{run:>3}  {finished:>8}  {made:>6}  {seconds:>7.1f}", flush=True)
    print(f"\nexactly 1 trial finished in {exact} of {args.runs} runs")


if __name__ == "__main__":
    main()
