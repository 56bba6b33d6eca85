"""The layering holds: the core imports nothing from spaces, study, analysis or the CLI; spaces nothing from
study or analysis; analysis nothing from study. Every import statement counts, those inside functions too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where each installed package's source lives (pyproject.toml maps the stage folders under `bioscale`).
PACKAGES = {"bioscale": REPO / "bioscale", "bioscale.spaces": REPO / "spaces", "bioscale.study": REPO / "study",
            "bioscale.analysis": REPO / "analysis"}
FORBIDDEN = {
    "bioscale": ("bioscale.spaces", "bioscale.study", "bioscale.analysis", "bioscale.cli"),
    "bioscale.spaces": ("bioscale.study", "bioscale.analysis", "bioscale.cli"),
    "bioscale.analysis": ("bioscale.study", "bioscale.cli"),
    "bioscale.study": ("bioscale.analysis", "bioscale.cli"),
}
TOP = {"bioscale.cli", "bioscale.workflows"}  # the command line and the end-to-end flows sit on top of everything


def modules():
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            if name not in TOP and not (package == "bioscale" and parts[0] in ("spaces", "study", "analysis")):
                yield package, name, path


def imported(name: str, path: Path) -> set[str]:
    """Every module an import statement in `path` names, relative imports resolved."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join([*anchor, *([node.module] if node.module else [])])
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def owner(module: str) -> str:
    """The layer a module belongs to: its longest package prefix."""
    return max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)


@pytest.mark.parametrize("package, name, path", [pytest.param(*m, id=m[1]) for m in modules()])
def test_no_module_imports_a_layer_above_its_own(package, name, path):
    layer = owner(name)
    bad = sorted(m for m in imported(name, path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[layer]))
    assert not bad, f"{name} ({layer} layer) imports {bad}"


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from ..study import run_study\n    import bioscale.analysis.plots\n")
    assert {"bioscale.study", "bioscale.study.run_study", "bioscale.analysis.plots"} <= imported("bioscale.rules.x", path)


@pytest.mark.slow
def test_importing_analysis_loads_no_training_code():
    code = ("import sys, bioscale.analysis, bioscale.analysis.pipeline, bioscale.analysis.tables; "
            "print(sorted(m for m in sys.modules if m.startswith(('bioscale.study', 'bioscale.train', 'bioscale.rules'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
