"""Torch devices by name: checked once, before anything runs; `auto` means every visible GPU, else the CPU."""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import UsageError

AUTO = "auto"
_HINT = "use auto, cpu, cuda, cuda:N or mps"


def resolve_devices(devices: Sequence[str] | str = AUTO) -> list[str]:
    """`"auto"`, `"cuda:0,cuda:1"` or a list -> checked torch device strings.

    `auto` stands for every CUDA device torch sees (`cuda:0`, `cuda:1`, ...), else `cpu`.
    A device this machine does not have is a UsageError naming it.
    """
    items = [d.strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if d and d.strip()]
    if not items:
        raise UsageError(f"give at least one device: {_HINT}, e.g. --devices cuda:0,cuda:1")
    out: list[str] = []
    for item in items:
        out += _visible_gpus() if item == AUTO else [_check(item)]
    return out


def resolve_device(device: str = AUTO) -> str:
    """One checked device: `auto` is the first visible GPU, else `cpu`."""
    if "," in device:
        raise UsageError(f"give one device here, not {device!r}: {_HINT}")
    return resolve_devices(device)[0]


def _visible_gpus() -> list[str]:
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _check(item: str) -> str:
    try:
        device = torch.device(item)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {item!r}: {_HINT}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {item!r} asked for, but torch sees no CUDA device here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"device {item!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return str(device) if device.index is not None else "cuda:0"
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"device {item!r} asked for, but it is not available here; use --device cpu or auto")
        return "mps"
    if device.type != "cpu":
        raise UsageError(f"unsupported device {item!r}: {_HINT}")
    return "cpu"
