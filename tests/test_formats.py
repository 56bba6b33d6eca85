"""The one percentage format and the one first-line-of-an-error helper."""

from __future__ import annotations

import math

from bioscale.analysis.report import pct
from bioscale.errors import first_line
from bioscale.formats import percent


def test_percent_writes_a_fraction_once_for_the_command_line_and_the_report():
    assert percent(0.12345) == "12.35%" and percent(0.5, 1) == "50.0%"
    assert percent(None) == percent(math.nan) == percent(math.inf) == "-"
    assert pct(0.12345) == "12.35" and pct(0.12345, 1) == "12.3" and pct(None) == pct(math.nan) == "–"


def test_first_line_is_the_first_non_blank_line_else_the_type_or_the_default():
    assert first_line(RuntimeError("\n  boom  \nTraceback ...")) == "boom"
    assert first_line(RuntimeError("")) == "RuntimeError" and first_line(KeyError(), "") == ""
    assert first_line("one\ntwo") == "one"
