"""Devices: `auto` by default everywhere, and every bad device name one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from bioscale.cli import main
from bioscale.devices import resolve_device, resolve_devices
from bioscale.errors import UsageError

GPUS = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
BAD = ["foo", "cuda:7", "tpu:0", "cpu,foo"] + ([] if GPUS else ["cuda", "cuda:0"])


def test_auto_is_every_visible_gpu_else_the_cpu():
    assert resolve_devices("auto") == (GPUS or ["cpu"])
    assert resolve_device("auto") == (GPUS or ["cpu"])[0]
    assert resolve_devices("cpu,cpu") == ["cpu", "cpu"] and resolve_devices(["cpu:0"]) == ["cpu"]
    with pytest.raises(UsageError, match="give one device"):
        resolve_device("cpu,cpu")


COMMANDS = {
    "train": ["train", "--rule", "bp", "--epochs", "1", "--device"],
    "study run": ["study", "run", "--rule", "bp", "--trials", "1", "--epochs", "1", "--storage", "s.db", "--devices"],
    "study evaluate": ["study", "evaluate", "--storage", "s.db", "--device"],
    "demo": ["demo", "--out", "demo-out", "--devices"],
    "campaign": ["campaign", "--dataset", "digits", "--arch", "fc", "--storage", "s.db", "--out", "c-out", "--devices"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("device", BAD)
def test_a_bad_device_is_one_line_exit_2_and_nothing_written(command, device, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if command == "study evaluate":  # evaluate reads an existing study: give it one
        assert main(["study", "run", "--rule", "bp", "--trials", "1", "--epochs", "1", "--storage", "s.db",
                     "--devices", "cpu", "--quiet"]) == 0
        capsys.readouterr()
    def files() -> list[str]:  # SQLite's -wal and -shm files come and go with its connections
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = files()
    code = main([*COMMANDS[command], device])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bioscale: error:") and err.count("\n") == 1 and "device" in err, err
    assert files() == before
    if command == "study evaluate":
        import optuna

        assert "evaluation" not in optuna.load_study(study_name="tune:digits:fc:bp", storage="sqlite:///s.db").user_attrs


def test_train_prints_and_records_the_device_it_chose(capsys):
    assert main(["train", "--rule", "bp", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"device: {resolve_device()}"
    assert main(["train", "--rule", "bp", "--epochs", "1", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["device"] == resolve_device()
