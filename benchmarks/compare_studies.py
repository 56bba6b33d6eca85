"""Before/after check for refactors: run tiny studies and a tiny campaign through the CLI, dump every number to JSON.

Run it with one checkout's interpreter and again with another's, then compare the two files
(`cmp` or `diff`): a refactor that must not move numbers leaves them identical. It goes through
the `bioscale` command line only (stable across refactors), on the CPU, one worker, one thread.

    python benchmarks/compare_studies.py --out before.json     # in the old checkout
    python benchmarks/compare_studies.py --out after.json      # in the new one
    diff before.json after.json && echo identical

What is dumped: every study's user attributes and every trial's number, state, value, params,
intermediate values and user attributes, minus what depends on the machine or the clock
(seconds, worker, device name, versions, the evaluation's device).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (extra CLI arguments) per tiny study; digits, 2 epochs, 3 trials each.
STUDIES = [
    ["--rule", "bp"],
    ["--rule", "fa", "--population", "3"],
    ["--rule", "dtp", "--schedule", "alternating", "--default-trial"],
    ["--rule", "sdtp", "--schedule", "parallel", "--protocol", "paper", "--population", "2"],
    ["--rule", "dfa", "--sampler", "random", "--activation", "relu"],
]
CAMPAIGN = ["--dataset", "digits", "--arch", "fc", "--rules", "bp,dtp", "--trials", "2", "--epochs", "2", "--seeds", "0,1",
            "--population", "2", "--format", "png"]
# Attributes that depend on the clock or the machine, not on the numbers.
VOLATILE = {"seconds", "worker", "device_name", "versions", "bioscale_version"}


def bioscale(*args: str, cwd: Path) -> None:
    """Run one `bioscale` command in a fresh interpreter (one thread, CPU); stop on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "bioscale.cli", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")


def clean(value):
    """Drop volatile keys at every depth."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if k not in VOLATILE and not (k == "device" and isinstance(v, str))}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def dump(storage: str) -> dict:
    """Every study of `storage`: its attributes and trials, minus volatile values."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    for summary in sorted(optuna.get_all_study_summaries(storage, include_best_trial=False), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = {
            "attrs": clean(dict(study.user_attrs)),
            "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                        "attrs": clean(dict(t.user_attrs))} for t in study.get_trials(deepcopy=False)]}
    return out


def main() -> None:
    """Run the studies and the campaign in a temporary folder; write the dump to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        studies = f"sqlite:///{root / 'studies.db'}"
        for extra in STUDIES:
            bioscale("study", "run", "--dataset", "digits", "--trials", "3", "--epochs", "2", "--devices", "cpu",
                     "--storage", studies, "--quiet", *extra, cwd=root)
        bioscale("study", "evaluate", "--storage", studies, "--study-name", "tune:digits:fc:bp", "--seeds", "0,1",
                 "--device", "cpu", "--quiet", cwd=root)
        campaign = f"sqlite:///{root / 'campaign.db'}"
        bioscale("campaign", *CAMPAIGN, "--storage", campaign, "--devices", "cpu", "--out", str(root / "report"), "--quiet",
                 cwd=root)
        result = {"studies": dump(studies), "campaign": dump(campaign)}
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    trials = sum(len(s["trials"]) for part in result.values() for s in part.values())
    print(f"{len(result['studies']) + len(result['campaign'])} studies, {trials} trials -> {args.out} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
