"""`bioscale study status`: where the studies of a storage stand, from any machine that reaches it.

Per study: the budget, the trial counts by state, each running trial's worker, epoch and
heartbeat age (RDB storages record heartbeats; on a journal file the worker writes its own), and an estimate of the
time left: the finished trials' mean `seconds` times the trials still to run, the running ones
counted by the share of their epochs left, spread over the workers running now. Works for
studies started by `launch`, `run`, or by hand.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import sys
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from bioscale import defaults
from bioscale.contract import (SECONDS, StudyInfo, counts_against_budget, is_default_config, is_finished, naive_time,
                               trial_worker, was_requeued, HEARTBEAT, WORKER)
from bioscale.storages import open_existing


def study_status(storage: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """One row per study matching `pattern` (a glob; None: every study): budget, counts, running trials, time left."""
    storage_obj = open_existing(storage)
    beats, now = _heartbeats(storage_obj)
    rows = []
    for name in optuna.get_all_study_names(storage_obj):
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        study = optuna.load_study(study_name=name, storage=storage_obj)
        info = StudyInfo.from_attrs(study.user_attrs)
        trials = study.get_trials(deepcopy=False)
        counts = {state.name: 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                              TrialState.WAITING)}
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        search = [t for t in trials if not is_default_config(t)]
        finished = sum(is_finished(t) for t in search)
        budget = info.trials
        running = []
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            beat = beats.get(t._trial_id)  # noqa: SLF001
            age = None if beat is None else (now - beat).total_seconds()
            written = t.user_attrs.get(HEARTBEAT)  # storages without heartbeats of their own: the worker's attribute
            if age is None and isinstance(written, (int, float)) and not isinstance(written, bool):
                age = time.time() - written
            worker = trial_worker(t)
            running.append({"trial": t.number, "worker": f"{worker[0]}:{worker[1]}" if worker else t.user_attrs.get(WORKER),
                            "epoch": len(t.intermediate_values), "epochs": info.epochs,
                            "heartbeat_age_s": None if age is None else round(age, 1)})
        rows.append({"study": name, "budget": budget, "finished": finished, "counts": counts,
                     "requeued": sum(was_requeued(t) for t in trials), "running": running,
                     "eta_s": _eta(search, budget, running, info.epochs)})
    return rows


def _eta(trials: list, budget: int | None, running: list[dict[str, Any]], epochs: int | None) -> float | None:
    """Seconds left: finished trials' mean seconds × (unstarted trials + running trials' share of epochs left) / workers now."""
    seconds = [t.user_attrs.get(SECONDS) for t in trials if is_finished(t) and isinstance(t.user_attrs.get(SECONDS), (int, float))]
    if not seconds or budget is None:
        return None
    mean = sum(seconds) / len(seconds)
    started = sum(counts_against_budget(t) for t in trials if t.state != TrialState.WAITING)
    unstarted = max(0, budget - started)
    left = sum(1 - min(r["epoch"], epochs or r["epoch"]) / epochs for r in running) if epochs else len(running)
    workers = max(1, len({r["worker"] for r in running}))
    return round(mean * (unstarted + left) / workers, 1)


def _heartbeats(storage: Any) -> tuple[dict[int, datetime.datetime], datetime.datetime]:
    """({trial id: its latest heartbeat}, the database's clock now) of an RDB storage; empty for storages without heartbeats.

    Heartbeats are stamped by the database's clock (as Optuna's own staleness check reads them), so they are aged by it too,
    both without a time zone as Optuna compares them.
    """
    from optuna.storages import RDBStorage

    now = datetime.datetime.now()
    if not isinstance(storage, RDBStorage):
        return {}, now
    import sqlalchemy
    from optuna.storages._rdb import models  # noqa: PLC2701 - Optuna has no public reader of heartbeats

    session = storage.scoped_session()
    try:
        now = naive_time(session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar())
        return {row.trial_id: naive_time(row.heartbeat) for row in session.query(models.TrialHeartbeatModel).all()}, now
    except Exception:  # an older schema: no heartbeat table
        return {}, now
    finally:
        session.close()


def format_status(rows: list[dict[str, Any]]) -> str:
    """The rows as the text `bioscale study status` prints."""
    if not rows:
        return "no studies match"
    lines = []
    for row in rows:
        counts = row["counts"]
        states = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        eta = "-" if row["eta_s"] is None else _duration(row["eta_s"])
        done = row["budget"] is not None and row["finished"] >= row["budget"] and not row["running"]
        lines.append(f"{row['study']}: {row['finished']}/{row['budget'] if row['budget'] is not None else '?'} finished "
                     f"({states or 'no trials'})" + (", done" if done else f", about {eta} left"))
        for r in row["running"]:
            age = "-" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s']:.0f} s ago"
            lines.append(f"  trial {r['trial']}: epoch {r['epoch']}/{r['epochs']} on {r['worker']}, heartbeat {age}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def show_status(storage: str, pattern: str | None = None, *, watch: bool = False, interval: float = defaults.STATUS_INTERVAL,
                as_json: bool = False) -> None:
    """Print the status once, or with `watch` every `interval` seconds until interrupted."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while True:
        rows = study_status(storage, pattern)
        text = json.dumps(rows) if as_json else format_status(rows)
        if watch and sys.stdout.isatty():
            print("\033[H\033[J", end="")
        print(text, flush=True)
        if not watch:
            return
        time.sleep(max(0.5, interval))
