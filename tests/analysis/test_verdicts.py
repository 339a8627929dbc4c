"""The verdicts, defined once (stress.analysis.verdicts): every renderer has a style for each,
and the order, the findings and the statuses agree with what the summary can say."""

from __future__ import annotations

import re

import pytest
from rich.style import Style

from stress.analysis import html
from stress.analysis.report import has_findings
from stress.analysis.summary_model import RunSummary, VariantSummary
from stress.analysis.verdicts import FINDINGS, Verdict, from_status
from stress.records.states import VariantStatus

FINISHED_WITH_THEIR_OWN = {"done", "quarantined", "refused", "failed"}  # summary.verdict


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_is_styled_by_every_renderer(verdict):
    Style.parse(verdict.style)  # a rich style the terminal table can draw
    assert re.search(rf"\.{verdict.html_class}\{{", html.CSS), verdict.html_class
    assert f'class="v {verdict.html_class}"' in str(html._verdict(verdict))


def test_memcheck_is_sorted_and_coloured_as_the_finding_it_is():
    """The HTML report once left MEMCHECK out of its lists: sorted first as unknown, and
    coloured as "other"."""
    assert Verdict.MEMCHECK.finding and Verdict.MEMCHECK.html_class == "bad"
    assert html._rank("CRASHED") < html._rank("MEMCHECK") < html._rank("INCONSISTENT")
    flagged = VariantSummary.model_construct(verdict=Verdict.MEMCHECK)  # its other fields unread
    assert has_findings(RunSummary.model_construct(references={}, variants=[flagged]))


def test_the_order_puts_findings_first_and_ok_last():
    ranked = sorted(Verdict, key=lambda v: v.severity)
    assert ranked[-1] is Verdict.OK
    assert all(v.finding for v in ranked[: len(FINDINGS)])
    assert not any(v.finding for v in ranked[len(FINDINGS) :])


@pytest.mark.parametrize("status", [s.value for s in VariantStatus])
def test_every_unfinished_status_has_a_verdict(status):
    if status in FINISHED_WITH_THEIR_OWN:
        return
    verdict = from_status(status)
    assert not verdict.finding and verdict.value == status.upper()


def test_a_verdict_is_its_word_in_json_and_text():
    import json

    assert json.dumps([Verdict.OK, Verdict.MEMCHECK]) == '["ok", "MEMCHECK"]'
    assert f"{Verdict.OK} {Verdict.CRASHED}" == "ok CRASHED" and Verdict.OK == "ok"
