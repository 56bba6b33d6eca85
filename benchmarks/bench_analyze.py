"""Time `bioscale analyze` phase by phase on a storage (the demo's, or planted studies when none is given).

Run: python benchmarks/bench_analyze.py [--storage sqlite:///bioscale-demo/bioscale.db] [--figures key] [--out DIR]
Prints a table: reading and per-study statistics (fANOVA, tests), each registered analysis's
compute(), each figure drawn (serially here, so each row is its own cost), attaching figures as
artifacts, and `analyze()` end to end as the CLI runs it (figures drawn over the cores). The
storage is copied first, so attaching artifacts never touches the original.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bioscale.analysis import analyze, compute, registry
from bioscale.analysis.output import Output


def planted(folder: Path) -> str:
    """48 planted studies of 6 trials (12 rules × tanh/ReLU × fc/lc), shaped like the demo's."""
    import math

    from bioscale.analysis.synthetic import PAPER_SPACE, add_study
    from bioscale.contract import Evaluation

    space = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}
    url = f"sqlite:///{folder / 'planted.db'}"
    labels = ["bp", "fa", "dfa", "tp-parallel", "tp-alternating", "dtp-parallel", "dtp-alternating", "sdtp-parallel",
              "sdtp-alternating", "ao-sdtp-parallel", "ao-sdtp-alternating", "kp"]
    for arch in ("fc", "lc"):
        for k, label in enumerate(labels):
            for activation, shift in (("tanh", 0.0), ("relu", 0.05)):
                add_study(url, lambda p, s=shift + 0.02 * k: min(0.9, 0.1 + s + 0.05 * (math.log10(p["forward_lr"]) + 3) ** 2),
                          label=label, arch=arch, fixed={"activation": activation}, suffix=activation, space=space,
                          n_trials=6, protocol="paper", chance_patience=0,
                          evaluation=Evaluation(seeds=[0, 1], test_errors_at_best_val=[0.1 + k / 100, 0.12 + k / 100],
                                                test_errors=[0.1 + k / 100, 0.12 + k / 100]).to_attr())
    return url


def main() -> None:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="sqlite:///FILE.db (default: 48 planted studies)")
    parser.add_argument("--figures", default="key", choices=("none", "key", "all"))
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    if args.storage:
        source = Path(args.storage.removeprefix("sqlite:///"))
        shutil.copy(source, work / "copy.db")
        url = f"sqlite:///{work / 'copy.db'}"
    else:
        url = planted(work)
    rows: list[tuple[str, float]] = []
    start = time.perf_counter()
    analysis = compute(url, None, progress=False)
    total_compute = time.perf_counter() - start
    for module in registry.analyses():  # each analysis again, alone, to see its own cost
        t = time.perf_counter()
        module.compute(analysis)
        rows.append((f"  compute {module.NAME}", time.perf_counter() - t))
    rows.insert(0, (f"compute(): read {len(analysis.studies)} studies, statistics, every analysis", total_compute))
    output = Output(work / "serial", ("png",), args.figures)
    (work / "serial").mkdir()
    for module in registry.analyses():
        module.render(analysis.computed[module.NAME], output, args.figures)
    from bioscale.analysis.output import draw_job

    for job in output.jobs:
        t = time.perf_counter()
        draw_job(job, output.formats)
        rows.append((f"  draw {job.stem.name} (one core)", time.perf_counter() - t))
    out = Path(args.out) if args.out else work / "report"
    t = time.perf_counter()
    analyze(url, None, out, progress=False, figures=args.figures)
    rows.append((f"analyze() end to end, --figures {args.figures} (as the CLI)", time.perf_counter() - t))
    width = max(len(name) for name, _ in rows)
    print(f"{'phase'.ljust(width)}  seconds")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:7.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
