"""Fixtures shared by the test files: a PostgreSQL server when one is configured, free ports, the CLI in a child process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Every test process and the processes it starts train tiny nets: one thread each, so that pytest-xdist's
# workers do not fight over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def postgres_url() -> str:
    """$BIOSCALE_TEST_POSTGRES_URL; the test is skipped without it, or fails when $BIOSCALE_REQUIRE_POSTGRES is set."""
    url = os.environ.get("BIOSCALE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("BIOSCALE_REQUIRE_POSTGRES"):
            pytest.fail("BIOSCALE_REQUIRE_POSTGRES is set but BIOSCALE_TEST_POSTGRES_URL is not")
        pytest.skip("set BIOSCALE_TEST_POSTGRES_URL to a PostgreSQL database to run this test")
    return url


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: tiny nets run fastest so, and never fight other jobs' threads for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_studies(server: subprocess.Popen, port: int, timeout: float = 30) -> list[str]:
    """The study names a starting optuna-dashboard `server` lists at /api/studies on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                return [s["study_name"] for s in json.load(response)["study_summaries"]]
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer within {timeout:.0f} s")


def bioscale_process(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """`bioscale ARGS` as a child process (the installed package, this interpreter, one torch thread)."""
    return subprocess.Popen([sys.executable, "-m", "bioscale.cli", *args], cwd=kwargs.pop("cwd", REPO),
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def pytest_collection_modifyitems(config, items):
    """Files holding slow tests go first, so that pytest-xdist's per-file scheduling starts the long ones early.

    Files of tests that wait on a Slurm cluster (about 9 minutes of real jobs and requeues, little of it this
    machine's CPU) go before all: one worker waits on them while the other runs everything else.
    """
    cluster_files = {item.path for item in items if "slurm" in getattr(item, "fixturenames", ())}
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    # stable: the order within a file is kept
    items.sort(key=lambda item: (item.path not in cluster_files, item.path not in slow_files))
