"""Adding a learning rule is its module plus one catalogue line: a toy rule is found by the command line, the spaces,
the palette and the report without touching another file."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from bioscale import catalogue, spaces
from bioscale.analysis import analyze
from bioscale.analysis.palette import series_style
from bioscale.cli import main
from bioscale.rules.base import _REGISTRY

TOY_MODULE = '''
from bioscale.rules import GradientRule, cross_entropy


class Toy(GradientRule):
    """Backpropagation under another name."""

    name = "toy"

    def task_loss(self, x, y):
        return cross_entropy(self.net(x), y)
'''
TOY = catalogue.RuleFacts("toy", "a toy rule", "feedback alignment", 16, "Tester and Tester", 2026, colour="#123456")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy rule's module on the path and its one catalogue line; both gone afterwards."""
    (tmp_path / "toy_rule.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(catalogue.RULES, "toy", TOY)
    importlib.import_module("toy_rule")
    yield "toy"
    _REGISTRY.pop("toy", None)
    sys.modules.pop("toy_rule", None)


def test_the_toy_rule_takes_its_facts_from_its_catalogue_line(toy):
    rule = _REGISTRY[toy]
    assert (rule.family, rule.order, rule.citation, rule.year, rule.schedules) == (
        "feedback alignment", 16, "Tester and Tester", 2026, ())


def test_the_command_line_trains_the_toy_rule(toy, capsys):
    assert main(["train", "--rule", toy, "--dataset", "digits", "--epochs", "1", "--quiet", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_error"] <= 1.0


def test_the_spaces_and_the_palette_know_the_toy_rule(toy):
    assert set(spaces.tuning_space(toy)) == {"forward_lr", "forward_beta2", "forward_eps", "activation", "batch_size"}
    assert series_style(toy).color == "#123456" and series_style(f"{toy}", "relu").color != "#123456"


@pytest.mark.slow
def test_the_report_places_the_toy_rule_by_its_catalogue_line(toy, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'toy.db'}"
    for rule in ("bp", toy):
        assert main(["study", "run", "--rule", rule, "--dataset", "digits", "--trials", "2", "--epochs", "1",
                     "--storage", storage, "--quiet"]) == 0
    text = analyze(storage, None, tmp_path / "report", progress=False, figures="none").read_text()
    assert "tune:digits:fc:toy" in text and "a toy rule (feedback alignment; Tester and Tester 2026" in text
    assert text.index("tune:digits:fc:bp") < text.index("tune:digits:fc:toy")  # backprop's family comes first
