"""benchmarks/gpu_check.py in its short CPU form: every rule on every family, the 2-worker study, the table, the exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bioscale import rules
from bioscale.nets import PRESET_NAMES
from conftest import REPO

pytestmark = pytest.mark.slow  # spawns processes

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def table(stdout: str) -> dict[str, list[str]]:
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in stdout.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def test_short_cpu_form_runs_every_rule_on_every_family_and_a_two_worker_study(tmp_path):
    out = tmp_path / "check.md"
    proc = check("--dataset", "digits", "--shapes", "digits", "--rounds", "1", "--trials", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "device cpu (" in proc.stdout and "torch " in proc.stdout
    rows = table(proc.stdout)
    labels = [rules.label(name, "parallel" if rules.get(name).schedules else None) for name in rules.names()]
    for family in PRESET_NAMES:
        for label in labels:
            status, result, seconds = rows[f"train digits {family} {label}"]
            assert status == "PASS" and result.startswith("test error ") and float(seconds) >= 0
        status, result, _ = rows[f"step ratio digits {family}"]
        timed = {part.rsplit(" ", 1)[0] for part in result.split("; ", 1)[1].split(", ")}
        assert status == "PASS" and all(label in timed or f"{label}-K1" in timed for label in labels if label != "bp")
    status, result, _ = rows["study tune digits fc bp, 2 workers"]
    assert status == "PASS" and result.startswith("2 workers on cpu: 2/2 trials finished (2 complete")
    assert len(rows) == len(labels) * len(PRESET_NAMES) + 1 + len(PRESET_NAMES)
    assert "0 failed" in proc.stdout
    assert out.read_text().splitlines()[-1] == proc.stdout.strip().splitlines()[-1]


def test_a_failing_item_is_a_fail_row_and_exit_1_while_the_others_still_run(tmp_path):
    proc = check("--dataset", "mnist", "--data-root", str(tmp_path / "nothing"), "--rules", "bp", "--families", "fc",
                 "--shapes", "mnist", "--rounds", "1", "--trials", "1")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = table(proc.stdout)
    assert rows["train mnist fc bp"][0] == "FAIL" and "UsageError" in rows["train mnist fc bp"][1]
    assert rows["study tune mnist fc bp, 2 workers"][0] == "FAIL"
    assert rows["step ratio mnist fc"][0] == "PASS"
    assert "3 items, 2 failed" in proc.stdout


def test_bad_options_exit_2_before_anything_runs():
    proc = check("--rules", "bp,nope", timeout=60)
    assert proc.returncode == 2 and "unknown rule 'nope'" in proc.stderr and "| item |" not in proc.stdout
