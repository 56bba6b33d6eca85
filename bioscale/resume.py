"""Checkpoints of a population fit: everything `bioscale.train.fit` needs to continue bit for bit.

A checkpoint holds the rule's whole `state_dict` (the net, the rule's own state, the per-member
settings, every Adam optimizer's moments and step count, the rule's counters and every member's
noise stream: `Rule` is an `nn.Module` and carries these as its extra state), the minibatch
generator's state, the epoch and the position inside it (the epoch's minibatch order and the loss
summed so far), which members still train, and every member's curve so far. It is written
atomically (a temporary file, then `os.replace`), so a reader sees the previous checkpoint or
the new one, never half of one. A checkpoint that cannot be read, or that belongs to another
configuration, is refused with one line on stderr and the fit starts afresh.

Preemption: a signal handler calls `request_stop()`; `fit` then saves at the end of the minibatch
in progress and raises `Preempted`, which is no ordinary error (a trial that raises it is
re-queued, not failed).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import first_line

FORMAT = 1  # the layout of a checkpoint file; a file of another layout is refused
_STOP = threading.Event()


class Preempted(Exception):
    """The fit was asked to stop (the scheduler's pre-timeout or preemption signal) and saved where it stood."""

    def __init__(self, epoch: int, step: int, path: Path | None) -> None:
        where = f"epoch {epoch + 1}, minibatch {step}" if step else f"the end of epoch {epoch}"
        super().__init__(f"preempted at {where}" + (f"; checkpoint {path}" if path else ""))
        self.epoch, self.step, self.path = epoch, step, path


def request_stop() -> None:
    """Ask every fit in this process to save at its next minibatch and raise `Preempted` (safe in a signal handler)."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether `request_stop` was called (and not cleared since)."""
    return _STOP.is_set()


def clear_stop() -> None:
    """Forget a stop request (tests; a worker that starts afresh)."""
    _STOP.clear()


@dataclass
class Checkpointing:
    """Where and how often a fit saves, and what a checkpoint must match to be resumed from.

    `every`: save at the end of every `every` epochs (0: only when preempted). `meta`: plain
    values (the configuration, the seeds) a checkpoint must hold unchanged to be resumed.
    `on_resume(epoch, histories)` is called after a checkpoint is restored, with the epochs
    completed and each member's history so far (the callback sees only the epochs after).
    `fit` sets `resumed_from` to the epochs completed when it resumed (None: started afresh).
    """

    path: Path
    every: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    on_resume: Callable[[int, list[Any]], None] | None = None
    resumed_from: int | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def due(self, epochs_done: int) -> bool:
        """Whether the end of epoch `epochs_done` is a save point."""
        return bool(self.every) and epochs_done % self.every == 0


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temporary file beside it, flushed, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save({"format": FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at `path` when it exists, reads back whole and matches `meta`; else None (a refusal is one line on stderr)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            payload = torch.load(handle, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not a bioscale checkpoint of format {FORMAT}")
    except Exception as error:  # truncated, corrupt, another format: never crash a trial over it
        reason = first_line(error)
        print(f"bioscale: checkpoint {path} is unreadable ({reason[:200]}); the trial starts afresh", file=sys.stderr, flush=True)
        return None
    if payload.get("meta") != meta:
        print(f"bioscale: checkpoint {path} belongs to another configuration; the trial starts afresh", file=sys.stderr, flush=True)
        return None
    return payload


def remove(path: Path) -> None:
    """Delete a checkpoint (and any temporary file of it left behind) if present."""
    path = Path(path)
    for candidate in (path, *path.parent.glob(f".{path.name}.*.tmp")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass


def cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    """`module.state_dict()` with every tensor copied to the CPU (a checkpoint loads on any device)."""
    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(v) for v in value)
        return value

    return {k: to_cpu(v) for k, v in module.state_dict().items()}
