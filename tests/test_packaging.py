"""The wheel holds every module and data file of the source folders, each under the one `bioscale` namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> where its files install (the three stage folders sit at the top of the repository).
INSTALLED = {"bioscale": "bioscale", "spaces": "bioscale/spaces", "study": "bioscale/study", "analysis": "bioscale/analysis"}


def _checkout_files() -> list[str]:
    """The files a clone of this checkout would hold (tracked, or new and not ignored)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a checkout to know which files belong to it")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [name for name in listed if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> tuple[list[str], set[str]]:
    """(the checkout's files, the names in the wheel built from a copy of them)."""
    files = _checkout_files()
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(source)], check=True, capture_output=True)
    (wheel,) = dist.glob("bioscale-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return files, set(archive.namelist())


def test_every_module_and_data_file_of_the_source_folders_is_in_the_wheel(wheel_files):
    files, names = wheel_files
    expected = {f"{INSTALLED[name.split('/')[0]]}/{name.split('/', 1)[1]}" for name in files
                if name.split("/")[0] in INSTALLED and name.endswith((".py", ".csv"))}
    assert "bioscale/analysis/analyses/importance.py" in expected and "bioscale/analysis/analyses/paper.csv" in expected
    assert expected <= names, sorted(expected - names)


def test_nothing_but_bioscale_lands_in_site_packages(wheel_files):
    _, names = wheel_files
    tops = {name.split("/")[0] for name in names}
    assert tops == {"bioscale", "bioscale-0.1.0.dist-info"}, tops
